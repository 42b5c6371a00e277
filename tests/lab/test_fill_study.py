"""The fill study's signals read only observed pixels, its decoys stay clear of the hole, and its
rank correlation is Spearman's."""
import math

import pytest
import torch

from ganprior_core.lab import fill_study
from tests.conftest import TINY_PRIORS


def box_hole(size: int, top: int, left: int, side: int) -> torch.Tensor:
    hole = torch.zeros(size, size)
    hole[top:top + side, left:left + side] = 1
    return hole


@pytest.mark.parametrize("side", [4, 10, 20])
def test_a_decoy_keeps_the_holes_shape_and_stays_clear_of_it(side):
    hole = box_hole(32, 6, 5, side)
    decoy = fill_study.decoy_region(hole, seed=3)
    assert decoy is not None and decoy.sum() > 0
    near = torch.nn.functional.max_pool2d(hole[None, None], 2 * fill_study.DECOY_MARGIN + 1, 1,
                                          fill_study.DECOY_MARGIN)[0, 0]
    assert not (decoy.bool() & near.bool()).any()
    rows, cols = decoy.any(1).nonzero()[:, 0], decoy.any(0).nonzero()[:, 0]
    assert len(rows) == len(cols)  # still a square, full size or scaled
    assert torch.equal(decoy, fill_study.decoy_region(hole, seed=3))


def test_no_decoy_where_nothing_is_known():
    assert fill_study.decoy_region(torch.ones(16, 16), seed=0) is None


def test_the_signal_regions_never_touch_the_hole():
    hole = box_hole(16, 4, 4, 6)
    decoy = fill_study.decoy_region(hole, seed=0)
    tiles = torch.zeros(16, 16)
    tiles[0:2, 14:16] = 1
    regions = fill_study.signal_regions(hole, decoy, tiles)
    assert set(regions) == {"tiles", "decoy", "ring", "fit"}
    for region in regions.values():
        assert not (region & hole.bool()).any()
    assert not (regions["fit"] & (regions["tiles"] | regions["decoy"])).any()


def test_spearman_on_hand_computed_cases():
    assert fill_study.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6*2/(4*15)
    assert fill_study.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / math.sqrt(3))  # a tie
    assert fill_study.spearman([1, 2], [2, 1]) is None
    assert fill_study.spearman([1, 1, 1], [1, 2, 3]) is None


def test_what_the_hole_holds_changes_no_signal_only_the_score(monkeypatch):
    prior = TINY_PRIORS["pggan"]()
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    hole = box_hole(16, 3, 3, 6)
    other = image.clone()
    other[:, hole.bool()] = 1 - other[:, hole.bool()]
    first, fills = fill_study.record_run(prior, image, hole, "single-z", seed=5, until=60)
    second, _ = fill_study.record_run(prior, other, hole, "single-z", seed=5, until=60)
    assert len(first) >= 2 and fills.shape == (len(first), 3, int(hole.sum()))
    for a, b in zip(first, second):
        assert {k: a[k] for k in fill_study.SIGNALS if k in a} == {k: b[k] for k in fill_study.SIGNALS if k in b}
    assert [a["psnr_hole"] for a in first] != [b["psnr_hole"] for b in second]


def test_choosing_by_agreement_picks_the_fill_nearest_the_others():
    image = (1, "box")
    fills = [torch.full((1, 3, 4), value) for value in (0.0, 0.5, 0.55, 0.6)]  # 0.55 is the medoid
    runs = [{"facade": 1, "hole": "box", "fills": fill} for fill in fills]
    target = [10.0, 11.0, 12.0, 13.0]
    assert fill_study._chosen_by_agreement(runs, [0] * 4, target, image, 4) == [12.0]
    assert fill_study._chosen_by_agreement(runs, [0] * 4, target, image, 1) == target
    # three of four: the best mean PSNR to the other two ({0, .5, .55} and {0, .5, .6} choose .5:
    # 6.0 and 26.0 dB (or 20.0) against 5.2 and 26.0 (or 4.4 and 20.0) for the others)
    assert sorted(fill_study._chosen_by_agreement(runs, [0] * 4, target, image, 3)) == [11.0, 11.0, 12.0, 12.0]


def test_percentile_interpolates_as_numpy_does():
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    assert fill_study._percentile(values, 10) == pytest.approx(1.25)  # numpy.percentile(values, 10)
    assert fill_study._percentile(values, 50) == pytest.approx(2.8)
    assert fill_study._percentile(values, 100) == 9.0
