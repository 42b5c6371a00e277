"""Auto-stop: decide when a per-image optimisation is done from evidence the run has.

A small, seeded part of the *known* pixels is held out of the loss. The generator never sees them,
so their error behaves like the error in the hole: it falls while the prior is fitting the image
and rises once the fine-tuned generator starts to overfit the rest. Every few steps the run
measures it and stops when the smoothed error has not improved for `patience` checks. It returns
an earlier iterate, not the last step: the check nearest `rewind` of the way to the best check,
because held-out tiles are small and surrounded by known pixels, so the fine-tuned generator keeps
predicting them well after the hole, surrounded by nothing, has started to get worse.

The settings below are PGGAN's; a run whose OptimizerConfig.auto_stop is None uses its prior
family's rule (the family's `auto_stop`: StyleGAN2 rewinds to 0.5).

The held-out pixels are square tiles of side resolution/32 spread over the whole known region
(tiles next to the hole would take away the context the fill is built from). Every setting is a
fraction of the resolution or a number of steps, so the rule means the same for every prior size.
A reconstruction (no hole) is never stopped early: nothing there is unseen and the fit keeps
improving. How the settings were chosen, and what they measured: docs/auto_stop.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..imaging.checks import hole_pixels
from ..validation import check_count, check_non_negative

STOP_MODES = ("auto", "fixed")
# How long an auto-stopped run usually is (docs/auto_stop.md), for decisions made before it starts,
# such as whether compiling pays.
TYPICAL_AUTO_STOP_STEPS = 500


@dataclass(frozen=True)
class AutoStopConfig:
    holdout_fraction: float = 0.05  # of the known pixels, held out of the loss
    tile_fraction: float = 1 / 32  # side of a held-out tile, as a fraction of the resolution
    check_every: int = 25  # steps between measurements of the held-out error
    patience: int = 2  # checks without a new best smoothed error before stopping
    smoothing: float = 0.5  # weight of the previous value in the error's moving average
    min_holdout_pixels: int = 8  # fewer known pixels than this to hold out: run the fixed steps
    # The image returned is that of the check nearest this fraction of the best check's step
    # (1: the best check's own image); see the module docstring.
    rewind: float = 0.75
    # The most steps an auto-stopped run takes (None: up to its `steps`): at the first check from
    # here on it ends as if the error had stopped improving, and returns the rule's choice among
    # the checks so far. Unlike fewer `steps`, it leaves the learning-rate schedule as it is.
    max_steps: int | None = None

    def validate(self) -> None:
        for name in ("holdout_fraction", "tile_fraction"):
            label = f"auto-stop {name.replace('_', ' ')}"
            if not 0 < check_non_negative(getattr(self, name), label) < 1:
                raise ValueError(f"{label} must be between 0 and 1 (exclusive), got {getattr(self, name)}")
        for name in ("check_every", "patience", "min_holdout_pixels"):
            check_count(getattr(self, name), f"auto-stop {name.replace('_', ' ')}", 1)
        if not check_non_negative(self.smoothing, "auto-stop smoothing") < 1:
            raise ValueError(f"auto-stop smoothing must be in [0, 1), got {self.smoothing}")
        if not 0 < check_non_negative(self.rewind, "auto-stop rewind") <= 1:
            raise ValueError(f"auto-stop rewind must be in (0, 1], got {self.rewind}")
        if self.max_steps is not None:
            check_count(self.max_steps, "auto-stop max steps", 1)

    @property
    def last_possible_check(self) -> int | None:
        """The check at which max_steps ends a run (the first at or after it); None: no cap."""
        if self.max_steps is None:
            return None
        return -(-self.max_steps // self.check_every) * self.check_every


def holdout_mask(hole: torch.Tensor, seed: int, config: AutoStopConfig) -> torch.Tensor:
    """[R, R] float mask, 1 = a known pixel held out of the loss. hole: [R, R], 1 = hole.

    Deterministic for a seed; all zeros when too few known pixels could be held out."""
    resolution = hole.shape[-1]
    tile = max(1, round(resolution * config.tile_fraction))
    hole = hole_pixels(hole).float().cpu()
    known_pixels = int((hole == 0).sum())
    # A tile is a candidate only if all of its pixels are known.
    hole_tiles = F.max_pool2d(hole[None, None], tile, tile, ceil_mode=True)[0, 0] > 0  # [T, T]
    candidates = ~hole_tiles
    wanted = round(config.holdout_fraction * known_pixels / tile ** 2)
    positions = candidates.flatten().nonzero()[:, 0]
    # Never more than half the candidates: most known pixels must stay in the fit.
    count = min(wanted, len(positions) // 2)
    mask = torch.zeros(resolution, resolution)
    if count * tile ** 2 < config.min_holdout_pixels:
        return mask
    noise = torch.Generator().manual_seed(seed)
    chosen = positions[torch.randperm(len(positions), generator=noise)[:count]]
    tiles_per_row = hole_tiles.shape[1]
    for index in chosen.tolist():
        top, left = (index // tiles_per_row) * tile, (index % tiles_per_row) * tile
        mask[top:top + tile, left:left + tile] = 1
    return mask * (1 - hole)


@dataclass(frozen=True)
class StopState:
    """What the stop rule has seen so far, for progress reports: reading it changes nothing in
    the run."""
    check_every: int
    patience: int
    last_check: int | None  # the step of the latest check; None before the first
    best_step: int | None  # the check with the lowest smoothed held-out error so far
    checks_since_best: int  # checks since then that did not improve on it
    last_possible_check: int | None = None  # where the rule's step cap ends the run; None: no cap

    @property
    def improving(self) -> bool:
        """The latest check was the best so far (or none was made yet)."""
        return self.checks_since_best == 0

    @property
    def stops_at(self) -> int:
        """The step the run ends at if no check from now on improves on the best: the check at
        which `patience` checks in a row will have failed to. (A run ends at a check, before that
        step's update, so this is also the number of steps it will have run.)"""
        if self.last_check is None:  # the check at step 0 will be the first best
            patient = self.patience * self.check_every
        else:
            patient = self.last_check + (self.patience - self.checks_since_best) * self.check_every
        return patient if self.last_possible_check is None else min(patient, self.last_possible_check)


def expected_steps(state: StopState | None, max_steps: int,
                   typical: int = TYPICAL_AUTO_STOP_STEPS) -> int:
    """How many steps a run is expected to take, revised as the held-out error evolves: at least
    the step the stop rule can end it at (StopState.stops_at), and while that is sooner than
    `typical` (how long such runs usually take) that long; never more than `max_steps`. `state`
    None (no stop rule: a fixed run, or nothing to watch): `max_steps`.

    An estimate, not a promise: a run that keeps improving past `typical` moves it out by one
    check at each improvement, and one whose error stops improving early ends before it."""
    if state is None:
        return max_steps
    return max(1, min(max_steps, max(state.stops_at, typical)))


class StopRule:
    """Tracks the held-out error at each check; says when to stop, which check was best and which
    check's image to return (the one nearest `rewind` x the best check's step)."""

    def __init__(self, config: AutoStopConfig) -> None:
        self.config = config
        self.last_check: int | None = None
        self.smoothed: float | None = None
        self.best_smoothed = math.inf
        self.best_step: int | None = None
        self.checks_since_best = 0
        # Finite checks that may still be returned, with their images when given. The target
        # rewind x best_step only grows, so a check below the last one under it never returns.
        self.candidates: dict[int, torch.Tensor | None] = {}

    def is_check(self, step: int) -> bool:
        """step: optimisation steps completed before the forward pass being measured."""
        return step % self.config.check_every == 0

    def record(self, step: int, error: float, image: torch.Tensor | None = None) -> bool:
        """Record the held-out error of the image at `step` (and the image, to return it later);
        True when it is the new best."""
        self.last_check = step
        if not math.isfinite(error):  # a diverged image is never the best nor returned
            self.checks_since_best += 1
            return False
        self.candidates[step] = image
        self.smoothed = error if self.smoothed is None else (
            self.config.smoothing * self.smoothed + (1 - self.config.smoothing) * error)
        improved = self.smoothed < self.best_smoothed
        if improved:
            self.best_smoothed, self.best_step, self.checks_since_best = self.smoothed, step, 0
            target = self.config.rewind * step
            floor = max((s for s in self.candidates if s <= target), default=None)
            self.candidates = {s: im for s, im in self.candidates.items() if floor is None or s >= floor}
        else:
            self.checks_since_best += 1
        return improved

    def state(self) -> StopState:
        """What the rule has seen so far (for progress reports)."""
        return StopState(self.config.check_every, self.config.patience, self.last_check,
                         self.best_step, self.checks_since_best, self.config.last_possible_check)

    @property
    def should_stop(self) -> bool:
        return self.checks_since_best >= self.config.patience or self.reached_max_steps

    @property
    def reached_max_steps(self) -> bool:
        """The step cap (AutoStopConfig.max_steps) ends the run at this check."""
        cap = self.config.last_possible_check
        return cap is not None and self.last_check is not None and self.last_check >= cap

    @property
    def returned_step(self) -> int | None:
        """The check whose image the run returns: the nearest to rewind x best_step (the later of
        two equally near), never after the best check."""
        if self.best_step is None:
            return None
        target = self.config.rewind * self.best_step
        steps = [s for s in self.candidates if s <= self.best_step]
        return min(steps, key=lambda s: (abs(s - target), -s))

    @property
    def returned_image(self) -> torch.Tensor | None:
        step = self.returned_step
        return None if step is None else self.candidates[step]
