"""Several starts of one image stepped side by side (batched.fill_from_starts_together): the same
schedule, choice and fills as one start after another (exactly where the loop steps them, up to
float rounding where vmap does), progress that counts every start, cancel and memory fallback."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ganprior_core.method import batched
from ganprior_core.method.starts import StartsConfig
from ganprior_core.optimize import Progress, inpaint
from tests.method.test_starts import MODEL, RUN, STARTS, cancelled_run
from tests.tiny_priors import assert_same_state, inpainting_problem, state_of

pytestmark = pytest.mark.usefixtures("one_thread")

TOGETHER = replace(STARTS, vectorize="vmap")
ONE_AFTER_ANOTHER = replace(STARTS, vectorize="loop")


def assert_same_choice(a, b) -> None:
    assert [(r.seed, r.continued) for r in a.starts] == [(r.seed, r.continued) for r in b.starts]
    assert [c.seed for c in a.candidates()] == [c.seed for c in b.candidates()]
    assert a.steps_all_starts == b.steps_all_starts
    for x, y in zip(a.candidates(), b.candidates()):
        assert (x.steps_run, x.best_step) == (y.steps_run, y.best_step)


def test_vectorize_is_checked_and_auto_runs_one_after_another_on_a_cpu(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    with pytest.raises(ValueError, match="vectorize must be one of auto, loop, vmap, got 'gpu'"):
        inpaint(tiny_prior, image, hole, MODEL, RUN, seed=0, starts=replace(STARTS, vectorize="gpu"))
    assert not STARTS.runs_together(torch.device("cpu"))
    assert STARTS.runs_together(torch.device("cuda")) and TOGETHER.runs_together(torch.device("cpu"))
    assert not replace(TOGETHER, starts=1).runs_together(torch.device("cpu"))


def test_side_by_side_in_vmap_makes_the_same_choice_and_fills(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    before = state_of(tiny_prior)
    apart = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=5, starts=ONE_AFTER_ANOTHER)
    together = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=5, starts=TOGETHER)
    assert_same_choice(apart, together)
    for x, y in zip(apart.candidates(), together.candidates()):
        assert (x.output - y.output).abs().max() < 1e-3
        assert x.agreement == pytest.approx(y.agreement, abs=0.05)
        assert any("stepped side by side" in note for note in y.notes)
        assert not any("side by side" in note for note in x.notes)
    again = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=5, starts=TOGETHER)
    assert all(torch.equal(a.output, b.output)
               for a, b in zip(again.candidates(), together.candidates()))
    assert_same_state(before, tiny_prior)


def test_side_by_side_in_the_loop_is_one_after_another_bit_for_bit(tiny_prior):
    # Explicit bf16 is not vectorised: the starts are stepped in turn, which is exact.
    image, hole = inpainting_problem(tiny_prior)
    bf16 = replace(RUN, precision="bf16")
    apart = inpaint(tiny_prior, image, hole, MODEL, bf16, seed=7,
                    starts=replace(ONE_AFTER_ANOTHER, candidates=3))
    together = inpaint(tiny_prior, image, hole, MODEL, bf16, seed=7,
                       starts=replace(TOGETHER, candidates=3))
    assert_same_choice(apart, together)
    for x, y in zip(apart.candidates(), together.candidates()):
        assert torch.equal(x.output, y.output) and torch.equal(x.composite, y.composite)
        assert x.loss_history == y.loss_history and x.agreement == y.agreement
    assert any("not vectorised" in note for note in together.notes)


def test_progress_counts_every_start_side_by_side_and_ends_at_what_the_run_took(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    seen: list[Progress] = []
    result = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=6, starts=TOGETHER,
                     callback=seen.append)
    done = [progress.steps_done for progress in seen]
    assert done == sorted(done)
    assert all(p.expected_total() >= p.steps_done for p in seen)
    exploring = [p for p in seen if p.pauses_at is not None and not p.stopped_early]
    assert exploring and all("4 starts side by side" in p.describe() and p.step <= 11
                             for p in exploring)
    # Before the comparison every start has run the reporter's steps (the others' report after it).
    assert all(p.steps_done >= 1 + 3 * (p.step - 1) for p in exploring if p.start == 0)
    assert seen[-1].steps_done == result.steps_all_starts


@pytest.mark.parametrize("cancel_at", [3, 20])  # before the comparison, a candidate after it
def test_cancel_side_by_side_propagates_and_leaves_the_prior_alone(tiny_prior, cancel_at):
    seen = cancelled_run(tiny_prior, TOGETHER, cancel_at)
    assert seen[-1].pauses_at is (None if cancel_at == 20 else 11)


def test_starts_that_do_not_fit_together_run_one_after_another(tiny_prior, monkeypatch):
    image, hole = inpainting_problem(tiny_prior)
    apart = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=9, starts=ONE_AFTER_ANOTHER)
    asked = []

    def only_one_fits(*args, **kwargs):
        asked.append(args[5])
        return 1

    monkeypatch.setattr(batched.memory, "batch_size_that_fits", only_one_fits)
    fallback = inpaint(tiny_prior, image, hole, MODEL, RUN, seed=9, starts=TOGETHER)
    assert asked == [4]
    assert_same_choice(apart, fallback)
    for x, y in zip(apart.candidates(), fallback.candidates()):
        assert torch.equal(x.output, y.output)
        assert not any("side by side" in note for note in y.notes)


def test_a_start_config_without_vectorize_keeps_todays_default():
    assert StartsConfig().vectorize == "auto"


def test_a_run_shorter_than_the_comparison_compares_the_starts_where_they_end(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    short = replace(RUN, steps=8, stop="fixed")
    apart = inpaint(tiny_prior, image, hole, MODEL, short, seed=3, starts=ONE_AFTER_ANOTHER)
    together = inpaint(tiny_prior, image, hole, MODEL, short, seed=3, starts=TOGETHER)
    assert_same_choice(apart, together)
    assert together.steps_all_starts == 4 * 8
