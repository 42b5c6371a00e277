"""Several starts of one image (ganprior_core/method/starts.py): the agreement criterion reads only
what was observed, a continued start is exactly the single run with its seed, candidates come
best first, and cancelling in any start leaves the prior as it was."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ganprior_core.method.auto_stop import AutoStopConfig
from ganprior_core.method.multi_latent import MultiLatentConfig
from ganprior_core.method.starts import StartsConfig, agreement, ranking, start_seed
from ganprior_core.optimize import OptimizerConfig, Progress, inpaint, inpaint_any_size
from tests.tiny_priors import assert_same_state, inpainting_problem, state_of

pytestmark = pytest.mark.usefixtures("one_thread")

# Auto-stop every 5 steps so that starts can end before, at and after the comparison.
RUN = OptimizerConfig(steps=30, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                      perceptual_weight=0.0, precision="fp32", preview_every=1, compile=False,
                      freeze_g1_at=8,
                      auto_stop=AutoStopConfig(check_every=5, patience=2, smoothing=0.0,
                                               holdout_fraction=0.1))
MODEL = MultiLatentConfig(num_codes=3, split_layer=3)
STARTS = StartsConfig(starts=4, choose_at=10, candidates=2)


class Cancelled(Exception):
    pass


def test_agreement_is_the_mean_psnr_against_the_others_computed_by_hand():
    a = torch.zeros(3, 4)
    b = torch.full((3, 4), 0.1)  # MSE to a: 0.01 -> 20 dB
    c = torch.full((3, 4), 0.2)  # to a: 0.04 -> 13.98 dB; to b: 0.01 -> 20 dB
    scores = agreement([a, b, c])
    expected = [(20 + 13.9794) / 2, 20.0, (13.9794 + 20) / 2]
    assert scores == pytest.approx(expected, abs=1e-3)
    assert agreement([a, b]) == [None, None]  # two starts agree equally: no ranking by agreement
    assert ranking(scores, [0.3, 0.2, 0.1]) == [1, 2, 0]  # ties (a, c) broken by the loss
    assert ranking([None, None], [0.2, float("nan")]) == [0, 1]


def test_start_seeds_are_distinct_and_start_zero_is_the_seed():
    assert start_seed(7, 0) == 7
    seeds = {start_seed(seed, start) for seed in range(20) for start in range(8)}
    assert len(seeds) == 160 and all(0 <= s < 2 ** 64 for s in seeds)
    assert start_seed(2 ** 64 - 1, 1) < 2 ** 64


@pytest.mark.parametrize("bad, message", [
    (StartsConfig(starts=0), "starts"), (StartsConfig(choose_at=0), "choose_at"),
    (StartsConfig(starts=2, candidates=3), "cannot exceed starts"), (StartsConfig(starts=65), "starts")])
def test_bad_starts_are_refused_before_any_work(tiny_prior, bad, message):
    image, hole = inpainting_problem(tiny_prior)
    with pytest.raises(ValueError, match=message):
        inpaint(tiny_prior, image, hole, MODEL, RUN, seed=0, starts=bad)


def test_a_continued_start_is_the_single_run_with_its_seed_and_candidates_come_best_first(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    before = state_of(tiny_prior)
    result = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=5, starts=STARTS)
    candidates = result.candidates()
    assert len(candidates) == 2 and result.alternatives == candidates[1:]
    assert [record.seed for record in result.starts][:2] == [c.seed for c in candidates]
    assert {record.seed for record in result.starts} == {start_seed(5, i) for i in range(4)}
    assert [record.continued for record in result.starts] == [True, True, False, False]
    scores = [record.agreement for record in result.starts]
    assert scores == sorted(scores, reverse=True)
    for candidate in candidates:
        alone = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=candidate.seed)
        assert torch.equal(alone.composite, candidate.composite)
        assert torch.equal(alone.output, candidate.output)
        assert (alone.steps_run, alone.best_step) == (candidate.steps_run, candidate.best_step)
    again = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=5, starts=STARTS)
    assert [c.seed for c in again.candidates()] == [c.seed for c in candidates]
    assert all(torch.equal(a.composite, b.composite) for a, b in zip(again.candidates(), candidates))
    assert_same_state(before, tiny_prior)


def test_the_choice_never_reads_the_hole_pixels_of_the_input(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    other = image.clone()
    in_hole = hole.bool()
    other[:, in_hole] = torch.rand(3, int(in_hole.sum()), generator=torch.Generator().manual_seed(1))
    first = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=2, starts=STARTS)
    second = inpaint(tiny_prior, other, hole, MODEL, RUN, seed=2, starts=STARTS)
    assert first.starts == second.starts
    assert torch.equal(first.output, second.output)


def test_one_start_is_todays_run(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    plain = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=3)
    one = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=3, starts=StartsConfig(starts=1))
    assert torch.equal(plain.composite, one.composite) and plain.seed == one.seed == 3
    assert one.starts == [] and one.alternatives == [] and one.describe_choice() == ""


def cancelled_run(prior, starts: StartsConfig, cancel_at: int) -> list[Progress]:
    """A multi-start run cancelled from its `cancel_at`-th progress report: the reports it made.
    The cancel propagates and the prior is left as it was."""
    image, hole = inpainting_problem(prior)
    before = state_of(prior)
    seen: list[Progress] = []

    def callback(progress: Progress) -> None:
        seen.append(progress)
        if len(seen) == cancel_at:
            raise Cancelled

    with pytest.raises(Cancelled):
        inpaint(prior, image, hole, MODEL, RUN, seed=4, starts=starts, callback=callback)
    assert_same_state(before, prior)
    return seen


@pytest.mark.parametrize("cancel_at", [3, 25, 60])  # in the first start, a later start, a candidate
def test_cancel_in_any_start_propagates_and_leaves_the_prior_alone(tiny_prior, cancel_at):
    assert len(cancelled_run(tiny_prior, STARTS, cancel_at)) == cancel_at


def test_progress_counts_every_start_and_ends_at_what_the_run_took(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    seen: list[Progress] = []
    result = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=6, starts=STARTS, callback=seen.append)
    done = [progress.steps_done for progress in seen]
    assert done == sorted(done)  # never goes back across starts
    assert {progress.start for progress in seen} == set(range(4))
    exploring = [p for p in seen if p.pauses_at is not None]
    assert exploring and all(p.step <= 11 and "then the starts are compared" in p.describe()
                             for p in exploring if not p.stopped_early)
    assert all(p.expected_total() >= p.steps_done for p in seen)
    # The bar ends at every step every start ran: the candidates' whole runs and the dropped
    # starts' 11 steps (or fewer where auto-stop ended them first).
    assert seen[-1].steps_done == result.steps_all_starts
    dropped = result.steps_all_starts - sum(c.steps_run for c in result.candidates())
    assert 0 < dropped <= 2 * 11


def test_any_size_returns_every_candidate_at_the_input_size(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    big = torch.nn.functional.interpolate(image[None], size=(24, 40), mode="bilinear")[0].clamp(0, 1)
    big_hole = torch.nn.functional.interpolate(hole[None, None], size=(24, 40))[0, 0]
    result = inpaint_any_size(tiny_prior, big, big_hole, MODEL, RUN, seed=1, starts=STARTS, fit="pad")
    for candidate in result.candidates():
        assert candidate.composite.shape == (3, 24, 40)
        known = big_hole == 0
        assert torch.equal(candidate.composite[:, known], big[:, known])


def test_nothing_known_gives_one_sample_per_candidate(tiny_prior):
    image, _ = inpainting_problem(tiny_prior)
    full = torch.ones(image.shape[1:])
    result = inpaint(tiny_prior, image, full, MODEL, RUN, seed=1, starts=replace(STARTS, candidates=3))
    seeds = [candidate.seed for candidate in result.candidates()]
    assert seeds == [start_seed(1, i) for i in range(3)]
    assert not torch.equal(result.output, result.alternatives[0].output)


def test_three_candidates_are_ordered_by_how_well_their_returned_fills_agree(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    result = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=8, starts=replace(STARTS, candidates=3))
    candidates = result.candidates()
    fills = [c.output[:, hole.bool()] for c in candidates]
    expected = agreement(fills)
    assert [c.agreement for c in candidates] == pytest.approx(expected, abs=1e-4)
    assert expected == sorted(expected, reverse=True)
    assert "ordered by how well their returned fills agree" in result.notes[-1]
    for candidate in candidates:
        alone = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=candidate.seed)
        assert torch.equal(alone.composite, candidate.composite)
