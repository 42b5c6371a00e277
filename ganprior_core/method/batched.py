"""Several images (or several seeds of one image) optimised together on one device.

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
from .config import OptimizerConfig
from .cudnn_settings import repeatable_convolutions
from .multi_latent import MultiLatentConfig
from .perceptual import VGG16Features
from .results import InpaintResult, Progress
from .starts import StartsConfig

Callback = Callable[[Progress], None]
# How members are stepped: "loop" (exact, what a CPU runs fastest), "vmap" (vectorized.py: one
# pass for all, what a GPU needs; equal up to float rounding), "auto" (vmap on CUDA, else loop).
VECTORIZE_CHOICES = ("auto", "loop", "vmap")


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
    count = _check_batch(images, hole_masks, seeds, callbacks, batch_size, vectorize)
    checked = [fit._check_inputs(prior, image, hole, model_config, optimizer_config, seed, device,
                                 perceptual, StartsConfig())
               for image, hole, seed in zip(images, hole_masks, seeds)]
    device = checked[0][1]
    targets = [fit._hole_target(prior, image, hole, device) for image, hole in zip(images, hole_masks)]
    fills = _fill_batch(prior, targets, model_config, optimizer_config, [seed for seed, _ in checked],
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
    count = _check_batch(images, hole_masks, seeds, callbacks, batch_size, vectorize)
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
    fills = _fill_batch(prior, targets, model_config, optimizer_config, checked_seeds, device,
                        perceptual, callbacks or [None] * count, batch_size, largest, image_copies,
                        vectorize)
    return [fit._at_input_size(fill, image, hole_mask, restore)
            for fill, (_, _, restore), image, hole_mask in zip(fills, fitted, images, hole_masks)]


def _check_batch(images: Sequence, hole_masks: Sequence, seeds: Sequence,
                 callbacks: Sequence | None, batch_size: int | None, vectorize: str) -> int:
    """The batch's own refusals (each member is checked as a single run after): the count."""
    if vectorize not in VECTORIZE_CHOICES:
        raise ValueError(f"vectorize must be one of {', '.join(VECTORIZE_CHOICES)}, got {vectorize!r}")
    count = len(images)
    check_count(count, "number of images in a batch", 1)
    for name, values in (("hole masks", hole_masks), ("seeds", seeds), ("callbacks", callbacks)):
        if values is not None and len(values) != count:
            raise ValueError(f"a batch needs one of the {name} per image: {count} images, "
                             f"{len(values)} {name}")
    if batch_size is not None:
        check_count(batch_size, "batch size", 1)
    return count


def _fill_batch(prior: torch.nn.Module, targets: list, model_config: MultiLatentConfig,
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
        vectorise = vectorize == "vmap" or (vectorize == "auto" and device.type == "cuda")
        together = memory.batch_size_that_fits(prior, model_config, config, perceptual, device,
                                               min(len(fitted), batch_size or len(fitted)),
                                               image_size, image_copies, vectorized=vectorise)
        for first in range(0, len(fitted), together):
            members = fitted[first:first + together]
            done = _run_together(prior, [targets[i] for i in members], model_config, config,
                                 [seeds[i] for i in members], device, perceptual,
                                 [callbacks[i] for i in members], vectorise)
            for index, fill in zip(members, done):
                fills[index] = fill
    return fills


def _run_together(prior: torch.nn.Module, targets: list, model_config: MultiLatentConfig,
                  config: OptimizerConfig, seeds: list[int], device: torch.device,
                  perceptual: VGG16Features | None,
                  callbacks: list[Callback | None], vectorize: bool) -> list[fit._Fill]:
    """One batch: every member set up as fit._start sets up a run, then stepped together (one
    vectorised pass where `vectorize` and the members allow it, else the loop below)."""
    started = time.perf_counter()
    runs: list[fit._Run | None] = [fit._start(prior, target, model_config, config, seed, device,
                                              perceptual)
                                   for target, seed in zip(targets, seeds)]
    if vectorize and len(runs) > 1:
        reason = vectorized.can_vectorize(runs)
        if reason is None:
            try:
                return vectorized.run_vectorized(runs, config, callbacks, started)
            except vectorized.CannotVectorize as error:
                reason = str(error)
        for run in runs:
            run.notes.append(f"{reason}: the batch ran member after member (same result as "
                             "single runs)")
    adam = fit._build_optimizer([run.model for run in runs], config, device)
    scheduler = fit._schedule(adam, config)
    for run in runs:  # the batch's Adam and schedule step every member
        run.adam, run.scheduler = adam, None
    fills: list[fit._Fill | None] = [None] * len(runs)

    def finish(index: int) -> None:
        run = runs[index]
        fills[index] = fit._finish_member(run, started, callbacks[index])
        _leave(adam, run)
        runs[index] = None  # its copy of the prior and its Adam state are freed now

    active = list(range(len(runs)))
    for step in range(config.steps):
        losses = {}
        for index in active:
            loss = fit._forward(runs[index], step)
            if loss is None:
                finish(index)
            else:
                losses[index] = loss
        if not losses:
            break
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
        if runs[index] is not None:
            runs[index].ended = True
            finish(index)
    return fills


def _leave(adam: torch.optim.Adam, run: fit._Run) -> None:
    """Take a finished member's parameters and their state out of the batch's Adam."""
    gone = {id(parameter) for parameter in run.model.parameters()}
    for group in adam.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in gone]
    for parameter in run.model.parameters():
        adam.state.pop(parameter, None)
