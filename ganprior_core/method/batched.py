"""Several images, restorations or starts of one image optimised together on one device.

Every member is the run `inpaint` would make of it (fit.py): its own private copy of the prior,
codes, alpha, beta, stop rule and late phase. What members share is the step: each member's
forward pass (and auto-stop check) in turn, one backward pass through the sum of the members'
losses, and one Adam holding every member's parameters (one group per learning rate; fused
Adam is elementwise, so this is one Adam per member). No parameter is shared between members,
so each one's gradient is exactly its own loss's and a member that diverges (NaN) leaves the
others untouched. The result of each member is therefore its sequential run's bit for bit, in
fp32 and under bf16 autocast alike, compiled or eager (compilation.py is used as a single run
uses it): the same auto-stop checks, stop step, returned image and loss history.

A member whose stop rule ends it is finished at once (its callback gets the same last report a
sequential run sends) and its parameters and Adam state leave the batch: the batch shrinks.
Raising from any member's callback cancels the whole batch (the exception propagates); the
prior is never modified.

The members may be any targets fit.py steps: images to inpaint (inpaint_batch), restorations
(restore.restore_batch), or the starts of one image, stepped side by side to the step where they
are compared and the best go on (fill_from_starts_together, which fit._fill_from_starts uses
where StartsConfig.vectorize asks for it).

How many run together: at most `batch_size` (None: all of them), and no more than the memory
available now holds (memory.batch_size_that_fits: every member's state and activations are
alive together until the backward pass); the rest run in later batches. The loop here is what a
CPU runs fastest; on a GPU the members step in one torch.func.vmap pass instead (vectorized.py,
`vectorize`); what each measured: docs/benchmarks.md, "Batched runs".
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Sequence

import torch

from .. import imaging
from ..families import auto_stop_rule, family_of
from ..validation import check_count, check_seed, resolve_device
from . import fit, memory, vectorized
from .auto_stop import TYPICAL_AUTO_STOP_STEPS
from .config import VECTORIZE_CHOICES, OptimizerConfig, vectorizes
from .cudnn_settings import repeatable_convolutions
from .multi_latent import MultiLatentConfig
from .perceptual import VGG16Features
from .results import InpaintResult, Progress
from .starts import StartsConfig, start_seed

Callback = Callable[[Progress], None]


def inpaint_batch(prior: torch.nn.Module, images: Sequence[torch.Tensor],
                  hole_masks: Sequence[torch.Tensor | None], model_config: MultiLatentConfig,
                  optimizer_config: OptimizerConfig, seeds: Sequence[int],
                  device: str | torch.device = "cpu", perceptual: VGG16Features | None = None,
                  callbacks: Sequence[Callback | None] | None = None,
                  batch_size: int | None = None, vectorize: str = "auto") -> list[InpaintResult]:
    """`inpaint` of each (image, hole mask, seed), optimised together (module doc): the results,
    in order, equal inpaint's for the same arguments (with `vectorize` "vmap", up to float
    rounding). `callbacks[i]` gets member i's progress.

    images: [3, R, R] in [0, 1] at the prior's resolution; hole masks [R, R], 1 = hole, or None.
    The same image with several seeds runs several starts of it side by side. Every member is
    checked as inpaint checks it before any work.
    """
    count = check_batch(images, hole_masks, seeds, callbacks, batch_size, vectorize)
    checked = [fit._check_inputs(prior, image, hole, model_config, optimizer_config, seed, device,
                                 perceptual, StartsConfig())
               for image, hole, seed in zip(images, hole_masks, seeds)]
    device = checked[0][1]
    targets = [fit._hole_target(prior, image, hole, device) for image, hole in zip(images, hole_masks)]
    fills = fill_batch(prior, targets, model_config, optimizer_config, [seed for seed, _ in checked],
                       device, perceptual, callbacks or [None] * count, batch_size, None,
                       memory.INPAINT_IMAGE_COPIES, vectorize)
    # Composited on the run's device, as inpaint does.
    return [fill.result(fill.output.cpu(),
                        imaging.composite(fill.target.image, fill.output, fill.target.hole).cpu())
            for fill in fills]


def inpaint_batch_any_size(prior: torch.nn.Module, images: Sequence[torch.Tensor],
                           hole_masks: Sequence[torch.Tensor], model_config: MultiLatentConfig,
                           optimizer_config: OptimizerConfig, seeds: Sequence[int],
                           fit_mode: str = "resize", device: str | torch.device = "cpu",
                           perceptual: VGG16Features | None = None,
                           callbacks: Sequence[Callback | None] | None = None,
                           batch_size: int | None = None,
                           image_copies: float = memory.INPAINT_IMAGE_COPIES,
                           vectorize: str = "auto") -> list[InpaintResult]:
    """`inpaint_any_size` of each (image [3, H, W], hole mask [h, w], seed), optimised together:
    the results equal inpaint_any_size's for the same arguments (`fit_mode` is its `fit`; with
    `vectorize` "vmap", up to float rounding).
    `image_copies`: image-sized copies held per image (a caller holding more, as the node,
    says how many), counted in how many run together."""
    count = check_batch(images, hole_masks, seeds, callbacks, batch_size, vectorize)
    optimizer_config.validate()
    family_of(prior)
    checked_seeds = [check_seed(seed) for seed in seeds]
    device = resolve_device(device)
    for image, hole in zip(images, hole_masks):
        fit._check_holds_values(image, "image")
        fit._check_holds_values(hole, "hole mask")
    largest = max((tuple(image.shape[1:]) for image in images if image.dim() == 3),
                  key=lambda size: size[0] * size[1], default=None)
    memory.check_inpaint_fits(prior, model_config, optimizer_config, perceptual, device,
                              image_size=largest, image_copies=image_copies)
    fitted = [imaging.fit_to_resolution(image, hole, prior.config.resolution, fit_mode)
              for image, hole in zip(images, hole_masks)]
    for (image_r, hole_r, _), seed in zip(fitted, checked_seeds):
        fit._check_inputs(prior, image_r, hole_r, model_config, optimizer_config, seed, device,
                          perceptual, StartsConfig())
    targets = [fit._hole_target(prior, image_r, hole_r, device) for image_r, hole_r, _ in fitted]
    fills = fill_batch(prior, targets, model_config, optimizer_config, checked_seeds, device,
                       perceptual, callbacks or [None] * count, batch_size, largest, image_copies,
                       vectorize)
    return [fit._at_input_size(fill, image, hole_mask, restore)
            for fill, (_, _, restore), image, hole_mask in zip(fills, fitted, images, hole_masks)]


def check_batch(images: Sequence, hole_masks: Sequence, seeds: Sequence,
                callbacks: Sequence | None, batch_size: int | None, vectorize: str,
                masks_name: str = "hole masks") -> int:
    """The batch's own refusals (each member is checked as a single run after): the count.
    `hole_masks` is what each image comes with, called `masks_name` (restore: "degradations")."""
    if vectorize not in VECTORIZE_CHOICES:
        raise ValueError(f"vectorize must be one of {', '.join(VECTORIZE_CHOICES)}, got {vectorize!r}")
    count = len(images)
    check_count(count, "number of images in a batch", 1)
    for name, values in ((masks_name, hole_masks), ("seeds", seeds), ("callbacks", callbacks)):
        if values is not None and len(values) != count:
            raise ValueError(f"a batch needs one of the {name} per image: {count} images, "
                             f"{len(values)} {name}")
    if batch_size is not None:
        check_count(batch_size, "batch size", 1)
    return count


def fill_batch(prior: torch.nn.Module, targets: list, model_config: MultiLatentConfig,
               optimizer_config: OptimizerConfig, seeds: list[int], device: torch.device,
               perceptual: VGG16Features | None, callbacks: Sequence[Callback | None],
               batch_size: int | None, image_size: tuple[int, int] | None,
               image_copies: float, vectorize: str) -> list[fit._Fill]:
    """Every member's fill, in order: those with nothing to fit sampled as inpaint samples them,
    the others in batches of what fits."""
    config = replace(optimizer_config,
                     auto_stop=auto_stop_rule(prior.config, optimizer_config.auto_stop))
    fills: list[fit._Fill | None] = [None] * len(targets)
    with repeatable_convolutions():
        fitted = []
        for index, target in enumerate(targets):
            if target.observes_nothing():
                fills[index] = fit._unconditional_sample(prior, target, seeds[index],
                                                         time.perf_counter(), device)
            else:
                fitted.append(index)
        if not fitted:
            return fills
        vectorise = vectorizes(vectorize, device)
        together = memory.batch_size_that_fits(prior, model_config, config, perceptual, device,
                                               min(len(fitted), batch_size or len(fitted)),
                                               image_size, image_copies, vectorized=vectorise)
        # vmap steps members that see their image the same way: those run in batches of their own.
        groups = _observing_alike(targets, fitted) if vectorise else [fitted]
        for group in groups:
            for first in range(0, len(group), together):
                members = group[first:first + together]
                done = _run_together(prior, [targets[i] for i in members], model_config, config,
                                     [seeds[i] for i in members], device, perceptual,
                                     [callbacks[i] for i in members], vectorise)
                for index, fill in zip(members, done):
                    fills[index] = fill
    return fills


def _observing_alike(targets: list, indices: list[int]) -> list[list[int]]:
    """`indices` in groups of targets with the same observer (the target whose observe function
    their loss uses: one for every inpainting target), each group in order, ordered by its first."""
    groups: dict[int, list[int]] = {}
    for index in indices:
        groups.setdefault(id(targets[index].observer), []).append(index)
    return list(groups.values())


def _run_together(prior: torch.nn.Module, targets: list, model_config: MultiLatentConfig,
                  config: OptimizerConfig, seeds: list[int], device: torch.device,
                  perceptual: VGG16Features | None,
                  callbacks: list[Callback | None], vectorize: bool) -> list[fit._Fill]:
    """One batch: every member set up as fit._start sets up a run, stepped together, and each
    finished as it ends."""
    started = time.perf_counter()
    runs: list[fit._Run | None] = [fit._start(prior, target, model_config, config, seed, device,
                                              perceptual)
                                   for target, seed in zip(targets, seeds)]
    fills: list[fit._Fill | None] = [None] * len(runs)

    def finish(index: int) -> None:
        fills[index] = fit._finish_member(runs[index], started, callbacks[index])
        runs[index] = None  # its copy of the prior is freed once the stepping lets go of it

    step_members(list(runs), config, callbacks, finish, vectorize)
    return fills


def step_members(runs: list[fit._Run], config: OptimizerConfig,
                 callbacks: Sequence[Callback | None], on_end: Callable[[int], None],
                 vectorize: bool, pause_at: int | None = None,
                 choose: Callable[[], Sequence[int]] | None = None) -> None:
    """Step members just set up by fit._start together until each ends: one vectorised pass
    where `vectorize` and the members allow it, else the loop below.

    `on_end(i)` is called once member i has ended (its rule stopped it or it reached the step
    limit), before the next step: the caller finishes it (fit._finish). With `pause_at`, before
    that step `choose()` names the members that go on; the others are dropped where they are
    (several starts of one image: fill_from_starts_together)."""
    if vectorize and len(runs) > 1:
        reason = vectorized.can_vectorize(runs)
        if reason is None:
            try:
                vectorized.run_vectorized(runs, config, callbacks, on_end, pause_at, choose)
                return
            except vectorized.CannotVectorize as error:
                reason = str(error)
        for run in runs:
            run.notes.append(f"{reason}: the batch ran member after member (same result as "
                             "single runs)")
    _step_in_turn(runs, config, callbacks, on_end, pause_at, choose)


def _step_in_turn(runs: list[fit._Run], config: OptimizerConfig,
                  callbacks: Sequence[Callback | None], on_end: Callable[[int], None],
                  pause_at: int | None, choose: Callable[[], Sequence[int]] | None) -> None:
    """step_members' loop: each member's forward pass in turn, one backward pass, one Adam."""
    runs = list(runs)  # members leave this list as they end; the caller's is left alone
    adam = fit._build_optimizer([run.model for run in runs], config, runs[0].device)
    scheduler = fit._schedule(adam, config)
    for run in runs:  # the batch's Adam and schedule step every member
        run.adam, run.scheduler = adam, None

    def leave(index: int) -> None:
        _leave(adam, runs[index])
        runs[index] = None  # its parameters and Adam state are freed once the caller lets go

    active = list(range(len(runs)))
    for step in range(config.steps):
        if step == pause_at and choose is not None:
            going_on = set(choose())
            for index in active:
                if index not in going_on:
                    leave(index)
            active = [index for index in active if index in going_on]
        losses = {}
        for index in active:
            loss = fit._forward(runs[index], step)
            if loss is None:
                on_end(index)
                leave(index)
            else:
                losses[index] = loss
        if not losses:
            return
        adam.zero_grad(set_to_none=True)
        # No parameter is shared, so d(sum)/d(member's parameter) is that member's own gradient.
        sum(losses.values()).backward()
        adam.step()
        if scheduler is not None:
            scheduler.step()
        for index, loss in losses.items():
            fit._updated(runs[index], step, loss, callbacks[index])
        active = list(losses)
    for index in active:
        runs[index].ended = True
        on_end(index)


def fill_from_starts_together(prior: torch.nn.Module, target, model_config: MultiLatentConfig,
                              config: OptimizerConfig, seed: int, device: torch.device,
                              perceptual: VGG16Features | None, callback: Callback | None,
                              starts: StartsConfig, started: float) -> list[fit._Fill] | None:
    """fit._fill_from_starts with the starts stepped side by side (step_members, vectorised): the
    same schedule (every start to `choose_at`, the best `candidates` on to their own ends), and
    the same choice and fills as one start after another up to float rounding (exactly where
    the loop runs them). None where they do not all fit in the memory available now: the caller
    runs them one after another."""
    count = starts.starts
    if memory.batch_size_that_fits(prior, model_config, config, perceptual, device, count,
                                   vectorized=True) < count:
        return None
    runs: list[fit._Run | None] = [
        fit._start(prior, target, model_config, config, start_seed(seed, index), device, perceptual)
        for index in range(count)]
    pause = min(starts.choose_at + 1, config.steps)  # steps 0 ... choose_at, as fit's
    progress = _StartsProgress(callback, count, pause, starts.candidates, config.steps)
    chosen: list[fit._StartsChoice] = []

    def choose() -> list[int]:
        if not chosen:
            chosen.append(fit._choose_starts(target, runs, starts))
            for dropped in chosen[0].order[starts.candidates:]:
                runs[dropped] = None  # freed once the stepping lets go of it
            progress.compared(chosen[0].order[:starts.candidates])
        return chosen[0].order[:starts.candidates]

    step_members(list(runs), config, [progress.reporter(index) for index in range(count)],
                 progress.ended, vectorize=True, pause_at=pause, choose=choose)
    candidates = choose()  # where every start ended before the comparison
    choice = chosen[0]
    for index in candidates:
        choice.steps_taken[index] = runs[index].steps_run
    fills = []
    for index in candidates:
        fill = choice.candidate(index, fit._finish(runs[index], started, None))
        fill.notes.append(f"the {count} starts were stepped side by side (vectorize "
                          f"{starts.vectorize!r})")
        fills.append(fill)
        runs[index] = None
    progress.done(sum(choice.steps_taken))
    return fit._ordered_candidates(target, fills, starts, choice)


class _StartsProgress:
    """One progress stream for starts stepped side by side. Every start reports each step; the
    lowest-numbered start still running is passed on, placed in the whole run as fit places one
    start after another: the other starts' steps so far before it, what they are still expected
    to take after it."""

    def __init__(self, callback: Callback | None, count: int, pause: int, candidates: int,
                 steps: int) -> None:
        self.callback, self.pause, self.candidates = callback, pause, candidates
        self.later = max(0, min(TYPICAL_AUTO_STOP_STEPS, steps) - pause)  # a candidate's, expected
        self.steps_taken = [0] * count
        self.running = set(range(count))
        self.continuing: list[int] | None = None  # the candidates, once the starts are compared
        self.last: Progress | None = None  # the latest report passed on

    def ended(self, index: int) -> None:
        self.running.discard(index)

    def compared(self, candidates: list[int]) -> None:
        self.continuing = candidates
        self.running &= set(candidates)

    def reporter(self, index: int) -> Callback | None:
        if self.callback is None:
            return None

        def report(progress: Progress) -> None:
            self.steps_taken[index] = progress.step
            if index != min(self.running, default=None):
                return
            others = [other for other in self.running if other != index]
            before = sum(self.steps_taken) - progress.step
            if self.continuing is None:
                after = (sum(max(0, self.pause - self.steps_taken[other]) for other in others)
                         + self.candidates * self.later)
                where = dict(pauses_at=self.pause, together=True)
            else:
                expected = self.pause + self.later
                after = sum(max(0, expected - self.steps_taken[other]) for other in others)
                where = dict(pauses_at=None)
            self.last = replace(progress, start=index, starts=len(self.steps_taken),
                                steps_before=before, steps_after=after, **where)
            self.callback(self.last)
        return report

    def done(self, steps: int) -> None:
        """The last report, once every candidate is finished: the bar at the `steps` all the
        starts took."""
        if self.callback is not None and self.last is not None:
            self.callback(replace(self.last, steps_before=steps - self.last.start_steps_done,
                                  steps_after=0, pauses_at=None, together=False))


def _leave(adam: torch.optim.Adam, run: fit._Run) -> None:
    """Take a finished member's parameters and their state out of the batch's Adam."""
    gone = {id(parameter) for parameter in run.model.parameters()}
    for group in adam.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in gone]
    for parameter in run.model.parameters():
        adam.state.pop(parameter, None)
