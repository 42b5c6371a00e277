"""Restoration beyond holes (issue 33): super-resolution, colorization, holes and their chains,
fitted through the degradation operator (paper eq. 2) and returned consistent with what was
observed.

`restore(prior, observation, degradation, ...)` is `inpaint` for any degradation
(method/degradations.py): the generator's image x is fitted so that `degradation.observe(x)`
matches the observation y on its observed entries, and the result is `degradation.project(x, y)`,
the image nearest x whose degradation gives back y (area super-resolution and holes exactly,
colorization to the luma, bilinear / bicubic to half a grey level where reachable: the result's
`projection` report and notes say how it came out). `restore_any_size` takes an observation of
any size and aspect.

How the run differs from inpainting's, and why:
- the loss (losses.ObservationLoss) compares observe(x) with y on the observation's grid, where
  observed_mask is 1: the squared error of every observed entry (a gray observation's one
  channel, a low-resolution pixel) and, with VGG16 weights, the perceptual distance of the
  observation (one channel seen as three). VGG16 reads nothing useful from a tiny grid, so the
  perceptual term is left out, with a note, where the observation is under
  MIN_PERCEPTUAL_SIDE pixels on a side.
- the size: the prior makes an R x R image; the result is the observation's input size (H, W)
  (x F for super-resolution). The fit between the two is imaging.fit_to_resolution's on the
  high-resolution grid (resize, or pad: the padding is cropped away unfitted), applied inside
  the operator at every step, so the loss compares against the real observation at its own size
  and no resampled copy of it. Per-step work therefore grows with H x W (see the guide).
- auto-stop holds out observed entries of the observation's grid, as it holds out known pixels of
  a hole: tiles of 1/32 of the grid's longer side, `min_holdout_pixels` counted in the prior's
  pixels (one entry covers R^2 / (h w) of them, so auto-stop stays on at high factors). Unlike a
  plain reconstruction, super-resolution and colorization leave something unseen (the detail
  finer than the observation's grid, the chroma) and a fine-tuned generator overfits the seen
  part while that gets worse, as in a hole: so auto-stop runs for every degradation that loses
  something, and only an identity (a Hole with an empty mask) runs all steps.
- the defaults: a caller that gives no model or no optimiser settings (None) gets the task's
  (`task_defaults`): the `paper` preset with TASK_CHANGES applied for super-resolution and
  colorization, chosen on held-out facades (docs/restoration.md); holes alone keep `paper` as
  inpaint has it. Settings a caller gives are used as given.
- several starts are compared by how well their *projected results* agree (starts.agreement
  over the whole result): what differs between starts after the projection is what was not
  observed, and the projection reads only the observation and the generator's images.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields, replace
from typing import Callable, Sequence

import torch

from .. import imaging
from ..families import auto_stop_rule, family_of
from . import batched, memory
from .auto_stop import AutoStopConfig, holdout_mask
from .config import OptimizerConfig
from .degradations import Compose, Degradation, Downsample, Gray, ProjectionReport, luma
from .fit import _check_holds_values, _Fill, _fit_target, check_run_settings
from .losses import LossWeights, ObservationLoss
from .multi_latent import MultiLatentConfig
from .perceptual import VGG16Features
from .presets import preset
from .results import InpaintResult, Progress
from .starts import StartsConfig

# VGG16's relu3_3 features are a quarter of the image's side: under 32 pixels they are under 8
# wide, mostly padding, and the perceptual term is left out (with a note).
MIN_PERCEPTUAL_SIDE = 32
# Image-sized copies a restoration holds besides inpaint's: the step's high-resolution image,
# its observation and their gradients, and the projection's working copies.
RESTORE_IMAGE_COPIES = 6.0

# What the `paper` preset changes into for each task when the caller gives no settings:
# (MultiLatentConfig changes, OptimizerConfig changes). Chosen on held-out facades 10,005,200-
# with both bundled priors, apart from the evaluation facades (docs/restoration.md, "Defaults").
TASK_CHANGES: dict[str, tuple[dict, dict]] = {
    "sr": ({}, {}),
    "colorize": ({}, {}),
}


def restoration_task(degradation: Degradation) -> str | None:
    """The task whose defaults a degradation gets: "colorize" when it holds Gray (the chroma is
    the larger unknown, also in a gray low-resolution chain), else "sr" when it holds a
    Downsample, else None (holes alone: inpainting's settings)."""
    steps = degradation.steps if isinstance(degradation, Compose) else (degradation,)
    if any(isinstance(step, Gray) for step in steps):
        return "colorize"
    if any(isinstance(step, Downsample) for step in steps):
        return "sr"
    return None


def task_defaults(generator_config, degradation: Degradation
                  ) -> tuple[MultiLatentConfig, OptimizerConfig]:
    """restore's settings for `degradation` when the caller gives none: the `paper` preset for
    this prior with the task's TASK_CHANGES (unchanged for holes alone)."""
    model, optimizer = preset("paper", generator_config)
    task = restoration_task(degradation)
    if task is None:
        return model, optimizer
    model_changes, optimizer_changes = TASK_CHANGES[task]
    return replace(model, **model_changes), replace(optimizer, **optimizer_changes)


@dataclass
class RestoreResult(InpaintResult):
    """InpaintResult of a restoration: `output` is the generator's image at the result's size,
    `composite` the result (the projection: consistent with the observation; also `restored`),
    `projection` how consistent it came out (its notes are in `notes` too)."""
    projection: ProjectionReport | None = None

    @property
    def restored(self) -> torch.Tensor:
        """The result [3, H, W]: the generator's image projected onto the observation."""
        return self.composite

    @property
    def consistent(self) -> bool:
        """Degrading the result gives back the observation (to the projection's tolerance)."""
        return self.projection is None or self.projection.consistent


@dataclass
class _ObservationTarget:
    """What a restoration run fits: observe(to_input(x)) against y where observed."""
    degradation: Degradation  # on the observation's grid
    observation: torch.Tensor  # y [1, C, h, w] in [0, 1], on the device
    to_input: Callable[[torch.Tensor], torch.Tensor]  # [3, R, R] -> [3, H, W] (the fit), differentiable
    resolution: int  # R
    observed: torch.Tensor  # [h, w], 1 = observed, on the device
    # Another member of a batch whose operator observes alike (Degradation.observes_like): its
    # `_observe` is this target's loss's, so that the batch's members share one and vmap runs.
    observes_as: "_ObservationTarget | None" = None

    @property
    def unobserved(self) -> torch.Tensor:
        return 1 - self.observed

    @property
    def has_unseen(self) -> bool:
        """Something of the image is not observed: a hole, detail under the observation's grid,
        or the chroma of a gray observation."""
        channels, height, width = self.observation.shape[1:]
        in_height, in_width = self.degradation.input_size((height, width))
        return bool((self.observed < 1).any()) or channels < 3 or height * width < in_height * in_width

    def observes_nothing(self) -> bool:
        return not bool((self.observed > 0).any())

    @property
    def observer(self) -> "_ObservationTarget":
        """The target whose observe function this one's loss uses (itself, or `observes_as`)."""
        return self.observes_as or self

    def holdout(self, seed: int, config: AutoStopConfig) -> torch.Tensor:
        """[h, w]: observed entries held out, auto_stop.holdout_mask on the observation's grid
        (made square with unobserved padding, which holds no tile)."""
        height, width = self.observed.shape
        side = max(height, width)
        hole = torch.ones(side, side)
        hole[:height, :width] = imaging.hole_pixels(self.unobserved.cpu()).float()
        # min_holdout_pixels counts the prior's pixels; an entry covers R^2 / (h w) of them.
        minimum = max(1, math.ceil(config.min_holdout_pixels * height * width / self.resolution ** 2))
        mask = holdout_mask(hole, seed, replace(config, min_holdout_pixels=minimum))
        return mask[:height, :width].contiguous()

    def _observe(self, image: torch.Tensor) -> torch.Tensor:
        """[1, 3, R, R] -> [1, C, h, w] (either range: the operators' weights sum to 1)."""
        return self.degradation.observe(self.to_input(image[0].float())[None])

    def loss(self, fit_mask: torch.Tensor, weights: LossWeights, perceptual: VGG16Features | None,
             notes: list[str]) -> ObservationLoss:
        height, width = self.observation.shape[2:]
        if perceptual is not None and min(height, width) < MIN_PERCEPTUAL_SIDE:
            notes.append(f"perceptual term left out: the observation is {width}x{height}, under "
                         f"{MIN_PERCEPTUAL_SIDE} pixels a side, too small for VGG16's features; "
                         "only the pixel loss is used")
            perceptual = None
        return ObservationLoss(self.observer._observe, imaging.to_signed_range(self.observation),
                               fit_mask, weights, perceptual)

    def held_out_error(self, output: torch.Tensor, holdout: torch.Tensor) -> float:
        """MSE on the held-out entries of the observation of the image as the user gets it."""
        with torch.no_grad():
            observed = self._observe(imaging.to_unit_range(output.detach().float()))
        squared = (observed - self.observation) ** 2 * holdout
        return float(squared.sum() / (holdout.sum() * self.observation.shape[1]))

    def result(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, ProjectionReport]:
        """A generator image [3, R, R] in [0, 1] -> (it at the result's size, the projected
        result, the projection's report)."""
        with torch.no_grad():
            generated = self.to_input(image.float()).clamp(0, 1)
        projected, report = self.degradation.project(generated[None], self.observation)
        return generated, projected[0], report

    def compared(self, image: torch.Tensor) -> torch.Tensor:
        """What the starts' agreement compares: the whole projected result, [3, n]."""
        return self.result(image)[1].flatten(1)


def restore(prior: torch.nn.Module, observation: torch.Tensor, degradation: Degradation,
            model_config: MultiLatentConfig | None, optimizer_config: OptimizerConfig | None, seed: int,
            device: str | torch.device = "cpu", perceptual: VGG16Features | None = None,
            callback: Callable[[Progress], None] | None = None,
            starts: StartsConfig | None = None) -> RestoreResult:
    """Restore the image whose degradation is `observation`, at the prior's resolution R.

    observation: [3, h, w] (or [1, h, w] for a gray observation) in [0, 1], on the grid of
    `degradation` (degradations.py: Hole, Downsample, Gray, Compose, restoration_chain), whose
    input size must be R x R (else restore_any_size). `model_config` / `optimizer_config` None:
    the task's defaults (`task_defaults`), each on its own. With Gray a colour observation is
    accepted: its BT.601 luma is what is observed (a note says so). Returns a RestoreResult:
    `composite` (also `restored`) the result, consistent with the observation as its
    `projection` report says; `output` the generator's image. `prior` is never modified; same
    seed, same result; `callback` reports progress and cancels by raising, as inpaint's.
    Refusals (one-line ValueErrors) come before any work, as inpaint's.
    """
    return _restore(prior, observation, degradation, model_config, optimizer_config, seed, None,
                    device, perceptual, callback, starts)


def restore_any_size(prior: torch.nn.Module, observation: torch.Tensor, degradation: Degradation,
                     model_config: MultiLatentConfig | None, optimizer_config: OptimizerConfig | None,
                     seed: int,
                     fit: str = "resize", device: str | torch.device = "cpu",
                     perceptual: VGG16Features | None = None,
                     callback: Callable[[Progress], None] | None = None,
                     starts: StartsConfig | None = None) -> RestoreResult:
    """`restore` for an observation of any size and aspect: the result has the degradation's
    input size (x F for super-resolution), met by the prior's square through `fit`
    (imaging.FIT_MODES) on that grid; the projection is against the observation as given."""
    if fit not in imaging.FIT_MODES:
        raise ValueError(f"unknown fit mode {fit!r}; accepted modes: {', '.join(imaging.FIT_MODES)}")
    return _restore(prior, observation, degradation, model_config, optimizer_config, seed, fit,
                    device, perceptual, callback, starts)


def restore_batch(prior: torch.nn.Module, observations: Sequence[torch.Tensor],
                  degradations: Sequence[Degradation], model_config: MultiLatentConfig | None,
                  optimizer_config: OptimizerConfig | None, seeds: Sequence[int],
                  device: str | torch.device = "cpu", perceptual: VGG16Features | None = None,
                  callbacks: Sequence[Callable[[Progress], None] | None] | None = None,
                  batch_size: int | None = None, vectorize: str = "auto") -> list[RestoreResult]:
    """`restore` of each (observation, degradation, seed), optimised together: as
    restore_batch_any_size, for observations whose results are the prior's R x R."""
    return _restore_batch(prior, observations, degradations, model_config, optimizer_config, seeds,
                          None, device, perceptual, callbacks, batch_size, vectorize,
                          memory.INPAINT_IMAGE_COPIES + RESTORE_IMAGE_COPIES)


def restore_batch_any_size(prior: torch.nn.Module, observations: Sequence[torch.Tensor],
                           degradations: Sequence[Degradation],
                           model_config: MultiLatentConfig | None,
                           optimizer_config: OptimizerConfig | None, seeds: Sequence[int],
                           fit: str = "resize", device: str | torch.device = "cpu",
                           perceptual: VGG16Features | None = None,
                           callbacks: Sequence[Callable[[Progress], None] | None] | None = None,
                           batch_size: int | None = None, vectorize: str = "auto",
                           image_copies: float = memory.INPAINT_IMAGE_COPIES + RESTORE_IMAGE_COPIES
                           ) -> list[RestoreResult]:
    """`restore_any_size` of each (observation, degradation, seed), optimised together
    (batched.py): the results, in order, equal restore_any_size's for the same arguments (with
    `vectorize` "vmap", up to float rounding). Where `vectorize` picks vmap, each group of
    members whose degradations observe alike (Degradation.observes_like: the same operator, holes
    of the same size) and whose observations have one size is stepped in vmap passes of its own.
    `callbacks[i]` gets member i's progress; every member is checked as
    restore_any_size checks it before any work. `image_copies`: image-sized copies held per
    image (a caller holding more, as the node, says how many), counted in how many run together."""
    if fit not in imaging.FIT_MODES:
        raise ValueError(f"unknown fit mode {fit!r}; accepted modes: {', '.join(imaging.FIT_MODES)}")
    return _restore_batch(prior, observations, degradations, model_config, optimizer_config, seeds,
                          fit, device, perceptual, callbacks, batch_size, vectorize, image_copies)


def _restore_batch(prior, observations, degradations, model_config, optimizer_config, seeds, fit,
                   device, perceptual, callbacks, batch_size, vectorize,
                   image_copies) -> list[RestoreResult]:
    count = batched.check_batch(observations, degradations, seeds, callbacks, batch_size,
                                vectorize, "degradations")
    model_config, optimizer_config = _batch_configs(prior, degradations, model_config,
                                                    optimizer_config)
    checked = [_check(prior, observation, degradation, model_config, optimizer_config, seed, fit,
                      device, perceptual, StartsConfig())
               for observation, degradation, seed in zip(observations, degradations, seeds)]
    device = checked[0][4]
    targets = [_target(prior, degradation, y, input_size, fit, device)
               for degradation, (y, input_size, _, _, _) in zip(degradations, checked)]
    for index, target in enumerate(targets):
        target.observes_as = next(
            (first for first in targets[:index]
             if first.observes_as is None and first.degradation.observes_like(target.degradation)
             and first.observation.shape == target.observation.shape), None)
    largest = max((input_size for _, input_size, _, _, _ in checked),
                  key=lambda size: size[0] * size[1])
    fills = batched.fill_batch(prior, targets, model_config, optimizer_config,
                               [seed for _, _, _, seed, _ in checked], device, perceptual,
                               callbacks or [None] * count, batch_size, largest, image_copies,
                               vectorize)
    return [_result(fill, target, notes)
            for fill, target, (_, _, notes, _, _) in zip(fills, targets, checked)]


def _batch_configs(prior, degradations, model_config, optimizer_config):
    """The configs every member of a batch runs with: the caller's, or the task's defaults, which
    must then be the same for every member (one batch steps one configuration)."""
    if model_config is not None and optimizer_config is not None:
        return model_config, optimizer_config
    family_of(prior)  # a ValueError for anything but a PGGAN or StyleGAN2 generator
    for degradation in degradations:
        if not isinstance(degradation, Degradation):
            raise ValueError(f"degradations must be Degradations (Hole, Downsample, Gray, "
                             f"Compose; see restoration_chain), got {type(degradation).__name__}")
    defaults = {task_defaults(prior.config, degradation) for degradation in degradations}
    if len(defaults) > 1:
        raise ValueError("these degradations have different task defaults: give model_config and "
                         "optimizer_config, or restore them in separate batches")
    default_model, default_optimizer = defaults.pop()
    return (default_model if model_config is None else model_config,
            default_optimizer if optimizer_config is None else optimizer_config)


def _restore(prior, observation, degradation, model_config, optimizer_config, seed, fit, device,
             perceptual, callback, starts) -> RestoreResult:
    starts = starts or StartsConfig()
    if model_config is None or optimizer_config is None:
        family_of(prior)  # a ValueError for anything but a PGGAN or StyleGAN2 generator
        default_model, default_optimizer = task_defaults(prior.config, degradation)
        model_config = default_model if model_config is None else model_config
        optimizer_config = default_optimizer if optimizer_config is None else optimizer_config
    y, input_size, notes, seed, device = _check(prior, observation, degradation, model_config,
                                                optimizer_config, seed, fit, device, perceptual,
                                                starts)
    optimizer_config = replace(optimizer_config,
                               auto_stop=auto_stop_rule(prior.config, optimizer_config.auto_stop))
    started = time.perf_counter()
    target = _target(prior, degradation, y, input_size, fit, device)
    fills = _fit_target(prior, target, model_config, optimizer_config, seed, device, perceptual,
                        callback, starts, started)
    results = [_result(fill, target, notes) for fill in fills]
    best = results[0]
    best.alternatives = results[1:]
    return best


def _target(prior, degradation: Degradation, y: torch.Tensor, input_size: tuple[int, int],
            fit: str | None, device: torch.device) -> _ObservationTarget:
    """What a run fits for the checked observation y: the prior's square brought to the result's
    size by `fit` (None: it is that size already), then observed by the degradation."""
    resolution = prior.config.resolution
    if fit is None:
        def to_input(image: torch.Tensor) -> torch.Tensor:
            return image
    else:
        # The fit's geometry on the high-resolution grid; the placeholder's values are unused.
        placeholder = torch.zeros(1, 1, 1).expand(3, *input_size)
        _, _, to_input = imaging.fit_to_resolution(placeholder, torch.zeros(input_size), resolution, fit)
    y = y.to(device)
    return _ObservationTarget(degradation, y, to_input, resolution,
                              degradation.observed_mask(tuple(y.shape[2:]), device).float())


def _result(fill: _Fill, target: _ObservationTarget, input_notes: list[str]) -> RestoreResult:
    generated, restored, report = target.result(fill.output)
    fill.notes = [*input_notes, *fill.notes, *report.notes]
    if not report.consistent:
        fill.notes.append(f"the result is not consistent with the input: {report.inconsistent_entries} "
                          f"observed value(s) differ by more than {report.tolerance:.3g} (up to "
                          f"{report.max_error:.3g})")
    base = fill.result(generated.cpu(), restored.cpu())
    return RestoreResult(**{field.name: getattr(base, field.name) for field in fields(base)},
                         projection=report)


def _check(prior, observation, degradation, model_config, optimizer_config, seed, fit, device,
           perceptual, starts) -> tuple[torch.Tensor, tuple[int, int], list[str], int, torch.device]:
    """restore's refusals, before any work; returns y [1, C, h, w] (a colour observation of a
    gray degradation: its luma), the result's size, notes on the input, the seed and device."""
    optimizer_config.validate()
    starts.validate()
    family_of(prior)  # a ValueError for anything but a PGGAN or StyleGAN2 generator
    if not isinstance(degradation, Degradation):
        raise ValueError(f"degradation must be a Degradation (Hole, Downsample, Gray, Compose; see "
                         f"restoration_chain), got {type(degradation).__name__}")
    if (not isinstance(observation, torch.Tensor) or observation.dim() != 3
            or observation.shape[0] not in (1, 3)):
        shape = list(observation.shape) if isinstance(observation, torch.Tensor) else type(observation).__name__
        raise ValueError(f"observation must be [3, h, w] (or [1, h, w] for a gray one) with values "
                         f"in [0, 1], got {shape}")
    _check_holds_values(observation, "observation")
    imaging.check_image_values(observation, "observation")
    height, width = observation.shape[1:]
    input_size = degradation.input_size((height, width))  # a hole mask of another size: refused
    resolution = prior.config.resolution
    if fit is None and tuple(input_size) != (resolution, resolution):
        raise ValueError(f"this {width}x{height} observation restores to {input_size[1]}x"
                         f"{input_size[0]} but the prior makes {resolution}x{resolution}: give "
                         f"an observation of the prior's grid, or call restore_any_size")
    if input_size[0] * input_size[1] > imaging.MAX_IMAGE_PIXELS:
        raise ValueError(f"the result would be {input_size[1]}x{input_size[0]} pixels, over the "
                         f"{imaging.MAX_IMAGE_PIXELS:,} accepted: use a smaller scale or a smaller "
                         "input")
    if fit is not None and min(input_size) < imaging.MIN_IMAGE_SIDE:
        raise ValueError(f"the result would be {input_size[1]}x{input_size[0]} pixels, too small "
                         f"to restore: at least {imaging.MIN_IMAGE_SIDE} a side are needed")
    channels = degradation.observation_shape((1, 3, *input_size))[1]
    notes = []
    y = observation.detach().float().clamp(0, 1)[None]  # overshoot: see imaging's RANGE_TOLERANCE
    if channels == 1 and y.shape[1] == 3:
        if not (torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])):
            notes.append("the input has colour: its BT.601 luma (0.299 R + 0.587 G + 0.114 B) is "
                         "the gray observation; the result keeps that luma and takes its colour "
                         "from the prior")
            y = luma(y)
        else:
            y = y[:, :1].clone()
    elif channels == 3 and y.shape[1] == 1:
        raise ValueError("a one-channel observation needs a degradation with Gray "
                         "(colorization); for a gray image restored in gray, repeat its channel "
                         "three times")
    seed, device = check_run_settings(model_config, optimizer_config, perceptual, seed, device)
    memory.check_inpaint_fits(prior, model_config, optimizer_config, perceptual, device,
                              image_size=tuple(input_size),
                              image_copies=memory.INPAINT_IMAGE_COPIES + RESTORE_IMAGE_COPIES,
                              starts=starts.starts)
    return y, tuple(input_size), notes, seed, device
