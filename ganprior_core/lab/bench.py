"""Benchmark runner: the paper's comparison (METHOD.md Tables 1-2 and the ablations) on any prior
and image set, as `python -m ganprior_core bench ...`.

A run writes into one directory:
- `report.md`: mean ± std per method of PSNR / SSIM (whole image and inside the hole), the fit
  of the known pixels, time per image and steps/s, plus the setup needed to repeat it;
- `results.csv`: one row per image x method, appended as soon as the row is done;
- `summary.json`: the same aggregates and the setup, for scripts;
- `figure.png`: input / mask / each method / ground truth for the first few images;
- `images/`, `masks/`: the ground truth and hole masks exactly as scored (PNG, white = hole);
- `results/<image>/<method>.png`: every method's composite.

`--task sr --scale F [--downsampler K] [--gray]` and `--task colorize` score restoration beyond
holes: every method is given the image's degradation (downsampled by F, its luma, or both), the
presets run `restore` on it, DIP fits through the same operator and projection
(`dip.dip_restore`), the task's natural baseline (`bicubic`, `gray`) takes the fills' place, and
the scores are of the whole image (no hole columns).

Rerunning the same command resumes: finished image x method rows are read back from
results.csv and skipped, and the report is regenerated after every image, so an interrupted run
leaves usable partial results.

`--batch B` runs up to B missing rows of one GAN method on several images as one
`inpaint_batch` (`restore_batch` for sr / colorize; DIP and the fills run one at a time). Each
member's result is its own run's bit for bit (method/batched.py), so every score equals
`--batch 1`'s; a batch's rows are written when the batch ends, and each row's `seconds` is its
share of the batch's wall time, in proportion to the steps it ran (`_run_batch`). B changes no
result, so it is not in the folder's claim: a folder resumes with any B. The whole configuration
(and every input it names) is checked before --out is created or written to, so a refused
command leaves nothing to clean up.

Under torchrun (`torchrun --nproc-per-node P -m ganprior_core bench ...`, see `_run_distributed`
and lab/distributed.py) the rows are shared out over the processes, each writes the rows it
finishes to its own file in `ranks/`, and rank 0 merges them into the same results.csv, report,
summary and figure a one-process run writes.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from .. import (
    MAX_LATENT_CODES,
    PRECISIONS,
    PRESET_NAMES,
    OptimizerConfig,
    Progress,
    cli,
    imaging,
    inpaint,
    inpaint_batch,
    metrics,
    preset,
    restore,
    restore_batch,
)
from ..checkpoints import load_generator
from ..families import auto_stop_rule, family_of
from ..files import (
    DirectoryLock,
    folder_contains,
    refuse_output_over_input,
    remove_stale_temporaries,
    require_regular_file,
    write_atomically,
)
from ..method.auto_stop import STOP_MODES, AutoStopConfig
from ..method.config import g1_freeze_step
from ..method.degradations import DOWNSAMPLERS, Degradation, restoration_chain
from ..method.multi_latent import MultiLatentConfig
from ..method.perceptual import VGG16Features, load_vgg16_features
from ..method.precision import uses_bf16
from ..method.restore import task_defaults
from ..networks.pggan import PGGANConfig, PGGANGenerator
from ..networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from ..validation import MAX_SEED, check_count, check_seed
from . import baselines, distributed, masks, procedural, run_folder
from .dip import DIPConfig, dip_inpaint, dip_restore

TASKS = ("inpaint", "reconstruct", "sr", "colorize")
DEGRADATION_TASKS = ("sr", "colorize")  # the truth is the whole image; the input its degradation
FILL_METHODS = ("mean-fill", "diffusion-fill")
METHODS = (*PRESET_NAMES, "dip", *FILL_METHODS)  # the default rows (each task keeps those it has)
# The natural baseline of each degradation task, in place of the hole fills: the low-resolution
# image upscaled bicubically (no antialiasing, clamped), and the gray image itself.
TASK_BASELINES = {"sr": "bicubic", "colorize": "gray"}
ALL_METHODS = (*METHODS, *TASK_BASELINES.values())
TASK_TITLES = {"sr": "super-resolution", "colorize": "colorization"}
ABLATIONS = ("random-init", "frozen", "alpha-only")
IMAGE_SUFFIXES = imaging.IMAGE_SUFFIXES  # the one list: what imaging reads and writes
Generator = PGGANGenerator | StyleGAN2Generator
GeneratorConfig = PGGANConfig | StyleGAN2Config
RECONSTRUCTION_PERCEPTUAL_WEIGHT = 1.0  # mGANprior's weight for inversion (0.1 for inpainting)
FIGURE_PANEL_SIZE = 128  # small priors' images are enlarged so the labels fit above them

CSV_FIELDS = ("image", "image_seed", "seed", "method", "steps", "best_step", "seconds",
              "steps_per_second", "psnr", "ssim", "psnr_hole", "ssim_hole", "psnr_fit_known", "final_loss")
METRIC_FIELDS = ("psnr", "ssim", "psnr_hole", "ssim_hole", "psnr_fit_known", "seconds",
                 "steps", "steps_per_second")
INTEGER_FIELDS = ("image_seed", "seed", "steps", "best_step")
RUN_FILE = "run.json"
RESULTS_FILE = "results.csv"
NOTES_FILE = "notes.json"  # notes of finished rows, so a resumed run's report keeps them
LOCK_FILE = ".bench.lock"  # holds the pid of the bench process using the directory
RANKS_FOLDER = "ranks"  # under torchrun: rank r's finished rows (results-r.csv, notes-r.json)

IDINVERT_NOTE = ("idinvert (the paper's encoder-based Table 1 row) is left out: it inverts an "
                 "image with an encoder trained jointly with the generator (In-Domain GAN "
                 "Inversion), and no such encoder exists for PGGAN; training one is a project of "
                 "its own, so there is nothing faithful to run.")


@dataclass(frozen=True)
class BenchConfig:
    checkpoint: str
    out: str
    images: str | None = None  # a directory of images, resized to the prior's resolution
    procedural: int = 0  # or this many procedural evaluation facades (seeds never trained on)
    task: str = "inpaint"
    scale: int | None = None  # sr: the upscaling factor F (the input is the image F times smaller)
    downsampler: str | None = None  # sr: how the input was made (DOWNSAMPLERS; None = area)
    gray: bool = False  # sr: the low-resolution input is also gray (super-resolution + colorization)
    masks: str | None = None  # None = box (inpaint); not for sr / colorize
    mask_area: float | None = None  # box: fraction of the image; None = masks.box_mask's default
    mask_centred: bool = False  # box: centred (the demo's "box over the facade") instead of seeded
    methods: tuple[str, ...] = METHODS
    ablations: tuple[str, ...] = ()  # variants of `paper`, see ABLATIONS
    codes: tuple[int, ...] = ()  # N sweep: one `paper` variant per number of codes
    splits: tuple[int, ...] = ()  # k sweep: one `paper` variant per split layer
    steps: int | None = None  # every optimising method; None = each method's default
    stop: str = "auto"  # GAN methods: auto-stop (steps = the maximum) or exactly `steps` ("fixed")
    dip_steps: int | None = None  # DIP only, overriding `steps`
    # GAN methods that fine-tune the whole generator: OptimizerConfig.freeze_g1_at (None: never,
    # the paper's per-step computation)
    freeze_g1_at: int | None = OptimizerConfig.freeze_g1_at
    seed: int = 0  # image i uses seed + i for its mask and its optimisation
    precision: str | None = None  # None = each method's default
    vgg: str | None = None  # VGG16 weights for the perceptual loss; None = MSE only
    device: str = "cpu"
    threads: int | None = None  # CPU threads for torch; None = torch's default
    batch: int = 1  # GAN rows of one method on up to this many images optimised together
    figure_images: int = 4
    log_every: int = 100  # progress line every this many optimisation steps

    def validate(self) -> None:
        if (self.images is None) == (self.procedural < 1):
            raise ValueError("give exactly one image source: a directory of images or a number "
                             "of procedural images (at least 1)")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        self._validate_task()
        if (self.mask_area is not None or self.mask_centred) and self.mask_kind != "box":
            raise ValueError("--mask-area and --mask-centred apply to box masks only")
        if self.mask_area is not None and not (math.isfinite(self.mask_area) and 0 < self.mask_area <= 1):
            raise ValueError(f"--mask-area must be a fraction in (0, 1], got {self.mask_area}")
        if self.mask_kind not in masks.MASK_KINDS:
            raise ValueError(f"masks must be one of {', '.join(masks.MASK_KINDS)}, got {self.masks!r}")
        _check_choices("method", self.methods, ALL_METHODS)
        for task, baseline in TASK_BASELINES.items():
            if baseline in self.methods and self.task != task:
                raise ValueError(f"`{baseline}` is the baseline of --task {task}, not of "
                                 f"--task {self.task}")
        _check_choices("ablation", self.ablations, ABLATIONS)
        if not self.methods and not (self.ablations or self.codes or self.splits):
            raise ValueError("nothing to run: no methods and no ablations")
        if self.stop not in STOP_MODES:
            raise ValueError(f"stop must be one of {', '.join(STOP_MODES)}, got {self.stop!r}")
        for name, value in (("steps", self.steps), ("dip steps", self.dip_steps)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if any(not 1 <= n <= MAX_LATENT_CODES for n in self.codes):
            raise ValueError(f"numbers of codes must be in 1 ... {MAX_LATENT_CODES}, got {list(self.codes)}")
        if self.freeze_g1_at is not None:
            check_count(self.freeze_g1_at, "--freeze-g1-at", 1)
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        check_count(self.batch, "--batch", 1)
        if self.figure_images < 0 or self.log_every < 1:
            raise ValueError("figure images must not be negative and log_every must be positive")
        check_seed(self.seed)
        require_regular_file(self.checkpoint, "checkpoint")
        if self.vgg is not None:
            require_regular_file(self.vgg, "VGG16 weights")
        inputs = {"--checkpoint": self.checkpoint, "--vgg": self.vgg}
        refuse_output_over_input({f"--out's {name}": Path(self.out) / name for name in
                                  ("report.md", RESULTS_FILE, "summary.json", "figure.png",
                                   RUN_FILE, NOTES_FILE)}, inputs)
        written = [Path(self.out) / name for name in ("images", "masks", "results", RANKS_FOLDER)]
        for name, path in inputs.items():
            if path is not None and any(folder_contains(folder, path) for folder in written):
                raise ValueError(f"{name} {path} lies in a folder the bench writes into "
                                 f"({', '.join(str(folder) for folder in written)}); move it")
        if self.images is not None and (folder_contains(self.images, self.out) or any(
                folder_contains(folder, self.images) for folder in written)):
            raise ValueError(f"--out {self.out} and --images {self.images} overlap: the run's "
                             "own images would become inputs; choose an --out outside --images")
        # The image folder is read here, before --out is created or claimed.
        images = self.procedural if self.images is None else len(_image_files(Path(self.images)))
        _check_seed_range(self.seed, images)

    @property
    def mask_kind(self) -> str:
        return self.masks or "box"

    def _validate_task(self) -> None:
        """The degradation tasks' options: each only with its task, and no holes with them."""
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "sr":
            if self.scale is None:
                raise ValueError("--task sr needs --scale F, the upscaling factor (2, 4, 8, ...)")
            if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 2:
                raise ValueError(f"--scale must be an integer of at least 2, got {self.scale!r}")
            if self.downsampler is not None and self.downsampler not in DOWNSAMPLERS:
                raise ValueError(f"--downsampler must be one of {', '.join(DOWNSAMPLERS)}, "
                                 f"got {self.downsampler!r}")
        else:
            for option, value in (("--scale", self.scale), ("--downsampler", self.downsampler),
                                  ("--gray", self.gray or None)):
                if value is not None:
                    also = "; --task colorize is colorization alone" if option == "--gray" else ""
                    raise ValueError(f"{option} goes with --task sr (super-resolution), not with "
                                     f"--task {self.task}{also}")
        if self.task in DEGRADATION_TASKS:
            for option, value in (("--masks", self.masks), ("--mask-area", self.mask_area),
                                  ("--mask-centred", self.mask_centred or None)):
                if value is not None:
                    raise ValueError(f"{option} goes with --task inpaint: --task {self.task} "
                                     "restores the whole image, with no hole")

    def degradation(self) -> Degradation | None:
        """The degradation of a sr / colorize task (on the prior's grid); None for the others."""
        if self.task not in DEGRADATION_TASKS:
            return None
        return restoration_chain(gray=self.task == "colorize" or self.gray,
                                 scale=self.scale or 1, downsampler=self.sr_downsampler)

    @property
    def sr_downsampler(self) -> str | None:
        return (self.downsampler or "area") if self.task == "sr" else None

    def settings_that_change_results(self, checkpoint_digest: str, prior: GeneratorConfig) -> dict:
        """What must match for rows of an earlier run to be reused. Methods and the number of
        procedural images may differ: rows are per image x method, and procedural seeds of a
        smaller run are a prefix of a larger one."""
        settings = {"checkpoint_sha256": checkpoint_digest,
                    "images": str(Path(self.images).resolve()) if self.images else "procedural",
                    "task": self.task, "masks": self.mask_kind, "steps": self.steps, "stop": self.stop,
                    "dip_steps": self.dip_steps, "seed": self.seed, "precision": self.precision,
                    "vgg": str(Path(self.vgg).resolve()) if self.vgg else None}
        # The degradation tasks' settings join only for them, so inpaint and reconstruct
        # directories from before they existed resume, and rows of other tasks never mix.
        if self.task == "sr":
            settings.update(scale=self.scale, downsampler=self.sr_downsampler, gray=self.gray)
        # Mask options join only when set, so run directories from before they existed resume.
        if self.mask_area is not None:
            settings["mask_area"] = self.mask_area
        if self.mask_centred:
            settings["mask_centred"] = True
        if self.freeze_g1_at is not None:  # (None, never freezing: how runs before it resume)
            settings["freeze_g1_at"] = self.freeze_g1_at
        if self.threads is not None:  # seconds and steps/s depend on it; rows must not mix
            settings["threads"] = self.threads
        if self.device != "cpu":  # (cpu: how directories from before this key resume)
            settings["device"] = self.device
        rule = auto_stop_rule(prior)
        if self.stop == "auto" and rule != AutoStopConfig():
            # A family rule other than the one every directory before this key was made with.
            settings["auto_stop"] = asdict(rule)
        if self.images:  # an image replaced under the same name must not reuse its old rows
            settings["images_sha256"] = _folder_digest(_image_files(Path(self.images)))
        return settings


@dataclass(frozen=True)
class Variant:
    """One row of the table: a method with its full configuration."""

    name: str  # file-name safe key, e.g. "paper", "paper-frozen", "paper-N10"
    description: str
    kind: str  # "gan", "dip" or "fill"
    model: MultiLatentConfig | None = None
    optimizer: OptimizerConfig | None = None
    dip: DIPConfig | None = None
    random_generator: bool = False  # same architecture as the prior, freshly initialised
    ablation: bool = False


@dataclass
class Case:
    """One benchmark image with its hole, as scored."""

    name: str
    image: torch.Tensor  # [3, R, R] in [0, 1]; once saved, exactly the PNG's pixels
    hole: torch.Tensor | None  # [R, R], 1 = hole; None when reconstructing
    image_seed: int | None  # the procedural facade's seed; None for images from a directory
    seed: int  # run seed + index: this image's mask and every method's starting point


@dataclass
class BenchSummary:
    out: Path
    new_rows: int
    skipped_rows: int
    complete: bool
    aggregates: dict = field(default_factory=dict)


def _check_choices(kind: str, chosen: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    unknown = [name for name in chosen if name not in allowed]
    if unknown:
        raise ValueError(f"unknown {kind}(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")


# ---------------------------------------------------------------------------------------------
# Variants

def _precision_run(precision: str, device: str) -> str:
    """The precision setting and, for auto, what it runs on this device (the report's readers
    may be on another machine)."""
    if precision != "auto":
        return precision
    return f"precision auto ({'bf16' if uses_bf16(precision, torch.device(device)) else 'fp32'} here)"


def _describe_gan(model: MultiLatentConfig, optimizer: OptimizerConfig, prior: GeneratorConfig,
                  task: str, device: str) -> str:
    channels, height, width = prior.feature_shape(model.split_layer)
    alpha = "α learnt" if model.use_alpha else "no α"
    beta = "β learnt" if model.use_beta else ("β = 1/N (mean fusion)" if model.num_codes > 1 else "no β")
    rates = f"lr z {optimizer.lr_latent:g}"
    if model.use_alpha:
        rates += f", α {optimizer.lr_alpha:g}"
    if model.use_beta:
        rates += f", β {optimizer.lr_beta:g}"
    if model.finetune != "none":
        rates += f", θ {optimizer.lr_generator:g}"
    tuning = "frozen generator" if model.finetune == "none" else f"fine-tunes generator ({model.finetune})"
    loss = f"MSE × {optimizer.mse_weight:g}"
    if optimizer.perceptual_weight > 0:
        loss += f" + perceptual × {optimizer.perceptual_weight:g}"
    if optimizer.stop == "auto" and task == "reconstruct":
        stop = f"{optimizer.steps} steps (auto-stop watches a hole: a reconstruction runs them all)"
    elif optimizer.stop == "auto":
        rule = auto_stop_rule(prior, optimizer.auto_stop)
        held = "observed entries" if task in DEGRADATION_TASKS else "known pixels"
        stop = (f"auto-stop (at most {optimizer.steps} steps; {rule.holdout_fraction:.0%} "
                f"of the {held} held out, checked every {rule.check_every} "
                f"steps, patience {rule.patience} checks; the check nearest "
                f"{rule.rewind:g} × the best one's step returned)")
    else:
        stop = f"{optimizer.steps} steps"
    if (freeze_at := g1_freeze_step(model, optimizer)) is not None:
        stop += f", codes and G₁ frozen after {freeze_at} steps"
    options = family_of(prior).describe_options(prior, model)
    return (f"N={model.num_codes}, k={model.split_layer} ({channels}×{height}×{width} features), "
            f"{options + ', ' if options else ''}{alpha}, {beta}, {tuning}; {loss}; Adam {rates}, "
            f"{optimizer.schedule} schedule, {stop}, {_precision_run(optimizer.precision, device)}")


def _describe_baseline(config: BenchConfig) -> str:
    if config.task == "colorize":
        return "the gray input itself (its BT.601 luma in every channel)"
    gray = "the gray (BT.601 luma) " if config.gray else "the "
    return (f"{gray}low-resolution input upscaled ×{config.scale} by bicubic interpolation "
            "(F.interpolate, align_corners=False, no antialiasing), clamped to [0, 1]")


def build_variants(config: BenchConfig, prior: GeneratorConfig, has_vgg: bool) -> tuple[list[Variant], list[str]]:
    """The rows to run, in table order, and notes on rows left out."""
    notes: list[str] = []

    def gan_variant(name: str, base: str, ablation: bool, random_generator: bool = False,
                    **model_changes) -> Variant:
        model, optimizer = preset(base, prior)
        if base == "paper" and config.task in DEGRADATION_TASKS:  # what restore uses by default
            model, optimizer = task_defaults(prior, config.degradation())
        model = replace(model, **model_changes)
        model.validate(prior)
        if config.task == "reconstruct" and has_vgg:
            optimizer = replace(optimizer, perceptual_weight=RECONSTRUCTION_PERCEPTUAL_WEIGHT)
        if not has_vgg:
            optimizer = replace(optimizer, perceptual_weight=0.0)
        optimizer = replace(optimizer, preview_every=config.log_every, stop=config.stop,
                            freeze_g1_at=config.freeze_g1_at,
                            **({"steps": config.steps} if config.steps else {}),
                            **({"precision": config.precision} if config.precision else {}))
        optimizer.validate()
        description = _describe_gan(model, optimizer, prior, config.task, config.device)
        if random_generator:
            description = f"randomly initialised generator (seed {config.seed}); " + description
        return Variant(name, description, "gan", model, optimizer,
                       random_generator=random_generator, ablation=ablation)

    variants: list[Variant] = []
    for method in config.methods:
        if method in PRESET_NAMES:
            variants.append(gan_variant(method, method, ablation=False))
        elif method == "dip":
            dip = DIPConfig(preview_every=config.log_every)
            steps = config.dip_steps or config.steps
            dip = replace(dip, **({"steps": steps} if steps else {}),
                          **({"precision": config.precision} if config.precision else {}))
            dip.validate()
            size = prior.resolution
            variants.append(Variant("dip", "Deep Image Prior: " + dip.describe(size, size), "dip", dip=dip))
        elif config.task in DEGRADATION_TASKS:
            baseline = TASK_BASELINES[config.task]
            if method != baseline:
                notes.append(f"`{method}` left out: {TASK_TITLES[config.task]} has no hole to "
                             f"fill; its baseline is `{baseline}`")
            if all(v.name != baseline for v in variants):
                variants.append(Variant(baseline, _describe_baseline(config), "fill"))
        elif config.task == "reconstruct":
            notes.append(f"`{method}` left out: reconstruction has no hole to fill")
        else:
            description = {"mean-fill": "hole filled with the mean colour of the known pixels",
                           "diffusion-fill": "harmonic (Laplace) fill from the hole's border"}[method]
            variants.append(Variant(method, description, "fill"))

    ablations = [("paper-random-init", {"random_generator": True}, "random-init"),
                 ("paper-frozen", {"finetune": "none"}, "frozen"),
                 ("paper-alpha-only", {"use_beta": False}, "alpha-only")]
    for name, changes, flag in ablations:
        if flag in config.ablations:
            variants.append(gan_variant(name, "paper", ablation=True, **changes))
    for count in config.codes:
        variants.append(gan_variant(f"paper-N{count}", "paper", ablation=True, num_codes=count))
    for split in config.splits:
        variants.append(gan_variant(f"paper-k{split}", "paper", ablation=True, split_layer=split))

    # A sweep value equal to the preset (e.g. N=30) would repeat the `paper` row at full cost.
    unique: dict[tuple, Variant] = {}
    for variant in variants:
        key = (variant.kind, variant.model, variant.optimizer, variant.dip, variant.random_generator,
               variant.name if variant.kind == "fill" else None)
        if key in unique:
            notes.append(f"`{variant.name}` is the same configuration as `{unique[key].name}`: "
                         f"not run twice, see that row")
        else:
            unique[key] = variant
    return list(unique.values()), notes


# ---------------------------------------------------------------------------------------------
# Images and masks

def _folder_digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{run_folder.file_digest(path)}\0".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


# Keys added to run.json after directories were already in use: a directory whose run.json
# lacks one resumes (the check was not made then), one that has it must match.
_LATER_KEYS = ("images_sha256",)


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"image directory not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _check_seed_range(seed: int, images: int) -> None:
    """Image i uses seed + i, so the last image's seed must still be a seed."""
    if images > 0 and seed + images - 1 > MAX_SEED:
        raise ValueError(f"seed {seed} is too large for {images} images: image i uses seed + i, "
                         f"which must stay within 0 ... {MAX_SEED}; use a seed up to "
                         f"{MAX_SEED - images + 1}")


def _source_images(config: BenchConfig, resolution: int) -> list[tuple[str, torch.Tensor, int | None]]:
    """(name, image at the prior's resolution, procedural seed or None) per benchmark image."""
    if config.images is None:
        seeds = procedural.evaluation_seeds(config.procedural)
        return [(f"{index:03d}-seed{seed}",
                 imaging.resize_image(procedural.facade_image(seed), (resolution, resolution)), seed)
                for index, seed in enumerate(seeds)]
    files = _image_files(Path(config.images))
    stems = [path.stem for path in files]
    # a.png beside a.jpg: keep the suffix so results of one never overwrite the other's
    names = [path.stem if stems.count(path.stem) == 1 else path.name for path in files]
    # Stretched to the prior's square: every method then sees exactly the pixels that are scored.
    return [(name, imaging.resize_image(imaging.load_image(path), (resolution, resolution)), None)
            for name, path in zip(names, files)]


def _mask_options(config: BenchConfig) -> dict:
    options = {} if config.mask_area is None else {"area_fraction": config.mask_area}
    return {**options, "centred": True} if config.mask_centred else options


def _box_description(config: dict) -> str:
    details = ([f"{config['mask_area']:.0%} of the image"] if config.get("mask_area") else []) + \
              (["centred"] if config.get("mask_centred") else [])
    return f" ({', '.join(details)})" if details else ""


def _build_cases(config: BenchConfig, resolution: int) -> list[Case]:
    """Every image with its seeded hole, in memory; a hole that leaves nothing known is refused
    here, before anything is written."""
    degradation = config.degradation()
    if degradation is not None:  # a factor that does not divide the prior's grid: refused here
        try:
            degradation.observation_shape((1, 3, resolution, resolution))
        except ValueError as error:
            raise ValueError(f"--scale {config.scale} does not suit the prior's "
                             f"{resolution}x{resolution} images: {error}") from None
    cases = []
    for index, (name, image, image_seed) in enumerate(_source_images(config, resolution)):
        seed = config.seed + index
        hole = None
        if config.task == "inpaint":
            hole = masks.make_mask(config.mask_kind, resolution, seed, **_mask_options(config))
            if imaging.hole_pixels(hole).all():
                advice = "; give a smaller --mask-area" if config.mask_kind == "box" else ""
                raise ValueError(f"the {config.mask_kind} mask of image {name} covers the whole "
                                 f"{resolution}x{resolution} image: nothing is known to fill the "
                                 f"hole from{advice}")
        cases.append(Case(name, image, hole, image_seed, seed))
    return cases


def _save_cases(cases: list[Case], out: Path) -> list[Case]:
    """Every image and mask saved and the images read back, so what is scored is what the files
    hold."""
    _write_cases(cases, out)
    return _read_back(cases, out)


def _write_cases(cases: list[Case], out: Path) -> None:
    for case in cases:
        imaging.save_image(case.image, out / "images" / f"{case.name}.png")
        if case.hole is not None:
            imaging.save_mask(case.hole, out / "masks" / f"{case.name}.png")


def _read_back(cases: list[Case], out: Path) -> list[Case]:
    """The cases with their images as saved in `out` (under torchrun: by rank 0)."""
    return [replace(case, image=imaging.load_image(out / "images" / f"{case.name}.png"))
            for case in cases]


# ---------------------------------------------------------------------------------------------
# Running

def _random_generator(prior: Generator, seed: int) -> Generator:
    """A fresh network of the prior's family and architecture, initialised from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return type(prior)(prior.config).eval()


def _run_variant(variant: Variant, case: Case, prior: Generator, random_prior: Callable[[], Generator],
                 perceptual: VGG16Features | None, config: BenchConfig,
                 log: Callable[[str], None], prefix: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(composite, raw output, timing/loss fields of the CSV row)."""
    degradation = config.degradation()
    if variant.kind == "fill":
        started = time.perf_counter()
        if degradation is not None:
            filled = task_baseline(config, observe(degradation, case.image))
        else:
            fill = baselines.mean_fill if variant.name == "mean-fill" else baselines.diffusion_fill
            filled = fill(case.image, case.hole)
        return filled, filled, {"seconds": time.perf_counter() - started}

    report = _progress_lines(config, log, prefix, time.perf_counter())
    if degradation is not None and variant.kind == "dip":  # DIP through the same operator
        result = dip_restore(observe(degradation, case.image), degradation, variant.dip, case.seed,
                             config.device, report)
        steps = variant.dip.steps
    elif degradation is not None:  # sr / colorize: the presets through the degradation operator
        generator = random_prior() if variant.random_generator else prior
        result = restore(generator, observe(degradation, case.image), degradation, variant.model,
                         variant.optimizer, case.seed, config.device, perceptual, report)
        steps = result.steps_run
    elif variant.kind == "dip":
        result = dip_inpaint(case.image, case.hole, variant.dip, case.seed, config.device, report)
        steps = variant.dip.steps
    else:
        generator = random_prior() if variant.random_generator else prior
        result = inpaint(generator, case.image, case.hole, variant.model, variant.optimizer, case.seed,
                         config.device, perceptual, report)
        steps = result.steps_run
    return result.composite, result.output, {
        "seconds": result.seconds, "steps": steps, "steps_per_second": steps / result.seconds,
        "best_step": result.best_step,
        "final_loss": result.loss_history[-1], "notes": result.notes}


def _progress_lines(config: BenchConfig, log: Callable[[str], None], prefix: str,
                    started: float) -> Callable[[Progress], None]:
    """A run's progress callback: a line every `log_every` steps, the rate since `started`."""
    def report(progress: Progress) -> None:
        if progress.step % config.log_every == 0 and progress.step < progress.total:
            rate = progress.step / (time.perf_counter() - started)
            loss = f", loss {progress.loss:.5f}" if progress.loss is not None else ""
            log(f"{prefix} step {progress.step}/{progress.total}, {rate:.2f} steps/s{loss}")
    return report


def observe(degradation: Degradation, image: torch.Tensor) -> torch.Tensor:
    """The input a degradation task gives every method: [3, R, R] -> [C, R/F, R/F] (C = 1 gray)."""
    with torch.no_grad():
        return degradation.observe(image[None].float())[0].clamp(0, 1)


def task_baseline(config: BenchConfig, observation: torch.Tensor) -> torch.Tensor:
    """The natural baseline's result [3, R, R] from the observation: bicubic upscaling (sr) or
    the gray image as RGB (colorize)."""
    result = observation.expand(3, *observation.shape[1:]) if observation.shape[0] == 1 else observation
    if config.task == "sr":
        result = F.interpolate(result[None], scale_factor=config.scale, mode="bicubic",
                               align_corners=False)[0].clamp(0, 1)
    return result.contiguous()


def _observation_psnr(observed: torch.Tensor, observation: torch.Tensor) -> float:
    mse = float(((observed.double() - observation.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _score(case: Case, composite: torch.Tensor, output: torch.Tensor,
           degradation: Degradation | None = None) -> dict:
    """Composite vs ground truth (whole image and hole), and the raw output on the known pixels:
    how well a method fits what it was given (for sr / colorize: the raw output's degradation
    against the input)."""
    report = metrics.measure(composite, case.image, case.hole)
    scores = {"psnr": report.psnr, "ssim": report.ssim,
              "psnr_hole": report.psnr_hole, "ssim_hole": report.ssim_hole}
    if degradation is not None:
        scores["psnr_fit_known"] = _observation_psnr(observe(degradation, output.clamp(0, 1)),
                                                     observe(degradation, case.image))
        return scores
    known = None if case.hole is None else 1 - case.hole
    if known is None or known.any():
        scores["psnr_fit_known"] = metrics.psnr(output, case.image, known)
    return scores


def _warm_up_optimiser() -> None:
    """The first Adam step of a process pays seconds of lazy imports; pay them here, untimed,
    rather than billing them to whichever method happens to run first."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter])
    parameter.sum().backward()
    optimizer.step()


@dataclass
class _Plan:
    """What a run needs, read and checked before --out is touched: a refused run (a typo, a bad
    setting) leaves no folder, and an existing folder as it was."""

    checkpoint_digest: str
    prior: Generator
    perceptual: VGG16Features | None
    variants: list[Variant]
    notes: list[str]
    cases: list[Case]  # not saved yet
    settings: dict  # what the folder's earlier rows must have been made with


def run_bench(config: BenchConfig, log: Callable[[str], None] = print) -> BenchSummary:
    ranks = distributed.from_environment()
    if ranks is not None:  # under torchrun with several processes
        return _run_distributed(config, ranks, log)
    config.validate()
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _run_in_folder(config, _plan(config), log)
    finally:
        torch.set_num_threads(threads)


def _plan(config: BenchConfig) -> _Plan:
    checkpoint_digest = run_folder.file_digest(config.checkpoint)
    prior = load_generator(config.checkpoint)
    perceptual = load_vgg16_features(config.vgg) if config.vgg else None
    variants, notes = build_variants(config, prior.config, perceptual is not None)
    cases = _build_cases(config, prior.config.resolution)
    settings = config.settings_that_change_results(checkpoint_digest, prior.config)
    return _Plan(checkpoint_digest, prior, perceptual, variants, notes, cases, settings)


@contextlib.contextmanager
def _held_folder(out: Path) -> Iterator[None]:
    """--out, made if missing and locked for this process for the block. A run that fails before
    writing anything leaves no empty --out behind."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with DirectoryLock(out / LOCK_FILE, "bench"):
            yield
    except BaseException:
        if created:
            try:
                out.rmdir()
            except OSError:
                pass
        raise


def _prepare_folder(out: Path, plan: _Plan) -> None:
    """Under the lock: what a killed run left cleaned up, the folder claimed for these settings,
    and rows a torchrun run's ranks finished moved into results.csv."""
    remove_stale_temporaries(out)  # left by a run killed mid-write; the lock is ours
    run_folder.claim(out, plan.settings, RUN_FILE, "results of a run",
                     has_results=lambda: bool(read_rows(out / RESULTS_FILE, repair=False)
                                              or _rank_files(out, "results")),
                     later_keys=_LATER_KEYS)
    _merge_rank_files(out)


def _run_in_folder(config: BenchConfig, plan: _Plan, log: Callable[[str], None]) -> BenchSummary:
    out = Path(config.out)
    with _held_folder(out):
        _prepare_folder(out, plan)
        return _run_rows(config, plan, _save_cases(plan.cases, out), log)


# A finished row: the row as results.csv reads it back, the run's notes, and the line that says
# it is done (logged once the row is written).
FinishedRow = tuple[dict, list[str], str]


def _row_prefix(cases: list[Case], index: int, variant: Variant) -> str:
    return f"[image {index + 1}/{len(cases)} {cases[index].name}] {variant.name}:"


def _run_row(config: BenchConfig, plan: _Plan, cases: list[Case], index: int, variant: Variant,
             random_prior: Callable[[], Generator], log: Callable[[str], None]) -> FinishedRow:
    """One image x method row run, its composite saved."""
    case, prefix = cases[index], _row_prefix(cases, index, variant)
    log(f"{prefix} running")
    composite, output, run = _run_variant(variant, case, plan.prior, random_prior,
                                          plan.perceptual, config, log, prefix)
    return _scored_row(config, case, variant, prefix, composite, output, run)


def _batchable(variant: Variant) -> bool:
    """Rows that run together (inpaint_batch, or restore_batch for sr / colorize): a GAN method's."""
    return variant.kind == "gan"


def _units(todo: list[tuple[int, Variant]], config: BenchConfig) -> list[tuple[Variant, list[int]]]:
    """The rows to run (image index, variant) grouped into runs, in the order of each run's first
    row: up to `config.batch` rows of one batchable variant together, every other row alone."""
    units: list[tuple[Variant, list[int]]] = []
    filling: dict[str, list[int]] = {}  # the batch of each variant still taking rows
    for index, variant in todo:
        if config.batch == 1 or not _batchable(variant):
            units.append((variant, [index]))
            continue
        members = filling.get(variant.name)
        if members is None or len(members) == config.batch:
            members = filling[variant.name] = []
            units.append((variant, members))
        members.append(index)
    return units


def _run_unit(config: BenchConfig, plan: _Plan, cases: list[Case], variant: Variant,
              indices: list[int], random_prior: Callable[[], Generator],
              log: Callable[[str], None]) -> list[tuple[int, FinishedRow]]:
    """One run of `_units`: a single row, or a batch of them; (image index, row) for each."""
    if len(indices) == 1:
        return [(indices[0], _run_row(config, plan, cases, indices[0], variant, random_prior, log))]
    return list(zip(indices, _run_batch(config, plan, cases, indices, variant, random_prior, log)))


def _run_batch(config: BenchConfig, plan: _Plan, cases: list[Case], indices: list[int],
               variant: Variant, random_prior: Callable[[], Generator],
               log: Callable[[str], None]) -> list[FinishedRow]:
    """Rows of one GAN variant on several images as one inpaint_batch (restore_batch for sr /
    colorize): each member's result is its row's own run bit for bit, so the rows equal
    _run_row's but for the time.

    A row's `seconds` is its share of the batch's wall time, in proportion to the steps it ran
    (members run the same configuration at the same resolution, so a step costs each about the
    same): the rows of a batch add up to its time, and their steps/s is the batch's member-steps
    per second, what each row cost when it ran alongside the others."""
    prefixes = [_row_prefix(cases, index, variant) for index in indices]
    images = ", ".join(str(index + 1) for index in indices)
    for prefix in prefixes:
        log(f"{prefix} running in a batch of images {images}")
    generator = random_prior() if variant.random_generator else plan.prior
    started = time.perf_counter()
    callbacks = [_progress_lines(config, log, prefix, started) for prefix in prefixes]
    seeds = [cases[index].seed for index in indices]
    degradation = config.degradation()
    if degradation is None:
        results = inpaint_batch(generator, [cases[index].image for index in indices],
                                [cases[index].hole for index in indices], variant.model,
                                variant.optimizer, seeds, config.device, plan.perceptual,
                                callbacks, batch_size=len(indices))
    else:
        results = restore_batch(generator, [observe(degradation, cases[index].image)
                                            for index in indices],
                                [degradation] * len(indices), variant.model, variant.optimizer,
                                seeds, config.device, plan.perceptual, callbacks,
                                batch_size=len(indices))
    seconds = time.perf_counter() - started
    steps = sum(result.steps_run for result in results)
    finished = []
    for index, prefix, result in zip(indices, prefixes, results):
        share = seconds * (result.steps_run / steps if steps else 1 / len(results))
        run = {"seconds": share, "steps": result.steps_run,
               "steps_per_second": result.steps_run / share, "best_step": result.best_step,
               "final_loss": result.loss_history[-1], "notes": result.notes}
        finished.append(_scored_row(config, cases[index], variant, prefix, result.composite,
                                    result.output, run))
    log(f"{variant.name}: the batch of images {images} ran in {seconds:.1f} s")
    return finished


def _scored_row(config: BenchConfig, case: Case, variant: Variant, prefix: str,
                composite: torch.Tensor, output: torch.Tensor, run: dict) -> FinishedRow:
    """A run's row, scored, its composite saved."""
    imaging.save_image(composite, Path(config.out) / "results" / case.name / f"{variant.name}.png")
    row = {"image": case.name, "image_seed": case.image_seed, "seed": case.seed,
           "method": variant.name, **_score(case, composite, output, config.degradation()),
           **{key: value for key, value in run.items() if key != "notes"}}
    done = (f"{prefix} done in {run['seconds']:.1f} s: PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f}"
            + (f", hole PSNR {row['psnr_hole']:.2f} dB" if row.get("psnr_hole") is not None else ""))
    return parse_row(_csv_text(row)), list(run.get("notes") or []), done


def _note_lines(method: str, notes: list[str]) -> list[str]:
    return [f"`{method}`: {note}" for note in notes]


def _run_rows(config: BenchConfig, plan: _Plan, cases: list[Case],
              log: Callable[[str], None]) -> BenchSummary:
    """Every image x method row the folder lacks, image by image (a batch of rows where its
    first image comes), the report rewritten after every image. The new rows and their notes
    are written after the earlier ones in the order of the rows run, whatever order batches
    finish them in: what `--batch 1` writes."""
    out, variants = Path(config.out), plan.variants
    results_csv = out / RESULTS_FILE
    earlier_rows, earlier_notes = read_rows(results_csv), _read_notes(out / NOTES_FILE)
    setup = _setup(config, plan.prior, plan.checkpoint_digest, cases, variants, plan.notes)
    for (image, method), texts in earlier_notes.items():
        if (image, method) in earlier_rows:
            setup["notes"] += _note_lines(method, texts)
    earlier_setup_notes = list(setup["notes"])
    todo = [(index, variant) for index, case in enumerate(cases) for variant in variants
            if (case.name, variant.name) not in earlier_rows]
    run_order = [(cases[index].name, variant.name) for index, variant in todo]
    skipped = len(cases) * len(variants) - len(todo)
    _log_batching(config, todo, log)
    units_at: dict[int, list[tuple[Variant, list[int]]]] = {}
    for variant, indices in _units(todo, config):
        units_at.setdefault(indices[0], []).append((variant, indices))
    random_prior = _lazy_random_prior(plan.prior, config.seed)
    if any(v.kind != "fill" for v in variants):
        _warm_up_optimiser()
    new_rows: dict[tuple[str, str], dict] = {}
    new_notes: dict[tuple[str, str], list[str]] = {}
    rows = earlier_rows
    for index in range(len(cases)):
        for variant, indices in units_at.get(index, []):
            finished = _run_unit(config, plan, cases, variant, indices, random_prior, log)
            for member, (row, notes, _) in finished:
                new_rows[(cases[member].name, variant.name)] = row
                if notes:
                    new_notes[(cases[member].name, variant.name)] = notes
            if any(notes for _, (_, notes, _) in finished):
                _write_notes(out / NOTES_FILE, _after(earlier_notes, new_notes, run_order))
            rows = _after(earlier_rows, new_rows, run_order)
            write_rows(results_csv, rows)
            setup["notes"] = earlier_setup_notes + [
                line for key, notes in _after({}, new_notes, run_order).items()
                for line in _note_lines(key[1], notes)]
            for _, (_, _, done) in finished:
                log(done)
        _write_outputs(out, setup, cases, variants, rows)
    if skipped:
        log(f"skipped {skipped} image x method row(s) already in {results_csv}")
    aggregates = _write_outputs(out, setup, cases, variants, rows)
    log(f"wrote {out / 'report.md'}, {results_csv.name}, summary.json, figure.png")
    return BenchSummary(out, len(new_rows), skipped,
                        _count_done(cases, variants, rows) == len(cases) * len(variants), aggregates)


def _after(earlier: dict, new: dict, order: list) -> dict:
    """`earlier`'s entries, then `new`'s in `order` (a key in both keeps its earlier place)."""
    return {**earlier, **{key: new[key] for key in order if key in new}}


def _log_batching(config: BenchConfig, todo: list[tuple[int, Variant]],
                  log: Callable[[str], None]) -> None:
    """With --batch, which rows run one at a time although batches were asked for."""
    if config.batch == 1:
        return
    alone = sorted({variant.name for _, variant in todo if not _batchable(variant)})
    if alone:
        log(f"--batch {config.batch}: only the GAN methods run batched; {', '.join(alone)} run "
            "one row at a time")


# ---------------------------------------------------------------------------------------------
# Under torchrun: the rows shared out over the processes

def _rank_files(out: Path, kind: str) -> list[Path]:
    """`ranks/results-<r>.csv` or `ranks/notes-<r>.json` in --out, by rank number."""
    folder, suffix = out / RANKS_FOLDER, ".csv" if kind == "results" else ".json"
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob(f"{kind}-*{suffix}"):
        number = path.name[len(kind) + 1:-len(suffix)]
        if number.isdigit():
            found.append((int(number), path))
    return [path for _, path in sorted(found)]


def _rank_file(out: Path, kind: str, rank: int) -> Path:
    return out / RANKS_FOLDER / (f"results-{rank}.csv" if kind == "results" else f"notes-{rank}.json")


def _merge_rank_files(out: Path) -> None:
    """Rows (and their notes) that the ranks of an interrupted torchrun run finished, moved into
    results.csv (and notes.json), so that no rerun, with any number of processes or none, runs
    them again. Merging is idempotent (a row already in results.csv stays as it is), so a kill
    between writing results.csv and removing the rank files loses nothing."""
    results, notes = _rank_files(out, "results"), _rank_files(out, "notes")
    if results:
        rows = read_rows(out / RESULTS_FILE)
        for path in results:
            for key, row in read_rows(path, repair=False).items():
                rows.setdefault(key, row)
        write_rows(out / RESULTS_FILE, rows)
    if notes:
        merged = _read_notes(out / NOTES_FILE)
        for path in notes:
            for key, texts in _read_notes(path).items():
                merged.setdefault(key, texts)
        _write_notes(out / NOTES_FILE, merged)
    for path in results + notes:
        path.unlink()
    try:
        (out / RANKS_FOLDER).rmdir()
    except OSError:
        pass  # missing, or holding something that is not ours


def _run_distributed(config: BenchConfig, ranks: distributed.Ranks,
                     log: Callable[[str], None]) -> BenchSummary:
    """`torchrun ... -m ganprior_core bench ...`: this process's share of the rows, and on rank 0
    the one report of them all.

    - Rank 0 alone takes --out (lock, claim, merging rank files an interrupted run left, the
      images and masks); the others wait for it and read the images back from the folder, which
      is why --out must be a folder every rank sees (on several machines, a shared filesystem).
    - The rows the folder lacks are listed method by method, image by image, and dealt out
      round-robin (distributed.shard): every rank builds the same list from the same folder, and
      every rank gets a share of every method, slow and fast. A row's result depends only on its
      image, method and seed, never on which process runs it or after which row. With --batch,
      each rank batches the rows of its own share.
    - Each rank writes the rows it finishes to its own file, `ranks/results-<rank>.csv` (and
      `ranks/notes-<rank>.json`), rewritten atomically after every row (or batch), as results.csv is in a
      one-process run. One writer per file means no lost updates without any locking between
      processes (the folder's lock file keeps out other commands, and a lock taken per row would
      serialise the ranks' writes and would not work across machines); a killed run leaves every
      finished row in some rank's file, and the rerun, with any number of processes, merges them
      before deciding what is left.
    - When every rank is done, the finished rows are gathered (all_gather_object) and rank 0
      writes results.csv, notes.json, report.md, summary.json and figure.png, with the rows in
      the table's order (image by image, method by method): what a one-process run of the same
      command writes. Only the seconds and steps/s columns differ, being times.
    """
    def rank_log(line: str) -> None:
        log(f"[{ranks.label}] {line}")

    threads = torch.get_num_threads()
    try:
        with distributed.process_group(ranks) as group:
            return _run_ranks(config, ranks, group, rank_log)
    finally:
        torch.set_num_threads(threads)


def _run_ranks(config: BenchConfig, ranks: distributed.Ranks, group: distributed.Group,
               log: Callable[[str], None]) -> BenchSummary:
    out = Path(config.out)
    plan, run_config, error = None, config, None
    try:
        config.validate()
        run_config = replace(config, device=distributed.rank_device(config.device, ranks.local_rank))
        plan = _plan(config)
    except Exception as caught:  # every rank learns of it and stops: none waits for the others
        error = caught
    group.agree(error)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    elif torch.device(config.device).type == "cpu":
        torch.set_num_threads(distributed.fair_threads(ranks.local_world_size))
    if torch.device(run_config.device).type == "cuda":
        torch.cuda.set_device(run_config.device)

    with contextlib.ExitStack() as held:
        start = None
        if ranks.rank == 0:
            try:
                held.enter_context(_held_folder(out))
                _prepare_folder(out, plan)
                _write_cases(plan.cases, out)  # every rank reads them back below
                start = (read_rows(out / RESULTS_FILE), _read_notes(out / NOTES_FILE))
            except Exception as caught:
                error = caught
        rows, row_notes = group.agree(error, start)[0]
        cases, error = None, None
        try:
            if not (out / RUN_FILE).is_file():
                raise ValueError(f"{out} as rank 0 prepared it is not there for {ranks.label} on "
                                 f"{platform.node()}: under torchrun on several machines, --out "
                                 "must be a folder every machine sees (a shared filesystem)")
            cases = _read_back(plan.cases, out)
        except Exception as caught:
            error = caught
        group.agree(error)
        return _run_share(config, run_config, plan, cases, rows, row_notes, ranks, group, log)


def _run_share(config: BenchConfig, run_config: BenchConfig, plan: _Plan, cases: list[Case],
               rows: dict, row_notes: dict, ranks: distributed.Ranks, group: distributed.Group,
               log: Callable[[str], None]) -> BenchSummary:
    """This rank's rows, then (rank 0) the one set of outputs."""
    out, variants = Path(config.out), plan.variants
    positions = {case.name: index for index, case in enumerate(cases)}
    table = [(case.name, variant.name) for case in cases for variant in variants]
    skipped = sum(key in rows for key in table)
    todo = [(positions[case.name], variant) for variant in variants for case in cases
            if (case.name, variant.name) not in rows]
    mine = distributed.shard(todo, ranks.rank, ranks.world_size)
    log(f"{len(todo)} of {len(table)} image x method rows to run over {ranks.world_size} processes "
        f"({skipped} already in {out / RESULTS_FILE}); {len(mine)} here, on {run_config.device} "
        f"with {torch.get_num_threads()} CPU thread(s)")
    _log_batching(config, mine, log)
    random_prior = _lazy_random_prior(plan.prior, config.seed)
    if any(variant.kind != "fill" for _, variant in mine):
        _warm_up_optimiser()
    new_rows: dict[tuple[str, str], dict] = {}
    new_notes: dict[tuple[str, str], list[str]] = {}
    # With --batch, this rank batches the rows of its own share; an error here ends this
    # process, and torchrun stops the others.
    for variant, indices in _units(mine, config):
        finished = _run_unit(run_config, plan, cases, variant, indices, random_prior, log)
        for index, (row, notes, _) in finished:
            key = (cases[index].name, variant.name)
            new_rows[key] = row
            if notes:
                new_notes[key] = notes
        if any(notes for _, (_, notes, _) in finished):
            _write_notes(_rank_file(out, "notes", ranks.rank), new_notes)
        write_rows(_rank_file(out, "results", ranks.rank), new_rows)
        for _, (_, _, done) in finished:
            log(done)

    gathered = group.agree(None, (new_rows, new_notes), finishing=True)
    finished: dict[tuple[str, str], dict] = {}
    finished_notes: dict[tuple[str, str], list[str]] = dict(row_notes)
    for rank_rows, rank_notes in gathered:
        finished.update(rank_rows)
        finished_notes.update(rank_notes)
    # The table's order, as a one-process run writes it; rows of other methods or images from an
    # earlier run after them, as they were.
    merged = {key: rows.get(key, finished.get(key)) for key in table if key in rows or key in finished}
    merged.update({key: row for key, row in rows.items() if key not in merged})
    aggregates = aggregate(merged, cases, variants)
    complete = _count_done(cases, variants, merged) == len(table)
    if ranks.rank == 0:
        write_rows(out / RESULTS_FILE, merged)
        kept_notes = {key: finished_notes[key] for key in merged if key in finished_notes}
        if kept_notes:
            _write_notes(out / NOTES_FILE, kept_notes)
        _merge_rank_files(out)  # every row is in results.csv now: the rank files go
        setup = _setup(config, plan.prior, plan.checkpoint_digest, cases, variants, plan.notes)
        for (_, method), texts in kept_notes.items():
            setup["notes"] += _note_lines(method, texts)
        aggregates = _write_outputs(out, setup, cases, variants, merged)
        log(f"wrote {out / 'report.md'}, {RESULTS_FILE}, summary.json, figure.png from the rows "
            f"of {ranks.world_size} processes")
    return BenchSummary(out, len(finished), skipped, complete, aggregates)


def _lazy_random_prior(prior: Generator, seed: int) -> Callable[[], Generator]:
    """The random-init ablation's generator, made the first time a row needs it."""
    made: list[Generator] = []

    def random_prior() -> Generator:
        if not made:
            made.append(_random_generator(prior, seed))
        return made[0]
    return random_prior


def _read_notes(path: Path) -> dict[tuple[str, str], list[str]]:
    try:
        entries = json.loads(path.read_text())
        return {(entry["image"], entry["method"]): [str(note) for note in entry["notes"]]
                for entry in entries}
    except (OSError, ValueError, TypeError, KeyError):
        return {}  # missing or garbled: only the report's notes suffer


def _write_notes(path: Path, notes: dict[tuple[str, str], list[str]]) -> None:
    write_atomically(path, json.dumps([{"image": image, "method": method, "notes": texts}
                                       for (image, method), texts in notes.items()], indent=1))


# ---------------------------------------------------------------------------------------------
# CSV rows

def _csv_text(row: dict) -> dict:
    # repr keeps every digit, so numbers read back from the CSV equal the ones computed.
    return {name: "" if row.get(name) is None else repr(row[name]) if isinstance(row[name], float)
            else str(row[name]) for name in CSV_FIELDS}


def write_rows(path: Path, rows: dict[tuple[str, str], dict]) -> None:
    """The whole file, rewritten atomically after every row: a kill or a full disk leaves the
    previous complete file, never a line cut inside a column."""
    run_folder.write_rows(path, CSV_FIELDS, [_csv_text(row) for row in rows.values()])


def parse_row(text: dict) -> dict:
    row = {"image": text["image"], "method": text["method"]}
    for name in CSV_FIELDS:
        if name in row:
            continue
        value = text.get(name) or ""
        row[name] = None if value == "" else int(value) if name in INTEGER_FIELDS else float(value)
    return row


def _finished_row(text: dict) -> dict:
    if not text["psnr"]:
        raise ValueError("no scores: the row did not finish")
    return parse_row(text)


def read_rows(path: Path, repair: bool = True) -> dict[tuple[str, str], dict]:
    """Finished rows by (image, method). A line cut short by a killed run is dropped (and, with
    `repair`, the file rewritten without it) so that row simply runs again."""
    rows = run_folder.read_rows(path, CSV_FIELDS, _finished_row, repair)
    return {(row["image"], row["method"]): row for row in rows}


# ---------------------------------------------------------------------------------------------
# Aggregates, report, summary, figure

def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    if any(math.isinf(v) for v in values):
        return math.inf, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _finished_images(cases: list[Case], variants: list[Variant], rows: dict) -> list[str]:
    return [case.name for case in cases if all((case.name, v.name) in rows for v in variants)]


def aggregate(rows: dict, cases: list[Case], variants: list[Variant]) -> dict[str, dict]:
    """Per method: number of images and mean / sample std of every metric over them. Only images
    every method has finished count, so a partial run still compares methods on the same images."""
    names = _finished_images(cases, variants, rows)
    result = {}
    for variant in variants:
        done = [rows[(name, variant.name)] for name in names]
        stats = {"images": len(done)}
        for metric in METRIC_FIELDS:
            values = [row[metric] for row in done if row[metric] is not None]
            mean, std = mean_std(values)
            stats[metric] = {"mean": mean, "std": std, "max": max(values) if values else None}
        result[variant.name] = stats
    return result


def _count_done(cases: list[Case], variants: list[Variant], rows: dict) -> int:
    return sum((case.name, variant.name) in rows for case in cases for variant in variants)


def _setup(config: BenchConfig, prior: Generator, digest: str, cases: list[Case],
           variants: list[Variant], notes: list[str]) -> dict:
    resolution = prior.config.resolution
    if config.images is None:
        source = (f"{len(cases)} procedural evaluation facades (seeds {cases[0].image_seed}–"
                  f"{cases[-1].image_seed}, never used in training)")
        if resolution != procedural.IMAGE_SIZE:
            source += f", resized to {resolution}×{resolution}"
    else:
        source = f"{len(cases)} images from `{config.images}`, stretched to {resolution}×{resolution}"
    if config.vgg:
        loss = (f"MSE + VGG16 perceptual loss (relu3_3 features, weights `{config.vgg}`; weight in "
                f"each method's line) for the GAN methods; DIP uses MSE only, as in Ulyanov et al.")
    else:
        loss = ("MSE only: no VGG16 weights were given (--vgg), so the paper's perceptual term is "
                "off for every method")
    return {"config": asdict(config), "checkpoint_sha256": digest, "resolution": resolution,
            "source": source, "loss": loss, "notes": list(notes),
            "images": [{"name": c.name, "image_seed": c.image_seed, "seed": c.seed} for c in cases],
            "methods": {v.name: v.description for v in variants}}


def _format(stats: dict, digits: int, with_max: bool = False) -> str:
    mean, std = stats["mean"], stats["std"]
    if mean is None:
        return "–"
    if math.isinf(mean):
        return "inf (exact)"
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
    return text + (f" (max {stats['max']:.{digits}f})" if with_max else "")


TABLE_COLUMNS = (("PSNR (dB)", "psnr", 2), ("SSIM", "ssim", 4), ("PSNR hole", "psnr_hole", 2),
                 ("SSIM hole", "ssim_hole", 4), ("fit PSNR known", "psnr_fit_known", 2),
                 ("s / image", "seconds", 2), ("steps", "steps", 0), ("steps/s", "steps_per_second", 2))
MAX_SHOWN = ("steps",)  # with auto-stop the longest run matters as much as the mean


def _table(variants: list[Variant], aggregates: dict) -> list[str]:
    lines = ["| method | images | " + " | ".join(title for title, _, _ in TABLE_COLUMNS) + " |",
             "|---|---:|" + "---:|" * len(TABLE_COLUMNS)]
    for variant in variants:
        stats = aggregates[variant.name]
        cells = [_format(stats[key], digits, key in MAX_SHOWN) for _, key, digits in TABLE_COLUMNS]
        lines.append(f"| `{variant.name}` | {stats['images']} | " + " | ".join(cells) + " |")
    return lines


def _ordering(variants: list[Variant], aggregates: dict, key: str) -> str:
    ranked = sorted((v.name for v in variants if aggregates[v.name][key]["mean"] is not None),
                    key=lambda name: -aggregates[name][key]["mean"])
    return " > ".join(f"`{name}`" for name in ranked)


ABLATION_CLAIMS = (("paper-random-init", "pretrained weights beat a randomly initialised generator "
                                        "(random init recovers only the layout)"),
                   ("paper-frozen", "fine-tuning beats a frozen generator (frozen leaves artefacts)"),
                   ("paper-alpha-only", "channel + feature-map weights (α+β) beat channel weights "
                                       "alone (α only blurs and truncates details)"))


def _paper_comparison(task: str, variants: list[Variant], aggregates: dict) -> list[str]:
    """The paper's orderings next to this run's, so the reader sees at once whether they hold."""
    names = {v.name for v in variants}
    lines = []
    compared = [v for v in variants if (not v.ablation if task in DEGRADATION_TASKS
                                        else v.name in ("paper", "mganprior", "dip"))]
    if len(compared) >= 2:
        if task in DEGRADATION_TASKS:
            lines.append(f"The paper measures inpainting and reconstruction only; for "
                         f"{TASK_TITLES[task]} the question is whether the GAN methods beat the "
                         f"baseline `{TASK_BASELINES[task]}`.")
        elif task == "inpaint":
            lines.append("Paper, Table 2 (inpainting): `paper` > `dip` > `mganprior` on SSIM for "
                         "both datasets and on PSNR for bedrooms; on church PSNR `mganprior` edges "
                         "out `dip` (19.55 vs 19.17).")
        else:
            lines.append("Paper, Table 1 (reconstruction): `paper` > `mganprior` on PSNR and SSIM.")
        lines += ["", "This run, by mean over images:"]
        for title, key in (("PSNR", "psnr"), ("SSIM", "ssim"), ("PSNR hole", "psnr_hole"),
                           ("SSIM hole", "ssim_hole")):
            ordering = _ordering(compared, aggregates, key)
            if ordering:
                lines.append(f"- {title}: {ordering}")
        lines.append("")
    key = "psnr_hole" if task == "inpaint" else "psnr"
    names -= set(TASK_BASELINES.values())
    claims = [(name, claim) for name, claim in ABLATION_CLAIMS if name in names and "paper" in names]
    if claims:
        region = "inside the hole" if task == "inpaint" else "over the whole image"
        lines += [f"Ablations (the paper shows pictures only), by mean PSNR and SSIM {region}:"]
    for name, claim in claims:
        verdicts = []
        for metric in (key, key.replace("psnr", "ssim")):
            ours, theirs = aggregates["paper"][metric]["mean"], aggregates[name][metric]["mean"]
            if ours is not None and theirs is not None:
                verdicts.append(ours > theirs)
        verdict = ("holds" if verdicts and all(verdicts) else "does not hold" if verdicts and not any(verdicts)
                   else "mixed" if verdicts else "not measured yet")
        lines.append(f"- {claim}: {verdict} here (`paper` vs `{name}`)")
    return lines


def _report(setup: dict, cases: list[Case], variants: list[Variant], rows: dict, aggregates: dict) -> str:
    config = setup["config"]
    done = _count_done(cases, variants, rows)
    total = len(cases) * len(variants)
    images_done = len(_finished_images(cases, variants, rows))
    status = ("complete" if done == total else
              f"partial: {images_done} of {len(cases)} images done ({done} of {total} rows); the "
              f"tables cover the finished images only; rerun the same command to continue")
    mask_line = ("none (reconstruction: every pixel is known)" if config["task"] == "reconstruct" else
                 f"none (no hole). Input: {_task_input(config)}" if config["task"] in DEGRADATION_TASKS else
                 f"`{config['masks'] or 'box'}`{_box_description(config)}, "
                 + ("the same for every image" if config.get("mask_centred") else
                    f"seeded: image *i* uses mask seed {config['seed']} + *i* "
                    f"({cases[0].seed}–{cases[-1].seed})")
                 + "; saved as `masks/<image>.png`, white = hole")
    task = config["task"] + (f" ×{config['scale']}" if config["task"] == "sr" else "")
    lines = [f"# Benchmark: {task}, {len(cases)} images, {len(variants)} methods", "",
             f"Status: {status}.", "",
             "## Setup", "",
             f"- Prior: `{config['checkpoint']}` ({setup['resolution']}×{setup['resolution']}, "
             f"sha256 {setup['checkpoint_sha256'][:16]}…)",
             f"- Images: {setup['source']}; saved as `images/<image>.png`, exactly the pixels scored",
             f"- Masks: {mask_line}",
             f"- Loss: {setup['loss']}",
             f"- Seeds: run seed {config['seed']}; image *i* also starts every optimisation from seed "
             f"{config['seed']} + *i*, so methods on one image share their start",
             f"- Device: {config['device']}, {torch.get_num_threads()} CPU threads; times are wall "
             f"clock and include any load from other processes",
             "- Scores: PSNR and SSIM (11×11 Gaussian window, σ 1.5, channel mean) of the "
             "composite (known pixels from the input, hole from the method) against the ground "
             "truth, over the whole image and inside the hole only; *fit PSNR known* is the raw "
             "output on the known pixels (how well the method matches what it was given; "
             "the naive fills keep them exactly). Mean ± sample std over images."
             + (" Here there is no hole: the result (for the GAN methods the generator's image "
                "projected to agree with the input, restore's) is scored against the whole "
                "ground truth, and *fit PSNR known* is the raw output, degraded as the input was, "
                "against the input." if config["task"] in DEGRADATION_TASKS else ""), "",
             "## Results", ""]
    main = [v for v in variants if not v.ablation]
    ablations = [v for v in variants if v.ablation]
    if main:
        lines += _table(main, aggregates) + [""]
    if ablations:
        lines += ["## Ablations (variants of `paper`)", ""] + _table(ablations, aggregates) + [""]
    comparison = _paper_comparison(config["task"], variants, aggregates)
    if comparison:
        lines += ["## Against the paper's ordering", "",
                  "The paper's numbers (LSUN, 256×256 PGGAN, 100 images) are not comparable "
                  "with these; only the ordering is.", ""] + comparison + [""]
    lines += ["## Methods", ""]
    lines += [f"- `{name}`: {description}" for name, description in setup["methods"].items()]
    lines += [f"- idinvert: {IDINVERT_NOTE}", ""]
    if setup["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in dict.fromkeys(setup["notes"])] + [""]
    lines += ["## Figure", "", "![input, mask, every method, ground truth](figure.png)", "",
              f"Rows: the first {min(config['figure_images'], len(cases))} images. Columns: input "
              "(hole in gray), mask, each method's composite, ground truth.", "",
              "## Files", "",
              "- `results.csv`: one row per image × method (seeds, steps run, the auto-stop's best "
              "step, seconds, steps/s, every score, final loss)",
              "- `summary.json`: this table's numbers and the setup",
              "- `images/`, `masks/`: ground truth and holes as scored; `results/<image>/<method>.png`: composites",
              "- `run.json`: the settings a resumed run must match", ""]
    return "\n".join(lines)


def _task_input(config: dict) -> str:
    """What a degradation task gives every method, in words."""
    if config["task"] == "colorize":
        return "colorization: the input is the ground truth's BT.601 luma (one channel)"
    gray = ", in gray (its BT.601 luma)" if config.get("gray") else ""
    return (f"super-resolution ×{config['scale']}: the input is the ground truth downsampled by "
            f"{config['scale']} with the `{config.get('downsampler') or 'area'}` downsampler{gray}")


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no infinity; the report says "inf (exact)"
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    return value


def _degradation_of(config: dict) -> Degradation | None:
    return BenchConfig(**{key: value for key, value in config.items()
                          if key in ("checkpoint", "out", "task", "scale", "downsampler", "gray")}
                       ).degradation()


def _figure(out: Path, setup: dict, cases: list[Case], variants: list[Variant],
            rows: dict) -> torch.Tensor | None:
    figure_images = setup["config"]["figure_images"]
    shown = [c for c in cases[:figure_images] if all((c.name, v.name) in rows for v in variants)]
    if not shown:
        return None
    scale = max(1, math.ceil(FIGURE_PANEL_SIZE / shown[0].image.shape[-1]))

    def enlarge(picture: torch.Tensor) -> torch.Tensor:
        return F.interpolate(picture[None], scale_factor=scale, mode="nearest")[0]

    figure_rows = []
    for index, case in enumerate(shown):
        panels, labels = [], []
        degradation = _degradation_of(setup["config"])
        if degradation is not None:  # the input, enlarged (nearest) to the result's size
            seen = observe(degradation, case.image)
            seen = seen.expand(3, *seen.shape[1:]) if seen.shape[0] == 1 else seen
            panels.append(F.interpolate(seen[None], size=case.image.shape[1:], mode="nearest")[0])
            labels.append("input")
        if case.hole is not None:
            panels += [imaging.composite(case.image, torch.full_like(case.image, 0.5), case.hole),
                       case.hole.expand(3, *case.hole.shape)]
            labels += ["input", "mask"]
        for variant in variants:
            panels.append(imaging.load_image(out / "results" / case.name / f"{variant.name}.png"))
            labels.append(variant.name)
        panels.append(case.image)
        labels.append("ground truth")
        figure_rows.append(imaging.side_by_side([enlarge(p) for p in panels], labels if index == 0 else None))
    gap = torch.ones(3, 4, figure_rows[0].shape[-1])
    pieces = [figure_rows[0]]
    for row in figure_rows[1:]:
        pieces += [gap, row]
    return torch.cat(pieces, dim=1)


def _write_outputs(out: Path, setup: dict, cases: list[Case], variants: list[Variant], rows: dict) -> dict:
    aggregates = aggregate(rows, cases, variants)
    write_atomically(out / "report.md", _report(setup, cases, variants, rows, aggregates))
    summary = {**setup, "complete": _count_done(cases, variants, rows) == len(cases) * len(variants),
               "aggregates": aggregates, "idinvert": IDINVERT_NOTE}
    write_atomically(out / "summary.json",
                     json.dumps(_finite_or_none(summary), indent=2, allow_nan=False) + "\n")
    figure = _figure(out, setup, cases, variants, rows)
    if figure is not None:
        imaging.save_image(figure, out / "figure.png")
    return aggregates


# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Runs every method (and ablation variant) on every image, scores "
                          "PSNR/SSIM of the whole image and the hole, and writes report.md, "
                          "results.csv, summary.json, figure.png and the seeded masks into --out. "
                          "Rerun the same command to resume an interrupted run.")
    parser.add_argument("--checkpoint", required=True, help="the prior (.pth, .pkl, .safetensors)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="a directory of images (stretched to the prior's size)")
    source.add_argument("--procedural", type=int, metavar="N",
                        help="N procedural evaluation facades (seeds never used in training)")
    _add_task_options(parser)
    _add_method_options(parser)
    _add_run_options(parser)


def _add_task_options(parser: argparse.ArgumentParser) -> None:
    """What is asked of every method: the task and the holes."""
    parser.add_argument("--task", choices=TASKS, default="inpaint",
                        help="inpaint a hole, reconstruct whole images, super-resolve (sr) or "
                             "colorize them (default inpaint)")
    parser.add_argument("--scale", type=int, metavar="F",
                        help="--task sr: the upscaling factor (the input is F times smaller)")
    parser.add_argument("--downsampler", choices=DOWNSAMPLERS,
                        help="--task sr: how the input is made from the image (default area)")
    parser.add_argument("--gray", action="store_true", default=False,
                        help="--task sr: the low-resolution input is gray too (colorization)")
    parser.add_argument("--masks", choices=masks.MASK_KINDS,
                        help="--task inpaint: kind of seeded hole mask (default box)")
    parser.add_argument("--mask-area", type=float, help="box masks: fraction of the image covered")
    parser.add_argument("--mask-centred", action="store_true",
                        help="box masks: centred on the image (the demo's box) instead of seeded")


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    """The rows of the table and how each method runs."""
    parser.add_argument("--methods", type=cli.names, default=METHODS,
                        help=f"comma-separated, from {','.join(ALL_METHODS)} (default "
                             f"{','.join(METHODS)}; for sr and colorize the fills become "
                             f"their baseline, {' and '.join(TASK_BASELINES.values())})")
    parser.add_argument("--ablations", "--ablation", type=cli.names, default=(),
                        help=f"comma-separated variants of `paper`: {','.join(ABLATIONS)} "
                             "(default none)")
    parser.add_argument("--codes", type=cli.numbers, default=(),
                        help="N sweep of `paper`, e.g. 1,10,30 (default none)")
    parser.add_argument("--splits", type=cli.numbers, default=(),
                        help="k sweep of `paper`, e.g. 2,4,6 (default none)")
    parser.add_argument("--stop", choices=STOP_MODES, default="auto",
                        help="GAN methods: auto-stop with --steps as the maximum, or exactly "
                             "--steps steps (fixed: the paper's protocol) (default auto)")
    parser.add_argument("--steps", type=int, help="steps of every optimising method: the maximum "
                                                  "with --stop auto (default: each method's, 3000)")
    parser.add_argument("--dip-steps", type=int, help="steps of DIP only (default --steps)")
    cli.add_freeze_option(parser)
    parser.add_argument("--seed", type=int, default=0,
                        help="image i uses seed + i for mask and start")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: each method's own")
    parser.add_argument("--vgg", help="VGG16 weights for the perceptual loss; without: MSE only")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The machine, the output folder and what is written there."""
    parser.add_argument("--threads", type=int, help="CPU threads (default torch's; 1 is often "
                                                  "fastest on a busy machine)")
    parser.add_argument("--batch", type=int, default=1, metavar="B",
                        help="optimise a GAN method's rows of up to B images together (one "
                             "inpaint_batch, or restore_batch for --task sr / colorize, as many at "
                             "once as memory holds): every score is --batch 1's, and a row's "
                             "seconds is its share of its batch's time. DIP and the fills run one "
                             "at a time (default 1)")
    parser.add_argument("--figure-images", type=int, default=4,
                        help="images shown in figure.png (default 4)")
    parser.add_argument("--log-every", type=int, default=100,
                        help="progress line every this many steps (default 100)")
    parser.add_argument("--out", required=True, help="output directory (reused to resume)")
    cli.add_device_option(parser)


def run_command(args: argparse.Namespace) -> None:
    config = cli.config_from_args(BenchConfig, args, procedural=args.procedural or 0)
    try:
        run_bench(config, lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        where = f"{args.out}/{RESULTS_FILE}"
        if "WORLD_SIZE" in os.environ:  # under torchrun, rows since the start are in ranks/
            where += f" and {args.out}/{RANKS_FOLDER}/"
        print(f"interrupted: finished rows are in {where}; rerun the same command (with any "
              f"number of processes) to continue", file=sys.stderr)
        raise SystemExit(130) from None
