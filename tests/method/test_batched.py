"""Batched runs (ganprior_core/method/batched.py): a batch equals its members' sequential runs bit
for bit (images, loss histories, auto-stop and returned steps, late phase, progress reports), on
a tiny prior of every family; cancelling, a diverging member, the memory-based split, the prior
left alone and same seed -> same result."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ganprior_core import (
    AutoStopConfig,
    MultiLatentConfig,
    OptimizerConfig,
    Progress,
    TogetherProgress,
    inpaint,
    inpaint_any_size,
)
from ganprior_core.method import batched, fit, memory
from ganprior_core.method.batched import inpaint_batch, inpaint_batch_any_size
from tests.tiny_priors import assert_same_state, inpainting_problem, state_of

pytestmark = pytest.mark.usefixtures("one_thread")

# Short checks, patience 1 and a late phase at step 8: on both tiny priors the four members below
# stop at different steps (some before the late phase, some in it, some at the maximum).
MIXED = OptimizerConfig(steps=30, lr_generator=1e-2, perceptual_weight=0.0, precision="fp32",
                        stop="auto", compile=False, freeze_g1_at=8, preview_every=4,
                        auto_stop=AutoStopConfig(check_every=2, patience=1, smoothing=0.0))
MODEL = MultiLatentConfig(num_codes=2, split_layer=2)
SEEDS = [10, 11, 12, 13]


def problems(prior, count: int = 4):
    pairs = [inpainting_problem(prior, seed) for seed in range(count)]
    return [image for image, _ in pairs], [hole for _, hole in pairs]


def recorder():
    seen = []
    return seen, seen.append


def sequential_runs(prior, images, holes, config, seeds=SEEDS, run=inpaint):
    """Each (image, hole, seed) run alone (`run`: inpaint, or e.g. restore_any_size with
    observations and degradations): the results and each run's progress reports."""
    results, reports = [], []
    for image, hole, seed in zip(images, holes, seeds):
        seen, callback = recorder()
        results.append(run(prior, image, hole, MODEL, config, seed, callback=callback))
        reports.append(seen)
    return results, reports


def assert_same_result(a, b):
    assert torch.equal(a.output, b.output) and torch.equal(a.composite, b.composite)
    assert a.loss_history == b.loss_history
    assert (a.steps_run, a.best_step, a.held_out_best_step, a.g1_frozen_at, a.seed) == \
           (b.steps_run, b.best_step, b.held_out_best_step, b.g1_frozen_at, b.seed)
    assert a.stop_reason == b.stop_reason and a.notes == b.notes


def assert_same_reports(a, b):
    assert [(p.step, p.total, p.loss, p.stopped_early, p.stop) for p in a] == \
           [(p.step, p.total, p.loss, p.stopped_early, p.stop) for p in b]
    assert all((p.preview is None) == (q.preview is None) and
               (p.preview is None or torch.equal(p.preview, q.preview)) for p, q in zip(a, b))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_batch_of_four_equals_four_sequential_runs(tiny_prior, precision):
    images, holes = problems(tiny_prior)
    config = replace(MIXED, precision=precision)
    before = state_of(tiny_prior)
    sequential, seq_reports = sequential_runs(tiny_prior, images, holes, config)
    recorded = [recorder() for _ in SEEDS]
    together = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS,
                             callbacks=[callback for _, callback in recorded])
    assert len({result.steps_run for result in sequential}) > 1  # members stop at different steps
    for one, member, seen, (reports, _) in zip(sequential, together, seq_reports, recorded):
        assert_same_result(one, member)
        assert_same_reports(seen, reports)
    assert_same_state(before, tiny_prior)
    again = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS)
    assert all(torch.equal(a.output, b.output) for a, b in zip(together, again))


def test_several_seeds_of_one_image_and_a_member_with_nothing_known(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    config = replace(MIXED, stop="fixed", steps=10)
    holes = [hole, torch.ones(16, 16), hole]  # the middle member is an unconditional sample
    together = inpaint_batch(tiny_prior, [image] * 3, holes, MODEL, config, [0, 1, 2])
    for member, member_hole, seed in zip(together, holes, [0, 1, 2]):
        assert_same_result(inpaint(tiny_prior, image, member_hole, MODEL, config, seed), member)
    assert not torch.equal(together[0].output, together[2].output)


def test_any_size_batch_equals_inpaint_any_size(tiny_prior):
    torch.manual_seed(5)
    images = [torch.rand(3, 20, 24), torch.rand(3, 12, 12)]
    holes = [torch.zeros(20, 24), torch.zeros(12, 12)]
    holes[0][5:12, 4:10], holes[1][2:6, 3:8] = 1, 1
    config = replace(MIXED, stop="fixed", steps=6)
    together = inpaint_batch_any_size(tiny_prior, images, holes, MODEL, config, [3, 4])
    for image, hole, seed, member in zip(images, holes, [3, 4], together):
        assert_same_result(inpaint_any_size(tiny_prior, image, hole, MODEL, config, seed), member)


def test_cancelling_any_member_stops_the_batch_and_leaves_the_prior_alone(tiny_prior):
    images, holes = problems(tiny_prior)
    before = state_of(tiny_prior)
    seen = []

    def cancel_at_5(progress):
        seen.append(progress.step)
        if progress.step == 5:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        inpaint_batch(tiny_prior, images, holes, MODEL, MIXED, SEEDS,
                      callbacks=[None, None, cancel_at_5, None])
    assert seen == [1, 2, 3, 4, 5]
    assert_same_state(before, tiny_prior)
    # Nothing of the cancelled batch lingers: the next one equals sequential runs.
    after = inpaint_batch(tiny_prior, images[:2], holes[:2], MODEL, MIXED, SEEDS[:2])
    for image, hole, seed, member in zip(images, holes, SEEDS, after):
        assert_same_result(inpaint(tiny_prior, image, hole, MODEL, MIXED, seed), member)


def test_a_diverging_member_does_not_touch_the_others(tiny_prior, monkeypatch):
    images, holes = problems(tiny_prior, 3)
    config = replace(MIXED, stop="fixed", steps=8)
    started = []
    start = fit._start
    monkeypatch.setattr(fit, "_start", lambda *args: started.append(start(*args)) or started[-1])

    def poison(progress):  # member 1's codes become NaN after its third update
        if progress.step == 3:
            with torch.no_grad():
                started[1].model.latents.fill_(float("nan"))

    together = inpaint_batch(tiny_prior, images, holes, MODEL, config, SEEDS[:3],
                             callbacks=[None, poison, None])
    assert torch.isnan(torch.tensor(together[1].loss_history[4:])).all()
    monkeypatch.setattr(fit, "_start", start)
    for index in (0, 2):
        alone = inpaint(tiny_prior, images[index], holes[index], MODEL, config, SEEDS[index])
        assert_same_result(alone, together[index])


def test_a_batch_that_does_not_fit_is_split(tiny_prior, monkeypatch):
    images, holes = problems(tiny_prior)
    config = replace(MIXED, stop="fixed", steps=4)
    two = memory.estimate_batch(tiny_prior, MODEL, config, None, "cpu", 2)
    three = memory.estimate_batch(tiny_prior, MODEL, config, None, "cpu", 3)
    one = memory.estimate_batch(tiny_prior, MODEL, config, None, "cpu", 1)
    # The runtime is paid once; everything else once per member.
    assert one.total < two.total < 2 * one.total and three.total - two.total == two.total - one.total
    monkeypatch.setattr(memory, "available_host_memory",
                        lambda: memory.Available((two.total + three.total) // 2, "a test budget"))
    assert memory.batch_size_that_fits(tiny_prior, MODEL, config, None, "cpu", 4) == 2
    sizes = []
    together = batched._run_together
    monkeypatch.setattr(batched, "_run_together",
                        lambda prior, targets, *rest: sizes.append(len(targets)) or
                        together(prior, targets, *rest))
    results = inpaint_batch(tiny_prior, images[:3], holes[:3], MODEL, config, SEEDS[:3])
    assert sizes == [2, 1]
    sizes.clear()
    inpaint_batch(tiny_prior, images[:3], holes[:3], MODEL, config, SEEDS[:3], batch_size=1)
    assert sizes == [1, 1, 1]
    monkeypatch.undo()
    for image, hole, seed, member in zip(images, holes, SEEDS, results):
        assert_same_result(inpaint(tiny_prior, image, hole, MODEL, config, seed), member)


def test_a_budget_below_one_run_is_refused_before_any_work(tiny_prior, monkeypatch):
    images, holes = problems(tiny_prior, 2)
    monkeypatch.setattr(memory, "available_host_memory",
                        lambda: memory.Available(10 ** 6, "a test budget"))
    with pytest.raises(memory.MemoryEstimateError, match="not enough memory"):
        inpaint_batch(tiny_prior, images, holes, MODEL, MIXED, SEEDS[:2])


def test_batch_refusals(tiny_prior):
    images, holes = problems(tiny_prior, 2)
    with pytest.raises(ValueError, match="one of the seeds per image: 2 images, 1 seeds"):
        inpaint_batch(tiny_prior, images, holes, MODEL, MIXED, [0])
    with pytest.raises(ValueError, match="batch size"):
        inpaint_batch(tiny_prior, images, holes, MODEL, MIXED, [0, 1], batch_size=0)
    with pytest.raises(ValueError, match="number of images in a batch"):
        inpaint_batch(tiny_prior, [], [], MODEL, MIXED, [])
    with pytest.raises(ValueError, match="image must be"):
        inpaint_batch(tiny_prior, [images[0], images[1][:, :8]], holes, MODEL, MIXED, [0, 1])


def test_together_progress_counts_every_runs_steps_towards_their_expected_lengths():
    bar = TogetherProgress(3)
    assert bar.bar(0, Progress(1, 40)) == (1, 3 * 40)  # runs not heard from: as long as this one
    assert bar.bar(1, Progress(1, 40)) == (2, 3 * 40)
    assert bar.bar(2, Progress(1, 40)) == (3, 3 * 40)
    rule = AutoStopConfig(check_every=5, patience=1)
    stopped = Progress(40, 40, stopped_early=True,
                       stop=replace_state(rule, last_check=10, best_step=5, checks_since_best=1))
    assert bar.bar(1, stopped) == (1 + 10 + 1, 40 + 10 + 40)  # a stopped run: the steps it took


def replace_state(rule, **fields):
    from ganprior_core.method.auto_stop import StopState
    return StopState(rule.check_every, rule.patience, **fields)


@pytest.mark.parametrize("variant", [{"fused": True}, {"foreach": True}, {"foreach": False}])
def test_one_adam_over_every_members_parameters_equals_one_adam_each(variant):
    def members():
        torch.manual_seed(0)
        return [[torch.randn(5, 7, requires_grad=True), torch.randn(3, requires_grad=True)]
                for _ in range(3)]
    shared, alone = members(), members()
    together = torch.optim.Adam([{"params": [m[0] for m in shared], "lr": 0.05},
                                 {"params": [m[1] for m in shared], "lr": 0.01}], **variant)
    each = [torch.optim.Adam([{"params": [m[0]], "lr": 0.05}, {"params": [m[1]], "lr": 0.01}],
                             **variant) for m in alone]
    for step in range(4):
        for params, optimizers in ((shared, [together]), (alone, each)):
            for optimizer in optimizers:
                optimizer.zero_grad()
            sum(((p * (step + 1)).sin().sum() for m in params for p in m)).backward()
            for optimizer in optimizers:
                optimizer.step()
    assert all(torch.equal(a, b) for m, n in zip(shared, alone) for a, b in zip(m, n))


def test_a_members_seconds_end_where_it_ended(tiny_prior):
    """A member that stops early reports its own time, not the batch's."""
    images, holes = problems(tiny_prior)
    together = inpaint_batch(tiny_prior, images, holes, MODEL, MIXED, SEEDS)
    first = min(together, key=lambda result: result.steps_run)
    last = max(together, key=lambda result: result.steps_run)
    assert first.steps_run < last.steps_run and first.seconds < last.seconds
