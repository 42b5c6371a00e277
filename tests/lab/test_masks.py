import numpy as np
import pytest
import torch

from ganprior_core.lab.masks import MASK_KINDS, box_mask, make_mask, random_boxes_mask, strokes_mask


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_are_binary_float_hole_masks_of_the_requested_size(kind):
    for size, shape in ((64, (64, 64)), ((48, 80), (48, 80))):
        mask = make_mask(kind, size, seed=3)
        assert mask.shape == shape and mask.dtype == torch.float32
        assert set(mask.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_same_seed_same_mask_and_different_seeds_differ(kind):
    masks = [make_mask(kind, 64, seed) for seed in range(5)]
    assert torch.equal(make_mask(kind, 64, 2), masks[2])
    for i in range(5):
        for j in range(i + 1, 5):
            assert not torch.equal(masks[i], masks[j]), f"seeds {i} and {j} gave the same {kind} mask"


def test_generators_leave_global_random_state_alone():
    numpy_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state().clone()
    for kind in MASK_KINDS:
        make_mask(kind, 32, seed=1)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_centred_box_has_the_requested_area_in_the_middle():
    expected = torch.zeros(64, 64)
    expected[16:48, 16:48] = 1
    assert torch.equal(box_mask(64), expected)
    assert torch.equal(make_mask("box", 64, seed=9, centred=True), expected)

    wide = box_mask((40, 100), area_fraction=0.36)
    rows, cols = torch.nonzero(wide, as_tuple=True)
    assert (rows.min().item(), rows.max().item()) == (8, 31)  # 24 rows, centred
    assert (cols.min().item(), cols.max().item()) == (20, 79)  # 60 columns, centred


def test_seeded_box_keeps_its_area_and_moves_with_the_seed():
    positions = set()
    for seed in range(6):
        mask = box_mask(64, area_fraction=0.25, seed=seed)
        assert mask.sum().item() == 32 * 32
        rows, cols = torch.nonzero(mask, as_tuple=True)
        assert rows.max() - rows.min() == 31 and cols.max() - cols.min() == 31
        positions.add((rows.min().item(), cols.min().item()))
    assert len(positions) > 1


def test_random_boxes_sizes_follow_the_side_fractions():
    single = random_boxes_mask(50, seed=4, num_boxes=1, min_side=0.4, max_side=0.4)
    assert single.sum().item() == 20 * 20
    many = random_boxes_mask(100, seed=4, num_boxes=8, min_side=0.05, max_side=0.2)
    assert 0 < many.sum().item() <= 8 * 20 * 20


def test_strokes_cover_a_plausible_fraction_at_any_resolution():
    for size in (64, 256):
        coverage = [strokes_mask(size, seed).mean().item() for seed in range(8)]
        assert all(0.005 < c < 0.6 for c in coverage), coverage


def test_invalid_requests_raise_clear_errors():
    with pytest.raises(ValueError, match="box, random-boxes, strokes"):
        make_mask("circle", 64, seed=0)
    with pytest.raises(ValueError, match="area_fraction"):
        box_mask(64, area_fraction=1.5)
    with pytest.raises(ValueError, match="min_side <= max_side"):
        random_boxes_mask(64, seed=0, min_side=0.5, max_side=0.2)
    with pytest.raises(ValueError, match="positive"):
        strokes_mask((0, 10), seed=0)
