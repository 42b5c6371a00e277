"""The per-image optimisation: latent codes, channel/feature-map weights and generator parameters
fitted to the known pixels (METHOD.md eq. 8), with auto-stop, progress and cancellation."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from .. import imaging
from ..families import auto_stop_rule, family_of
from ..sampling import sample_images
from ..validation import check_count, check_seed, resolve_device
from . import compilation, compiler_cache, memory, precision
from .auto_stop import TYPICAL_AUTO_STOP_STEPS, StopRule, holdout_mask
from .config import MAX_LATENT_CODES, OptimizerConfig, g1_freeze_step
from .cudnn_settings import repeatable_convolutions
from .losses import LossWeights, MaskedReconstructionLoss
from .multi_latent import MultiLatentConfig, MultiLatentModel
from .perceptual import VGG16Features
from .results import InpaintResult, Progress, StartRecord, report_step
from .starts import StartsConfig, agreement, ranking, start_seed

FUSED_ADAM_DEVICES = ("cpu", "cuda")


def _build_optimizer(models: MultiLatentModel | list[MultiLatentModel], config: OptimizerConfig,
                     device: torch.device) -> torch.optim.Adam:
    """Adam with one group per learning rate; given several models (a batch, batched.py) each
    group holds every model's parameters of that kind. Adam's update is elementwise, so this
    equals one Adam per model."""
    models = models if isinstance(models, list) else [models]
    groups = [([p for m in models for p in m.latent_parameters()], config.lr_latent),
              ([m.alpha for m in models], config.lr_alpha),
              ([m.beta for m in models], config.lr_beta),
              ([p for m in models for p in m.generator_parameters()], config.lr_generator)]
    param_groups = [{"params": params, "lr": lr} for params, lr in groups
                    if lr > 0 and params and all(p.requires_grad for p in params)]
    if not param_groups:
        raise ValueError("nothing to optimise: every parameter group is frozen or has learning rate 0")
    # One fused kernel updates all ~23 M parameters of a 256x256 generator in a single pass
    # instead of a dozen foreach passes (the unfused update took ~8 % of a
    # paper-configuration CPU step).
    return torch.optim.Adam(param_groups, betas=(0.9, 0.999),
                            fused=device.type in FUSED_ADAM_DEVICES)


def _schedule(optimizer: torch.optim.Optimizer, config: OptimizerConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / config.steps)))
    return None


def inpaint(prior: torch.nn.Module, image: torch.Tensor, hole_mask: torch.Tensor | None,
            model_config: MultiLatentConfig, optimizer_config: OptimizerConfig, seed: int,
            device: str | torch.device = "cpu", perceptual: VGG16Features | None = None,
            callback: Callable[[Progress], None] | None = None,
            starts: StartsConfig | None = None) -> InpaintResult:
    """Fit the multi-latent generator to the known pixels of `image` and fill the hole.

    prior: a PGGANGenerator or StyleGAN2Generator (the method per family: ganprior_core/families/).
    image: [3, R, R] in [0, 1] at the prior's resolution R; hole_mask: [R, R] with 1 = hole,
    or None to reconstruct the whole image. `prior` is never modified. `callback` is called after
    every step; raising from it cancels the run (the exception propagates). For the run's
    duration cuDNN's process-wide `deterministic` and `benchmark` flags are set to True and False
    (same seed, same result on a GPU); the caller's values come back when it returns or raises,
    or, where runs overlap, when the last of them does (cudnn_settings.py).

    Before any work, a ValueError refuses what would be optimised into nonsense: images that are
    not finite floats in [0, 1] (see imaging.check_image_values) or hold no values (the meta
    device), masks outside [0, 1], seeds outside 0 ... 2**64 - 1, devices this machine lacks,
    non-finite settings, and a loss that is 0.
    """
    fills = _fill(prior, image, hole_mask, model_config, optimizer_config, seed, device, perceptual,
                  callback, starts or StartsConfig())
    # Composited on the run's device, where the image and the hole already are.
    return _best_with_alternatives(
        [fill.result(fill.output.cpu(),
                     imaging.composite(fill.target.image, fill.output, fill.target.hole).cpu())
         for fill in fills])


def _best_with_alternatives(results: list[InpaintResult]) -> InpaintResult:
    best = results[0]
    best.alternatives = results[1:]
    return best


@dataclass
class _HoleTarget:
    """What an inpainting run fits: the known pixels of `image` (the hole path, as it always was)."""
    image: torch.Tensor  # [3, R, R] in [0, 1], on the device
    hole: torch.Tensor  # [R, R], 1 = hole, on the device

    @property
    def unobserved(self) -> torch.Tensor:
        """[h, w] on the fitted grid, 1 = not observed: where auto-stop may not hold out."""
        return self.hole

    @property
    def has_unseen(self) -> bool:
        """Whether anything is not observed (else a reconstruction: auto-stop has nothing to watch)."""
        return bool(self.hole.any())

    def observes_nothing(self) -> bool:
        return not (1 - self.hole).any()

    @property
    def observer(self) -> None:
        """Whose observe function the loss uses (restore.py's targets): inpainting sees the
        image itself, the same way for every target."""
        return None

    def holdout(self, seed: int, config) -> torch.Tensor:
        return holdout_mask(self.hole, seed, config)

    def loss(self, fit_mask: torch.Tensor, weights: LossWeights, perceptual: VGG16Features | None,
             notes: list[str]) -> MaskedReconstructionLoss:
        return MaskedReconstructionLoss(imaging.to_signed_range(self.image)[None], fit_mask, weights,
                                        perceptual)

    def held_out_error(self, output: torch.Tensor, holdout: torch.Tensor) -> float:
        """MSE on the held-out pixels of the image as the user gets it (clamped, [0, 1])."""
        squared = (imaging.to_unit_range(output.detach()[0].float()) - self.image) ** 2 * holdout[0]
        return float(squared.sum() / (holdout.sum() * 3))

    def compared(self, image: torch.Tensor) -> torch.Tensor:
        """What the starts' agreement compares of a generator image [3, R, R] in [0, 1]: the hole."""
        return image[:, imaging.hole_pixels(self.hole)]


@dataclass
class _Run:
    """One image's optimisation, set up once: what the loop steps and the result reads."""
    config: OptimizerConfig  # with the family's auto-stop rule where the caller chose none
    device: torch.device
    use_bf16: bool
    target: "_HoleTarget"  # what the run fits (restore.py's targets too)
    model: MultiLatentModel
    adam: torch.optim.Adam
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    image_and_loss: Callable[[], tuple[torch.Tensor, torch.Tensor]]  # see compilation.py
    loss: MaskedReconstructionLoss  # what image_and_loss computes after the forward pass
    stop_rule: StopRule | None  # None: every step runs
    holdout: torch.Tensor | None  # [1, 1, R, R]: the pixels auto-stop watches
    freeze_at: int | None  # steps after which the codes and G1 are frozen; None: never
    notes: list[str]
    losses: torch.Tensor  # one per step, kept on the device: no host sync inside the loop
    seed: int
    next_step: int = 0  # the loop's next step: a paused start resumes here
    steps_run: int = 0  # updates made
    last_output: torch.Tensor | None = None  # the image of the latest forward pass [1, 3, R, R]
    ended: bool = False  # stopped by the rule or at the step limit

    def freeze_g1(self) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            self.model.freeze_g1()

    def held_out_error(self, output: torch.Tensor) -> float:
        """The held-out entries' error of the image as the user gets it (the target's)."""
        return self.target.held_out_error(output, self.holdout)

    def final_output(self) -> torch.Tensor:
        """The generator's image after the last update, [1, 3, R, R] in [-1, 1]."""
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                             enabled=self.use_bf16):
            return self.model()


@dataclass
class _Fill:
    """A finished run before compositing, which its caller does once, at the size it returns."""
    target: _HoleTarget  # what the run fitted (inpaint: its image and hole, on its device)
    output: torch.Tensor  # the generator's image [3, R, R] in [0, 1], on the same device
    started: float  # time.perf_counter() when the run began
    notes: list[str]
    stop_reason: str
    loss_history: list[float] = field(default_factory=list)
    steps_run: int = 0
    best_step: int | None = None
    held_out_best_step: int | None = None
    g1_frozen_at: int | None = None
    seed: int | None = None
    agreement: float | None = None  # a start's: see starts.agreement
    starts: list[StartRecord] = field(default_factory=list)  # a multi-start run's, best first
    steps_all_starts: int | None = None
    ended: float | None = None  # a batch member's end (perf_counter); None: when its result is made

    def result(self, output: torch.Tensor, composite: torch.Tensor) -> InpaintResult:
        ended = time.perf_counter() if self.ended is None else self.ended
        return InpaintResult(output=output, composite=composite, loss_history=self.loss_history,
                             seconds=ended - self.started, notes=self.notes,
                             steps_run=self.steps_run, best_step=self.best_step,
                             stop_reason=self.stop_reason,
                             held_out_best_step=self.held_out_best_step,
                             g1_frozen_at=self.g1_frozen_at, seed=self.seed,
                             agreement=self.agreement, starts=self.starts,
                             steps_all_starts=self.steps_all_starts)


def _fill(prior: torch.nn.Module, image: torch.Tensor, hole_mask: torch.Tensor | None,
          model_config: MultiLatentConfig, optimizer_config: OptimizerConfig, seed: int,
          device: str | torch.device, perceptual: VGG16Features | None,
          callback: Callable[[Progress], None] | None, starts: StartsConfig) -> list[_Fill]:
    """inpaint's run at the prior's resolution: checked, set up, stepped and finished; one fill
    per candidate, the best first."""
    seed, device = _check_inputs(prior, image, hole_mask, model_config, optimizer_config, seed,
                                 device, perceptual, starts)
    optimizer_config = replace(optimizer_config,
                               auto_stop=auto_stop_rule(prior.config, optimizer_config.auto_stop))
    started = time.perf_counter()
    return _fit_target(prior, _hole_target(prior, image, hole_mask, device), model_config,
                       optimizer_config, seed, device, perceptual, callback, starts, started)


def _hole_target(prior: torch.nn.Module, image: torch.Tensor, hole_mask: torch.Tensor | None,
                 device: torch.device) -> _HoleTarget:
    """A checked image and hole (None: reconstruct everything) as inpainting fits them."""
    resolution = prior.config.resolution
    image = image.detach().to(device, torch.float32).clamp(0, 1)  # overshoot: see imaging doc
    hole = (torch.zeros(resolution, resolution, device=device) if hole_mask is None
            else imaging.hole_pixels(hole_mask.detach().to(device)).float())
    return _HoleTarget(image, hole)


def _fit_target(prior: torch.nn.Module, target: _HoleTarget, model_config: MultiLatentConfig,
                optimizer_config: OptimizerConfig, seed: int, device: torch.device,
                perceptual: VGG16Features | None, callback: Callable[[Progress], None] | None,
                starts: StartsConfig, started: float) -> list[_Fill]:
    """A checked run of any target (inpaint's hole, restore.py's degradations), stepped and
    finished: one fill per candidate, the best first. optimizer_config has its auto-stop rule."""
    with repeatable_convolutions():
        if target.observes_nothing():
            # Nothing to fit: an optimisation would only return its starting blend of the codes.
            return [_unconditional_sample(prior, target, start_seed(seed, index), started, device)
                    for index in range(starts.candidates)]
        if starts.starts == 1:
            run = _start(prior, target, model_config, optimizer_config, seed, device, perceptual)
            _run_steps(run, callback)
            fill = _finish(run, started, callback)
            fill.seed = seed
            return [fill]
        return _fill_from_starts(prior, target, model_config, optimizer_config, seed, device,
                                 perceptual, callback, starts, started)


def _unconditional_sample(prior: torch.nn.Module, target: _HoleTarget, seed: int,
                          started: float, device: torch.device) -> _Fill:
    sample = sample_images(prior, 1, seed, next(prior.parameters()).device)[0]
    return _Fill(target, sample.to(device), started,
                 notes=["the mask covers the whole image: nothing is known, so the "
                        "result is an unconditional sample from the prior"],
                 stop_reason="nothing known: an unconditional sample", seed=seed)


def _fill_from_starts(prior: torch.nn.Module, target: _HoleTarget,
                      model_config: MultiLatentConfig, config: OptimizerConfig, seed: int,
                      device: torch.device, perceptual: VGG16Features | None,
                      callback: Callable[[Progress], None] | None, starts: StartsConfig,
                      started: float) -> list[_Fill]:
    """Every start to `starts.choose_at`, ranked by agreement; the best `candidates` continued to
    their end (starts.py). The starts run side by side in one vectorised pass where
    `starts.vectorize` asks for it and they fit in memory together (batched.py), else one after
    another: the same fills either way (vectorised: up to float rounding)."""
    if starts.runs_together(device):
        from . import batched  # batched.py builds on this module
        fills = batched.fill_from_starts_together(prior, target, model_config, config, seed,
                                                  device, perceptual, callback, starts, started)
        if fills is not None:
            return fills
    count, typical = starts.starts, TYPICAL_AUTO_STOP_STEPS
    pause = min(starts.choose_at + 1, config.steps)  # steps 0 ... choose_at: its image is compared
    per_candidate_later = max(0, min(typical, config.steps) - pause)
    runs: list[_Run] = []
    for index in range(count):
        run = _start(prior, target, model_config, config, start_seed(seed, index), device, perceptual)
        later = (count - index - 1) * pause + starts.candidates * per_candidate_later
        _run_steps(run, _placed(callback, index, count, sum(r.steps_run for r in runs), pause, later),
                   until=pause)
        runs.append(run)
    choice = _choose_starts(target, runs, starts)
    for dropped in choice.order[starts.candidates:]:
        runs[dropped] = None  # its copy of the prior and optimiser state are freed now
    fills = []
    for rank, index in enumerate(choice.order[:starts.candidates]):
        run = runs[index]
        others = sum(choice.steps_taken) - choice.steps_taken[index]
        later = (starts.candidates - rank - 1) * per_candidate_later
        placed = _placed(callback, index, count, others, None, later)
        _run_steps(run, placed)
        choice.steps_taken[index] = run.steps_run
        fills.append(choice.candidate(index, _finish(run, started, placed)))
        runs[index] = None
    return _ordered_candidates(target, fills, starts, choice)


@dataclass
class _StartsChoice:
    """The starts ranked at the comparison: agreement scores and order (best first), the record
    every candidate carries, and the steps each start has taken (updated as candidates go on)."""
    scores: list[float | None]
    order: list[int]
    records: list[StartRecord]
    steps_taken: list[int]
    seeds: list[int]

    def candidate(self, index: int, fill: _Fill) -> _Fill:
        """Start `index`'s finished fill, told its seed, its agreement and every start's record."""
        fill.seed, fill.agreement, fill.starts = self.seeds[index], self.scores[index], self.records
        return fill


def _choose_starts(target: _HoleTarget, runs: list[_Run], starts: StartsConfig) -> _StartsChoice:
    """Rank the starts, each paused at the comparison (or ended before it), by agreement."""
    scores = agreement([target.compared(_compared_image(run)) for run in runs])
    losses = [float(run.losses[run.steps_run - 1]) if run.steps_run else math.inf for run in runs]
    order = ranking(scores, losses)
    records = [StartRecord(runs[index].seed, scores[index], index in order[:starts.candidates])
               for index in order]
    return _StartsChoice(scores, order, records, [run.steps_run for run in runs],
                         [run.seed for run in runs])


def _ordered_candidates(target: _HoleTarget, fills: list[_Fill], starts: StartsConfig,
                        choice: _StartsChoice) -> list[_Fill]:
    """The finished candidates, best first, each with the whole run's steps and its note."""
    if len(fills) >= 3:
        # Finished fills rank better than they did at the comparison (docs/trustworthy_fill.md):
        # three or more candidates are ordered by how well their returned fills agree.
        final = agreement([target.compared(fill.output) for fill in fills])
        final_losses = [fill.loss_history[-1] if fill.loss_history else math.inf for fill in fills]
        order = ranking(final, final_losses)
        fills = [fills[i] for i in order]
        for fill, index in zip(fills, order):
            fill.agreement = final[index]
    for rank, fill in enumerate(fills):
        fill.steps_all_starts = sum(choice.steps_taken)
        fill.notes.append(_starts_note(starts, choice.records, rank, len(fills) >= 3))
    return fills


def _compared_image(run: _Run) -> torch.Tensor:
    """A start's image when the starts are compared, [3, R, R] in [0, 1]: where auto-stop ended it
    before then, the image it returns; else the image after `choose_at` updates."""
    if run.ended and run.stop_rule is not None and run.stop_rule.returned_image is not None:
        return imaging.to_unit_range(run.stop_rule.returned_image)
    return imaging.to_unit_range(run.last_output.detach()[0].float())


def _placed(callback: Callable[[Progress], None] | None, start: int, starts: int, steps_before: int,
            pauses_at: int | None, steps_after: int) -> Callable[[Progress], None] | None:
    """`callback`, told where each report of start `start` sits in the whole run."""
    if callback is None:
        return None
    where = dict(start=start, starts=starts, steps_before=steps_before, pauses_at=pauses_at,
                 steps_after=steps_after)
    return lambda progress: callback(replace(progress, **where))


def _starts_note(starts: StartsConfig, records: list[StartRecord], rank: int,
                 ranked_at_end: bool) -> str:
    scores = ", ".join(f"seed {record.seed}: {'–' if record.agreement is None else f'{record.agreement:.2f} dB'}"
                       for record in records)
    which = "the best" if rank == 0 else f"candidate {rank + 1}"
    end = (f"; the {starts.candidates} candidates then ordered by how well their returned fills "
           f"agree" if ranked_at_end else "")
    return (f"{which} of {starts.starts} starts by how well their fills agreed at step "
            f"{starts.choose_at} (mean PSNR against the others; {scores}){end}")


def _start(prior: torch.nn.Module, target: _HoleTarget,
           model_config: MultiLatentConfig, config: OptimizerConfig, seed: int,
           device: torch.device, perceptual: VGG16Features | None) -> _Run:
    """The run's private model, loss, optimiser, schedule, stop rule and compiled step."""
    notes: list[str] = []
    known = (1 - target.unobserved)[None, None]
    config, perceptual = _perceptual_term(config, perceptual, device, notes)
    fit_mask, stop_rule, holdout = _auto_stop_plan(target, known, seed, config, device, notes)
    model = MultiLatentModel(prior, model_config, seed, device)
    model.train()
    # oneDNN (CPU) and cuDNN run bf16 convolutions fastest on NHWC activations; the format
    # follows the weights, so converting the networks' weights is enough.
    model.to(memory_format=torch.channels_last)
    use_bf16 = precision.uses_bf16(config.precision, device)
    if (choice := precision.describe_choice(config.precision, device)) is not None:
        notes.append(choice)
    weights = LossWeights(mse=config.mse_weight, perceptual=config.perceptual_weight)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        loss_fn = target.loss(fit_mask, weights, perceptual, notes)
    # Adam imports torch's compiler stack, which fails on an unusable cache folder.
    compiler_cache.prepare_cache_dir(notes)
    adam = _build_optimizer(model, config, device)
    scheduler = _schedule(adam, config)
    freeze_at = _g1_freeze_step(model, config)
    # The forward pass and loss, torch.compiled once per process where the run is long enough
    # (eager, with a note, where compiling cannot work): see compilation.py.
    expected_steps = config.steps if stop_rule is None else min(config.steps, TYPICAL_AUTO_STOP_STEPS)
    image_and_loss = compilation.image_and_loss(model, loss_fn, device, use_bf16, config.compile,
                                                 expected_steps, notes, freeze_at)
    return _Run(config, device, use_bf16, target, model, adam, scheduler, image_and_loss, loss_fn,
                stop_rule, holdout, freeze_at, notes, losses=torch.empty(config.steps, device=device),
                seed=seed)


def _check_inputs(prior: torch.nn.Module, image: torch.Tensor, hole_mask: torch.Tensor | None,
                  model_config: MultiLatentConfig, optimizer_config: OptimizerConfig, seed: int,
                  device: str | torch.device, perceptual: VGG16Features | None,
                  starts: StartsConfig) -> tuple[int, torch.device]:
    """inpaint's refusals, before any work; returns the checked seed and device."""
    optimizer_config.validate()
    starts.validate()
    family_of(prior)  # a ValueError for anything but a PGGAN or StyleGAN2 generator
    resolution = prior.config.resolution
    if not isinstance(image, torch.Tensor) or image.shape != (3, resolution, resolution):
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be [3, {resolution}, {resolution}] for this prior, "
                         f"got {shape}; resize or pad it first (imaging.fit_to_resolution), "
                         f"or call inpaint_any_size")
    _check_holds_values(image, "image")
    imaging.check_image_values(image, "image")
    if hole_mask is not None:
        if not isinstance(hole_mask, torch.Tensor) or hole_mask.shape != (resolution, resolution):
            shape = list(hole_mask.shape) if isinstance(hole_mask, torch.Tensor) else type(hole_mask).__name__
            raise ValueError(f"hole mask must be [{resolution}, {resolution}], got {shape}")
        _check_holds_values(hole_mask, "hole mask")
        imaging.check_mask_values(hole_mask, "hole mask")
    seed, device = check_run_settings(model_config, optimizer_config, perceptual, seed, device)
    # Before the prior is copied: refused with what would fit rather than killed (memory.py).
    memory.check_inpaint_fits(prior, model_config, optimizer_config, perceptual, device,
                              starts=starts.starts)
    return seed, device


def check_run_settings(model_config: MultiLatentConfig, optimizer_config: OptimizerConfig,
                       perceptual: VGG16Features | None, seed: int, device: str | torch.device
                       ) -> tuple[int, torch.device]:
    """The refusals every run shares (inpaint's, restore's): the seed, the device, the number of
    codes and a loss that is not 0; returns the checked seed and device."""
    seed = check_seed(seed)
    device = resolve_device(device)
    check_count(model_config.num_codes, "number of latent codes", 1, MAX_LATENT_CODES)
    if optimizer_config.mse_weight == 0 and (perceptual is None or optimizer_config.perceptual_weight == 0):
        raise ValueError("mse_weight is 0 and there is no perceptual term (no VGG16 weights given, "
                         "or perceptual_weight 0): the loss would be 0 and nothing would be fitted")
    return seed, device


def _check_holds_values(tensor: torch.Tensor, name: str) -> None:
    """Refuse a tensor whose values cannot be read here (the meta device, an unknown device):
    imaging's shared check, which every entry point uses."""
    imaging.check_holds_values(tensor, name)


def _perceptual_term(config: OptimizerConfig, perceptual: VGG16Features | None, device: torch.device,
                     notes: list[str]) -> tuple[OptimizerConfig, VGG16Features | None]:
    """The perceptual term as it will run: off, with a note, when no VGG16 weights were given;
    else a private copy of the network on the run's device."""
    if config.perceptual_weight > 0 and perceptual is None:
        notes.append(f"perceptual weight {config.perceptual_weight} ignored: no VGG16 "
                     f"weights given, so only the MSE term is used")
        return replace(config, perceptual_weight=0.0), None
    if perceptual is not None and config.perceptual_weight > 0:
        # A private copy: the caller's (e.g. ComfyUI's cached) model keeps its device and layout.
        perceptual = copy.deepcopy(perceptual).to(device, memory_format=torch.channels_last)
    return config, perceptual


def _auto_stop_plan(target: _HoleTarget, known: torch.Tensor, seed: int, config: OptimizerConfig,
                    device: torch.device, notes: list[str]
                    ) -> tuple[torch.Tensor, StopRule | None, torch.Tensor | None]:
    """(entries the loss fits, the stop rule or None, the held-out entries or None), on the
    target's grid."""
    if config.stop != "auto":
        return known, None, None
    if not target.has_unseen:
        # Auto-stop ends a run when unseen pixels stop getting better, which is what a hole needs.
        # A reconstruction has no unseen pixels and keeps improving with every step, so stopping
        # early only costs quality (docs/auto_stop.md).
        notes.append(f"auto-stop is for holes: a reconstruction runs all {config.steps} "
                     f"steps (set fewer steps for a quicker, rougher result)")
        return known, None, None
    holdout = target.holdout(seed, config.auto_stop).to(device)[None, None]
    if not holdout.any():
        notes.append(f"auto-stop off: too few known pixels to hold some out, so all "
                     f"{config.steps} steps ran")
        return known, None, None
    return known * (1 - holdout), StopRule(config.auto_stop), holdout


def _g1_freeze_step(model: MultiLatentModel, config: OptimizerConfig) -> int | None:
    """config.g1_freeze_step, and None where nothing would be left to fit after it."""
    freeze_at = g1_freeze_step(model.config, config)
    return None if freeze_at is None or not model.trains_after_freezing_g1() else freeze_at


def _run_steps(run: _Run, callback: Callable[[Progress], None] | None,
               until: int | None = None) -> None:
    """The optimisation loop, from where the run is to its end or, with `until`, to just before
    that step (a paused start resumes from there: the same steps as running straight through)."""
    steps = run.config.steps
    end = steps if until is None else min(steps, until)
    for step in range(run.next_step, end):
        loss = _forward(run, step)
        if loss is None:
            return
        run.adam.zero_grad(set_to_none=True)
        loss.backward()
        run.adam.step()
        if run.scheduler is not None:
            run.scheduler.step()
        _updated(run, step, loss, callback)
    run.ended = run.next_step >= steps


def _forward(run: _Run, step: int) -> torch.Tensor | None:
    """Step `step`'s forward pass (freezing G1 where the late phase begins) and auto-stop's check
    of its image: the loss to update with, or None where the rule ended the run here."""
    if step == run.freeze_at:
        run.freeze_g1()
    output, loss = run.image_and_loss()
    run.last_output = output
    stop_rule = run.stop_rule
    # The image of this forward pass is the one after `step` updates: a check costs no
    # extra forward pass, only one host sync every check_every steps.
    if stop_rule is not None and stop_rule.is_check(step):
        stop_rule.record(step, run.held_out_error(output), output.detach()[0].float().clone())
        if stop_rule.should_stop:
            run.ended = True
            return None
    return loss


def _updated(run: _Run, step: int, loss: torch.Tensor,
             callback: Callable[[Progress], None] | None) -> None:
    """Step `step`'s update is made: record its loss and report it."""
    run.losses[step] = loss.detach()
    run.steps_run = run.next_step = step + 1
    report_step(callback, run.steps_run, run.config.steps, run.config.preview_every, loss,
                run.last_output, _preview, run.stop_rule)


def _preview(output: torch.Tensor) -> torch.Tensor:
    """A forward pass's image [1, 3, R, R] in [-1, 1] as a person sees it: [3, R, R] in [0, 1]."""
    return imaging.to_unit_range(output[0].float())


def _finish(run: _Run, started: float, callback: Callable[[Progress], None] | None) -> _Fill:
    """The image the run returns (auto-stop's choice, or the last update's) and why it ended."""
    config, stop_rule, steps = run.config, run.stop_rule, run.config.steps
    steps_run, last_output = run.steps_run, run.last_output
    stopped_early = stop_rule is not None and stop_rule.should_stop
    if stopped_early and stop_rule.checks_since_best < config.auto_stop.patience:
        stop_reason = (f"stopped at auto-stop's {config.auto_stop.max_steps}-step limit, before the "
                       f"held-out error had stopped improving")
    elif stopped_early:
        stop_reason = (f"stopped early: the held-out error had not improved for "
                       f"{config.auto_stop.patience} checks")
    else:
        final = run.final_output()
        stop_reason = (f"reached the {steps}-step maximum" if stop_rule is not None
                       else f"fixed {steps} steps" if config.stop == "fixed"
                       else f"all {steps} steps: auto-stop had nothing to watch")
        returned = final[0].float()
        if stop_rule is not None:
            stop_rule.record(steps_run, run.held_out_error(final), returned)
    if stop_rule is not None:
        returned = _auto_stop_image(stop_rule, last_output, steps_run, run.notes)
    output = imaging.to_unit_range(returned)
    if stopped_early and callback is not None:
        # The bar completes: the run is over, though it took fewer than `total` steps.
        callback(Progress(steps, steps, float(run.losses[steps_run - 1]) if steps_run else None,
                          output, stopped_early=True, stop=stop_rule.state()))
    frozen = run.freeze_at is not None and steps_run > run.freeze_at
    return _Fill(run.target, output, started, run.notes, stop_reason,
                 loss_history=run.losses[:steps_run].cpu().tolist(), steps_run=steps_run,
                 best_step=None if stop_rule is None else stop_rule.returned_step,
                 held_out_best_step=None if stop_rule is None else stop_rule.best_step,
                 g1_frozen_at=run.freeze_at if frozen else None)


def _finish_member(run: _Run, started: float, callback: Callable[[Progress], None] | None) -> _Fill:
    """_finish for a member of a batch (batched.py, vectorized.py): its seed and its own end kept,
    since its result is made when the whole batch is done."""
    fill = _finish(run, started, callback)
    fill.seed, fill.ended = run.seed, time.perf_counter()
    return fill


def _auto_stop_image(stop_rule: StopRule, last_output: torch.Tensor, steps_run: int,
                     notes: list[str]) -> torch.Tensor:
    """The image auto-stop returns, with a note where that is no fit at all."""
    returned = stop_rule.returned_image
    if returned is None:  # every check was non-finite: the run diverged
        notes.append("auto-stop: every held-out check was NaN or infinite (the run "
                     "diverged); the last image is returned; lower the learning rates")
        return last_output.detach()[0].float()
    if stop_rule.returned_step == 0 and steps_run > 0:
        # Silent no-progress otherwise: the result would be the untouched starting image.
        notes.append(f"auto-stop returned the starting image (step 0): in {steps_run} steps the "
                     "held-out error never improved on it, so nothing was fitted; try --stop "
                     "fixed, lower learning rates (e.g. --lr-generator) or a mask with more known "
                     "pixels")
    return returned


def inpaint_any_size(prior: torch.nn.Module, image: torch.Tensor, hole_mask: torch.Tensor,
                     model_config: MultiLatentConfig, optimizer_config: OptimizerConfig, seed: int,
                     fit: str = "resize", device: str | torch.device = "cpu",
                     perceptual: VGG16Features | None = None,
                     callback: Callable[[Progress], None] | None = None,
                     starts: StartsConfig | None = None) -> InpaintResult:
    """`inpaint` for an image [3, H, W] of any size: brought to the prior's resolution by `fit`
    (imaging.FIT_MODES), optimised there, brought back, and composited with the original.

    hole_mask: [h, w] with 1 = hole (an all-zero mask reconstructs the image); soft values blend
    in the composite, and a mask of another size is resized to the image. The result's `output`
    is the generator's image and `composite` the filled image, both at the input's size; where
    the mask is 0 the composite is the input bit for bit (once clamped to [0, 1]: resampling
    overshoot within imaging.RANGE_TOLERANCE is accepted). Inputs are checked as by `inpaint`
    and imaging.fit_to_resolution.
    """
    optimizer_config.validate()
    starts = starts or StartsConfig()
    starts.validate()
    seed, device = check_seed(seed), resolve_device(device)
    _check_holds_values(image, "image")
    _check_holds_values(hole_mask, "hole mask")
    family_of(prior)  # a ValueError for anything but a generator the method can split
    # Before any image-sized copy or the prior's copy: the run and this image's copies (memory.py).
    memory.check_inpaint_fits(prior, model_config, optimizer_config, perceptual, device, image,
                              starts=starts.starts)
    image_r, hole_r, restore = imaging.fit_to_resolution(image, hole_mask, prior.config.resolution, fit)
    fills = _fill(prior, image_r, hole_r, model_config, optimizer_config, seed, device, perceptual,
                  callback, starts)
    return _best_with_alternatives([_at_input_size(fill, image, hole_mask, restore) for fill in fills])


def _at_input_size(fill: _Fill, image: torch.Tensor, hole_mask: torch.Tensor,
                   restore: Callable[[torch.Tensor], torch.Tensor]) -> InpaintResult:
    """A fill at the prior's resolution brought back to the input's size (`restore`, from
    imaging.fit_to_resolution) and composited with the input `image` [3, H, W]."""
    image = image.clamp(0, 1)  # the composite's known pixels: accepted overshoot clamped
    size = tuple(image.shape[1:])
    hole = hole_mask if tuple(hole_mask.shape) == size else imaging.resize_mask(hole_mask, size)
    output = restore(fill.output.cpu())
    return fill.result(output, imaging.composite(image, output, hole))
