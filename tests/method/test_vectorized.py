"""Vectorised batches (ganprior_core/method/vectorized.py, `vectorize="vmap"`): every member's
run is its sequential run up to float rounding, on a tiny prior of every family: the same steps,
auto-stop checks and returned steps, images within a bound, the batch shrinking as members stop,
the late phase; and the cases the loop runs instead, exactly."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ganprior_core import OptimizerConfig, inpaint
from ganprior_core.method import vectorized
from ganprior_core.method.batched import inpaint_batch
from ganprior_core.method.config import VECTORIZE_CHOICES
from tests.method.test_batched import (
    MIXED,
    MODEL,
    SEEDS,
    assert_same_result,
    problems,
    recorder,
    sequential_runs,
)
from tests.tiny_priors import assert_same_state, state_of

pytestmark = pytest.mark.usefixtures("one_thread")

# Grouped convolutions sum in another order than a member's own: after the 30 steps below the
# images agree to this (fp32, values in [0, 1]); steps, checks and returned steps are the same.
IMAGE_TOLERANCE = 1e-3


def test_a_vectorised_batch_follows_each_members_own_run(tiny_prior):
    images, holes = problems(tiny_prior)
    before = state_of(tiny_prior)
    sequential, reports = sequential_runs(tiny_prior, images, holes, MIXED)
    recorded = [recorder() for _ in SEEDS]
    together = inpaint_batch(tiny_prior, images, holes, MODEL, MIXED, SEEDS, vectorize="vmap",
                             callbacks=[callback for _, callback in recorded])
    # Members stop at different steps, before and after the late phase: the batch shrinks.
    assert len({result.steps_run for result in sequential}) > 1
    assert any(result.g1_frozen_at is not None for result in sequential)
    for one, member, seen, (member_seen, _) in zip(sequential, together, reports, recorded):
        assert (member.steps_run, member.best_step, member.held_out_best_step,
                member.g1_frozen_at, member.seed, member.stop_reason) == \
               (one.steps_run, one.best_step, one.held_out_best_step, one.g1_frozen_at, one.seed,
                one.stop_reason)
        assert (member.output - one.output).abs().max() < IMAGE_TOLERANCE
        assert member.loss_history == pytest.approx(one.loss_history, rel=1e-3)
        assert [(p.step, p.total, p.stopped_early) for p in member_seen] == \
               [(p.step, p.total, p.stopped_early) for p in seen]
    assert_same_state(before, tiny_prior)
    again = inpaint_batch(tiny_prior, images, holes, MODEL, MIXED, SEEDS, vectorize="vmap")
    assert all(torch.equal(a.output, b.output) for a, b in zip(together, again))  # same seed


def test_the_first_steps_agree_to_float_rounding(tiny_prior):
    images, holes = problems(tiny_prior, 3)
    config = replace(MIXED, steps=4, stop="fixed", freeze_g1_at=2)
    sequential = [inpaint(tiny_prior, image, hole, MODEL, config, seed)
                  for image, hole, seed in zip(images, holes, SEEDS)]
    together = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS[:3], vectorize="vmap")
    for one, member in zip(sequential, together):
        assert member.loss_history == pytest.approx(one.loss_history, rel=1e-5)
        assert (member.output - one.output).abs().max() < 1e-5


def test_precision_auto_computes_a_vectorised_batch_in_fp32_with_a_note(tiny_prior):
    images, holes = problems(tiny_prior, 2)
    config = replace(MIXED, steps=4, stop="fixed", precision="auto")
    together = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS[:2], vectorize="vmap")
    fp32 = inpaint_batch(tiny_prior, images, holes, MODEL, replace(config, precision="fp32"),
                         SEEDS[:2], vectorize="vmap")
    for auto, plain in zip(together, fp32):
        assert torch.equal(auto.output, plain.output)
    alone = inpaint(tiny_prior, images[0], holes[0], MODEL, config, SEEDS[0])
    chose_bf16 = any(note.startswith("precision auto: bf16") for note in alone.notes)  # the CPU's kind
    assert any("fp32 in a vectorised batch" in note for note in together[0].notes) == chose_bf16


@pytest.mark.parametrize("why", ["bf16", "vmap fails"])
def test_what_cannot_be_vectorised_runs_in_the_loop_exactly(tiny_prior, monkeypatch, why):
    images, holes = problems(tiny_prior, 2)
    config = replace(MIXED, steps=6, stop="fixed", freeze_g1_at=3)
    if why == "bf16":
        config = replace(config, precision="bf16")
    else:
        def failing_vmap(*args, **kwargs):
            raise RuntimeError("no batching rule for this operation")
        monkeypatch.setattr(vectorized.torch, "vmap", failing_vmap)
    loop = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS[:2], vectorize="loop")
    fallback = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS[:2], vectorize="vmap")
    for exact, member in zip(loop, fallback):
        assert torch.equal(exact.output, member.output) and exact.loss_history == member.loss_history
        added = [note for note in member.notes if note not in exact.notes]
        assert len(added) == 1 and "the batch ran member after member" in added[0]
        assert ("bf16" if why == "bf16" else "no batching rule") in added[0]


def test_cancelling_a_vectorised_batch_leaves_the_prior_alone(tiny_prior):
    images, holes = problems(tiny_prior, 3)
    before = state_of(tiny_prior)

    def cancel_at_step_5(progress):
        if progress.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        inpaint_batch(tiny_prior, images, holes, MODEL, replace(MIXED, stop="fixed", steps=8),
                      SEEDS[:3], vectorize="vmap", callbacks=[None, cancel_at_step_5, None])
    assert_same_state(before, tiny_prior)


def test_vectorize_is_chosen_from_three_and_auto_loops_on_a_cpu(tiny_prior):
    images, holes = problems(tiny_prior, 2)
    config = replace(MIXED, steps=4, stop="fixed")
    with pytest.raises(ValueError, match="vectorize must be one of auto, loop, vmap, got 'yes'"):
        inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS[:2], vectorize="yes")
    auto = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS[:2])
    loop = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS[:2], vectorize="loop")
    for a, b in zip(auto, loop):
        assert_same_result(a, b)
    assert VECTORIZE_CHOICES == ("auto", "loop", "vmap")


def test_a_single_member_is_a_single_run(tiny_prior):
    images, holes = problems(tiny_prior, 1)
    config: OptimizerConfig = replace(MIXED, steps=6, stop="fixed")
    alone = inpaint(tiny_prior, images[0], holes[0], MODEL, config, SEEDS[0])
    (member,) = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS[:1], vectorize="vmap")
    assert_same_result(alone, member)


def test_a_vectorised_batch_with_the_perceptual_loss_follows_its_single_runs(tiny_prior):
    """VGG16's features of each member's masked image inside the pass, against its own target's."""
    from ganprior_core.method.perceptual import VGG16Features
    torch.manual_seed(0)
    vgg = VGG16Features(depth=4).eval()
    images, holes = problems(tiny_prior, 2)
    config = replace(MIXED, steps=4, stop="fixed", perceptual_weight=0.1)
    sequential = [inpaint(tiny_prior, image, hole, MODEL, config, seed, perceptual=vgg)
                  for image, hole, seed in zip(images, holes, SEEDS)]
    together = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS[:2], perceptual=vgg,
                             vectorize="vmap")
    for one, member in zip(sequential, together):
        assert not any("member after member" in note for note in member.notes)
        assert member.loss_history == pytest.approx(one.loss_history, rel=1e-5)
        assert (member.output - one.output).abs().max() < 1e-5
