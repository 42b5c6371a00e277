"""Speed of the optimisation loop, measured side by side: `python -m ganprior_core bench-speed`.

Two implementations of the same maths (METHOD.md eqs. 5-8, 12) run the same optimisation:

(a) `ReferenceInpainting`, kept here as the yardstick: written the straightforward way, as
    mGANprior's code does it: fp32, one G1 call per latent code in a Python loop, nearest
    upsampling materialised before each 3x3 conv, per-parameter Adam, the loss read back to the
    host every step;
    `ReferenceStyleGAN2Inpainting` is the same for a StyleGAN2 prior (the method of
    families/): fp32, one G1 call per code in a Python loop, per-parameter Adam, a host
    sync every step, no channels_last, no compilation;
(b) the project's `inpaint` with its default settings: precision auto (bf16 autocast where
    the CPU or GPU has native bf16, else fp32), channels_last,
    batched G1, transposed-conv upsampling, fused Adam, no host sync inside the loop;
(c) with `--compile`: (b) with `compile=True`, whose first step includes the compilation;
(e) with `--eager`: (b) with `compile=False`, never compiled (what compile="auto" chooses for
    small runs);
for configurations that fine-tune the whole generator (`paper`), whose default run freezes the
codes and G1 after `OptimizerConfig.freeze_g1_at` steps:
(f) (b)'s steps after that freeze (fusion, G2 and the loss only);
(p) (b) never frozen (`freeze_g1_at=None`, the paper's per-step computation), compiled or not as
    "auto" decides for such a run.
(b), (f) and (p) compile as "auto" decides for a default, auto-stopped run, each worker with an
empty compiler cache (a cold compilation, as a new process pays it). From them and the
steps auto-stop takes (AUTO_STOP_MEAN_STEPS) the report projects the seconds of a whole default
run and of one never frozen, set-up and compilation included.

Each variant runs in a subprocess of its own, so the peak memory reported is its own, and the
variants alternate in rounds so that load from other processes on a shared machine hits both.
Convolution FLOPs per step are counted with `FlopCounterMode` on the meta device (shapes only)
and set against the machine's conv throughput, measured in the same run.

`--time-to-quality` inpaints a procedural evaluation facade with the bundled 64x64 prior and
reports the steps and seconds until the PSNR gets within 0.5 dB of the final (3000-step) PSNR,
in bf16 and fp32 (the PSNR difference between them is the precision check).

`--batched N` fills N procedural facades with each bundled prior (`--families`) one after
another (`inpaint` per image) and as one batched run (`inpaint_batch`, method/batched.py), in
alternating rounds, and reports images per second of each, their ratio and the largest
difference between the two runs' images (0: the batch equals the sequential runs bit for bit).
The fills are short fixed runs (`--batched-steps`, half of them after the G1 freeze), so the
figures are for the mix of full and late steps such a run has. With `--cases` (or `--quick`) the
fills are of those cases' configurations instead (e.g. `--cases paper`: the paper's 256x256
PGGAN with its VGG16 loss, random weights and random images).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .. import OptimizerConfig, Progress, imaging, inpaint, inpaint_batch, metrics, preset
from ..families import family_of
from ..files import write_atomically
from ..method import compilation
from ..method.auto_stop import TYPICAL_AUTO_STOP_STEPS
from ..method.config import VECTORIZE_CHOICES, g1_freeze_step
from ..method.losses import LossWeights, MaskedReconstructionLoss
from ..method.multi_latent import MultiLatentConfig, MultiLatentModel
from ..method.perceptual import DEFAULT_DEPTH, VGG16Features
from ..networks.pggan import LEAKY_SLOPE, ConvLayer, PGGANConfig, PGGANGenerator, pixel_norm
from ..networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from . import masks, procedural

try:
    import resource
except ImportError:  # Windows: peak memory of CPU runs is then reported as unknown
    resource = None

# Shape of the bundled prior (facades64.safetensors); used only when the file is not there,
# since its weights do not matter for speed.
BUNDLED_PRIOR_SHAPE = PGGANConfig(64, (128, 128, 64, 32, 16), latent_dim=128)
QUALITY_MARGIN_DB = 0.5
REFERENCE = "reference"
PROJECT = "project"
PROJECT_COMPILED = "project+compile"
PROJECT_EAGER = "project-eager"
PROJECT_FROZEN = "project-frozen"
PROJECT_NEVER_FROZEN = "project-never-frozen"
VARIANT_LABELS = {REFERENCE: "(a) reference, fp32 per-code loop",
                  PROJECT: "(b) project inpaint              ",
                  PROJECT_COMPILED: "(c) (b) with compile=True        ",
                  PROJECT_EAGER: "(e) (b) with compile=False       ",
                  PROJECT_FROZEN: "(f) (b) after the G1 freeze      ",
                  PROJECT_NEVER_FROZEN: "(p) (b) never frozen             "}
VARIANT_COMPILE = {PROJECT: OptimizerConfig.compile, PROJECT_COMPILED: True, PROJECT_EAGER: False,
                   PROJECT_FROZEN: OptimizerConfig.compile, PROJECT_NEVER_FROZEN: OptimizerConfig.compile}
# When the timed variants freeze G1 (steps before it; None: never). (f) freezes after one step, so
# its two warm-up steps compile both graphs, and the timed steps are all after the freeze.
VARIANT_FREEZE = {PROJECT_FROZEN: 1}
# What the "auto" compile decision of each variant assumes about the run's freeze.
VARIANT_RUN_FREEZE = {PROJECT_NEVER_FROZEN: None}
# Mean steps of default (auto-stopped) `paper` runs with the default freeze and never frozen,
# measured with the bundled 64x64 PGGAN prior on held-out facades with box and stroke holes:
# frozen, with auto-stop's 600-step cap, 144 runs (docs/trustworthy_fill.md); never frozen,
# before the cap (docs/late_phase.md), which the cap can only shorten. Auto-stop's rule is in
# fractions of the resolution, so they stand for every resolution here, untested beyond 64x64.
AUTO_STOP_MEAN_STEPS = {"frozen": 538, "never frozen": 476}


# ---------------------------------------------------------------------------------------------
# (a) the reference implementation

def _reference_layer(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One generator layer as the official code writes it (upsample, then conv)."""
    if isinstance(layer, ConvLayer) and layer.upsample:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.conv2d(x, layer.conv.weight * layer.conv.scale, layer.conv.bias, padding=1)
        return pixel_norm(F.leaky_relu(x, LEAKY_SLOPE))
    return layer(x)


class ReferenceInpainting:
    """The optimisation of `inpaint`, written without any speed work (variant (a))."""

    def __init__(self, prior: PGGANGenerator, image: torch.Tensor, hole_mask: torch.Tensor,
                 model_config: MultiLatentConfig, optimizer_config: OptimizerConfig, seed: int,
                 perceptual: VGG16Features | None, device: str | torch.device = "cpu") -> None:
        device = torch.device(device)
        self.config = model_config
        self.generator = copy.deepcopy(prior).to(device).requires_grad_(False)
        layers = list(self.generator.layers)
        finetuned = {"all": [*layers, self.generator.to_rgb],
                     "g2": [*layers[model_config.split_layer:], self.generator.to_rgb],
                     "none": []}[model_config.finetune]
        for module in finetuned:
            module.requires_grad_(True)

        # Same initial values as MultiLatentModel, so both variants start from one point.
        codes = model_config.num_codes
        noise = torch.Generator().manual_seed(seed)
        self.latents = torch.randn(codes, prior.config.latent_dim, generator=noise).to(device)
        self.latents.requires_grad_(True)
        channels = prior.config.feature_shape(model_config.split_layer)[0]
        self._set_up_fit(image, hole_mask, model_config, optimizer_config, perceptual, channels,
                         [self.latents], [p for m in finetuned for p in m.parameters()], device)

    def _set_up_fit(self, image: torch.Tensor, hole_mask: torch.Tensor, model_config: MultiLatentConfig,
                    optimizer_config: OptimizerConfig, perceptual: VGG16Features | None, channels: int,
                    latent_parameters: list[torch.Tensor], generator_parameters: list[torch.Tensor],
                    device: torch.device) -> None:
        """What both families' references share: alpha, beta, the masked loss, Adam, the schedule."""
        codes = model_config.num_codes
        self.alpha = torch.ones(codes, channels, device=device, requires_grad=model_config.use_alpha)
        self.beta = torch.full((codes,), 1.0 / codes, device=device,
                               requires_grad=model_config.use_beta)
        self.known = (1 - imaging.hole_pixels(hole_mask.to(device)).float())[None, None]
        self.target = imaging.to_signed_range(image.to(device)[None]) * self.known
        self.mse_weight = optimizer_config.mse_weight
        self.perceptual_weight = optimizer_config.perceptual_weight if perceptual is not None else 0.0
        self.perceptual = perceptual.to(device) if self.perceptual_weight > 0 else None
        if self.perceptual is not None:
            with torch.no_grad():
                self.target_features = self.perceptual(self.target)
        groups = [(latent_parameters, optimizer_config.lr_latent),
                  ([self.alpha], optimizer_config.lr_alpha),
                  ([self.beta], optimizer_config.lr_beta),
                  (generator_parameters, optimizer_config.lr_generator)]
        self.optimizer = torch.optim.Adam(
            [{"params": params, "lr": lr} for params, lr in groups
             if lr > 0 and params and params[0].requires_grad],
            betas=(0.9, 0.999), foreach=False)
        total = optimizer_config.steps
        self.scheduler = (torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
            if optimizer_config.schedule == "cosine" else None)

    def image(self) -> torch.Tensor:
        split = self.config.split_layer
        layers = self.generator.layers
        fused = 0
        for n in range(self.config.num_codes):
            x = self.latents[n:n + 1]
            for layer in layers[:split]:
                x = _reference_layer(layer, x)
            fused = fused + self.beta[n] * self.alpha[n][None, :, None, None] * x
        x = fused
        for layer in layers[split:]:
            x = _reference_layer(layer, x)
        return self.generator.to_rgb(x)

    def loss(self, image: torch.Tensor) -> torch.Tensor:
        masked = image * self.known
        loss = self.mse_weight * ((masked - self.target) ** 2).mean()
        if self.perceptual is not None:
            difference = self.perceptual(masked) - self.target_features
            loss = loss + self.perceptual_weight * difference.abs().mean()
        return loss

    def step(self) -> float:
        loss = self.loss(self.image())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.item()


class ReferenceStyleGAN2Inpainting(ReferenceInpainting):
    """Variant (a) for a StyleGAN2 prior: the design of families/ written plainly. Codes are
    w+ for G1's slots (mapping of seeded z, psi 1), one shared w+ drives G2 (the codes' mean w),
    features weighted by beta * alpha and the skip image by beta, constant noise."""

    def __init__(self, prior: StyleGAN2Generator, image: torch.Tensor, hole_mask: torch.Tensor,
                 model_config: MultiLatentConfig, optimizer_config: OptimizerConfig, seed: int,
                 perceptual: VGG16Features | None, device: str | torch.device = "cpu") -> None:
        device = torch.device(device)
        self.config = model_config
        self.generator = copy.deepcopy(prior).to(device).requires_grad_(False)
        config, split = prior.config, model_config.split_layer
        self.g1_slots, self.g2_slots = config.split_ws_slots(split)
        synthesis = self.generator.synthesis
        layers = {"all": range(0, config.num_layers), "g2": range(split, config.num_layers),
                  "none": range(0)}[model_config.finetune]
        finetuned = [synthesis.b4.const] if 0 in layers else []
        for index in layers:
            block = getattr(synthesis, f"b{4 * 2 ** ((index + 1) // 2)}")
            for module in ([block.conv0] if index % 2 else [block.conv1, block.torgb]):
                finetuned += [p for name, p in module.named_parameters() if name != "noise_strength"]
        for parameter in finetuned:
            parameter.requires_grad_(True)

        codes = model_config.num_codes
        z = torch.randn(codes, config.z_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ws = self.generator.mapping(z.to(device))
        self.latents = ws[:, self.g1_slots.start:self.g1_slots.stop].clone().requires_grad_(True)
        self.g2_styles = ws[:, 0].mean(0)[None, None].repeat(1, len(self.g2_slots), 1)
        self.g2_styles.requires_grad_(len(self.g2_slots) > 0)
        latent_parameters = [self.latents] + ([self.g2_styles] if self.g2_styles.requires_grad else [])
        self._set_up_fit(image, hole_mask, model_config, optimizer_config, perceptual,
                         config.feature_shape(split)[0], latent_parameters, finetuned, device)

    def _ws(self, part: torch.Tensor, slots: range) -> torch.Tensor:
        num_ws, w_dim = self.generator.config.num_ws, self.generator.config.w_dim
        ws = torch.zeros(1, num_ws, w_dim, device=part.device)
        return torch.cat([ws[:, :slots.start], part, ws[:, slots.stop:]], dim=1)

    def image(self) -> torch.Tensor:
        split = self.config.split_layer
        fused_x, fused_img = 0, 0
        for n in range(self.config.num_codes):
            x, img = self.generator.features(self._ws(self.latents[n:n + 1], self.g1_slots), split)
            fused_x = fused_x + self.beta[n] * self.alpha[n][None, :, None, None] * x
            fused_img = fused_img + self.beta[n] * img
        return self.generator.synthesize(fused_x, fused_img, self._ws(self.g2_styles, self.g2_slots),
                                         split)


# Variant (a), the method written plainly, for each family.
REFERENCES = {"pggan": ReferenceInpainting, "stylegan2": ReferenceStyleGAN2Inpainting}


def new_generator(config: PGGANConfig | StyleGAN2Config) -> PGGANGenerator | StyleGAN2Generator:
    """A generator with random weights for either family's config."""
    return family_of(config).generator_type(config)


def reference_for(prior, *args, **kwargs) -> ReferenceInpainting:
    """Variant (a) for the prior's family."""
    return REFERENCES[family_of(prior).name](prior, *args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Cases and their workloads

@dataclass(frozen=True)
class SpeedCase:
    name: str
    generator: PGGANConfig | StyleGAN2Config
    preset: str
    perceptual_depth: int = DEFAULT_DEPTH
    num_codes: int | None = None  # None: the preset's
    reference_steps: int = 1  # timed steps per round, after one warm-up step
    project_steps: int = 2

    def configs(self) -> tuple[MultiLatentConfig, OptimizerConfig]:
        model, optimizer = preset(self.preset, self.generator)
        if self.num_codes is not None:
            model = replace(model, num_codes=self.num_codes)
        # Timed steps are the same steps the reference takes: every known pixel in the loss.
        return model, replace(optimizer, stop="fixed")

    def describe(self) -> str:
        model, _ = self.configs()
        weights = "+".join(name for name, used in (("alpha", model.use_alpha), ("beta", model.use_beta))
                           if used) or "no weights"
        resolution = self.generator.resolution
        family = family_of(self.generator).label
        return (f"{self.name}: {resolution}x{resolution} {family} {list(self.generator.channels)}, "
                f"N={model.num_codes}, k={model.split_layer}, {weights}, fine-tune {model.finetune}, "
                f"MSE + VGG16 features[:{self.perceptual_depth}] at {resolution}x{resolution}")


def bundled_prior_shape() -> tuple[PGGANConfig, str]:
    """The bundled prior's architecture (from its file's metadata when the file is there)."""
    from ..checkpoints import load_generator
    from ..priors import bundled_prior_path
    try:
        path = bundled_prior_path()
    except FileNotFoundError:
        return BUNDLED_PRIOR_SHAPE, "bundled prior file not present: random weights in its default shape"
    return load_generator(path).config, f"shape read from {path.name}"


def full_cases() -> tuple[list[SpeedCase], list[str]]:
    paper_generator = PGGANConfig.official(256)
    bundled, note = bundled_prior_shape()
    cases = [SpeedCase("paper", paper_generator, "paper"),
             SpeedCase("mganprior", paper_generator, "mganprior", reference_steps=2, project_steps=4),
             SpeedCase("bundled-paper", bundled, "paper", reference_steps=10, project_steps=20),
             SpeedCase("bundled-mganprior", bundled, "mganprior", reference_steps=10, project_steps=20)]
    return cases, [f"bundled-*: {note}"]


def stylegan2_cases() -> list[SpeedCase]:
    """The method on a StyleGAN2 prior: NVIDIA's 256x256 channel plan, random weights."""
    return [SpeedCase("stylegan2-paper", StyleGAN2Config.official(256), "paper")]


def quick_cases() -> list[SpeedCase]:
    tiny = PGGANConfig(16, (32, 32, 16), latent_dim=32)
    return [SpeedCase("tiny-paper", tiny, "paper", perceptual_depth=9, num_codes=4,
                      reference_steps=2, project_steps=2)]


def build_workload(case: SpeedCase, device: str | torch.device = "cpu", weights_seed: int = 0):
    """Prior, perceptual network (random weights: speed does not depend on them), image, hole."""
    torch.manual_seed(weights_seed)
    prior = new_generator(case.generator).eval()
    perceptual = VGG16Features(case.perceptual_depth).to(device)
    resolution = case.generator.resolution
    image = torch.rand(3, resolution, resolution, generator=torch.Generator().manual_seed(weights_seed))
    return prior, perceptual, image, masks.box_mask(resolution)


def wants_compile_for(case: SpeedCase, steps: int, device: str | None = None,
                      freeze_at: int | None = None) -> bool:
    """What compile="auto" chooses for a run of this case with `steps` steps (G1 frozen after
    `freeze_at` of them; None: never)."""
    model_config, optimizer_config = case.configs()
    with torch.device("meta"):
        model = MultiLatentModel(new_generator(case.generator), model_config, 0, "meta")
        perceptual = VGG16Features(case.perceptual_depth) if optimizer_config.perceptual_weight > 0 else None
    return compilation.wants_compile("auto", model, perceptual, steps, "cpu" if device is None else device,
                                     freeze_at)


def freezes_g1(case: SpeedCase) -> bool:
    """Whether this case's default run has a late phase (it fine-tunes the whole generator)."""
    return g1_freeze_step(*case.configs()) is not None


def machine_description(device: str | torch.device = "cpu") -> str:
    """What the timings ran on: ratios between variants differ by machine kind (AMX, bf16)."""
    device = torch.device(device)
    threads = torch.get_num_threads()
    if device.type == "cuda":
        return (f"GPU {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, "
                f"torch {torch.__version__}, {threads} CPU threads")
    model, flags = cpu_model_and_flags()
    return (f"CPU {model} ({platform.machine()}), AMX {'yes' if {'amx_bf16', 'amx_tile'} & flags else 'no'}, "
            f"AVX-512 bf16 {'yes' if 'avx512_bf16' in flags else 'no'}, {threads} threads, "
            f"torch {torch.__version__}")


def cpu_model_and_flags(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """The CPU's model name and feature flags, from /proc/cpuinfo (Linux) or `platform`."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and not model:
            model = value.strip()
        elif name in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or "unknown", flags


def step_flops(case: SpeedCase, variant: str) -> int:
    """Conv (and matmul) FLOPs of one optimisation step, counted on the meta device."""
    model_config, optimizer_config = case.configs()
    resolution = case.generator.resolution
    with torch.device("meta"):
        prior = new_generator(case.generator)
        perceptual = VGG16Features(case.perceptual_depth)
        image = torch.zeros(3, resolution, resolution)
        known = torch.ones(1, 1, resolution, resolution)
    if variant == REFERENCE:
        reference = reference_for(prior, image, 1 - known[0, 0], model_config, optimizer_config, 0,
                                  perceptual, "meta")
        with FlopCounterMode(display=False) as counter:
            reference.loss(reference.image()).backward()
        return counter.get_total_flops()
    model = MultiLatentModel(prior, model_config, 0, "meta")
    if variant == PROJECT_FROZEN:
        model.freeze_g1()  # once per run, not per step
    loss_fn = MaskedReconstructionLoss(imaging.to_signed_range(image[None]), known,
                                       LossWeights(optimizer_config.mse_weight, optimizer_config.perceptual_weight),
                                       perceptual)
    with FlopCounterMode(display=False) as counter:
        loss_fn(model()).backward()
    return counter.get_total_flops()


# ---------------------------------------------------------------------------------------------
# Measuring one variant (runs inside a worker subprocess)

def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def measure_variant(case: SpeedCase, variant: str, timed_steps: int, device: str = "cpu",
                    warmup_steps: int = 1, seed: int = 0) -> dict:
    """Steps/s, the step-0 loss and the peak memory growth of one variant on one case.

    The warm-up steps' seconds include setting up (and, where compiled, compiling; for
    PROJECT_FROZEN both graphs, before and after the freeze).
    """
    device = torch.device(device)
    prior, perceptual, image, hole = build_workload(case, device)
    model_config, optimizer_config = case.configs()
    freeze_at = VARIANT_FREEZE.get(variant)
    if freeze_at is not None:
        warmup_steps = max(warmup_steps, freeze_at + 1)
    total = warmup_steps + timed_steps
    # (b), (f) and (p) keep the default compile setting but decide as for a default run: "auto"
    # chooses by an auto-stopped run's length and freeze, not by the few steps timed here.
    compile_setting = VARIANT_COMPILE.get(variant, False)
    if compile_setting == "auto":
        run_steps = min(optimizer_config.steps, TYPICAL_AUTO_STOP_STEPS)
        compile_setting = wants_compile_for(case, run_steps, device.type,
                                            VARIANT_RUN_FREEZE.get(variant, optimizer_config.freeze_g1_at))
    optimizer_config = replace(optimizer_config, steps=total, preview_every=total,
                               compile=compile_setting, freeze_g1_at=freeze_at)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    memory_before = _peak_memory_bytes(device)

    started = time.perf_counter()
    notes: list[str] = []
    if variant == REFERENCE:
        reference = reference_for(prior, image, hole, model_config, optimizer_config, seed,
                                  perceptual, device)
        losses = [reference.step() for _ in range(warmup_steps)]
        warmed_up = time.perf_counter()
        losses += [reference.step() for _ in range(timed_steps)]
        finished = time.perf_counter()
    else:
        stamps: dict[int, float] = {}

        def stamp(progress: Progress) -> None:
            if progress.step in (warmup_steps, total):
                _synchronize(device)
                stamps[progress.step] = time.perf_counter()
        result = inpaint(prior, image, hole, model_config, optimizer_config, seed, device,
                         perceptual, stamp)
        losses = result.loss_history
        notes = result.notes
        warmed_up, finished = stamps[warmup_steps], stamps[total]

    memory_after = _peak_memory_bytes(device)
    return {"variant": variant, "steps": timed_steps, "seconds": finished - warmed_up,
            "warmup_seconds": warmed_up - started, "losses": losses, "notes": notes,
            "compile": compile_setting if variant != REFERENCE else False,
            "peak_memory_growth": (None if memory_before is None
                                   else memory_after - (0 if device.type == "cuda" else memory_before))}


def _run_worker(case: SpeedCase, variant: str, timed_steps: int, device: str, threads: int) -> dict:
    job = {"case": {**asdict(case), "generator": case.generator.to_dict()},
           "variant": variant, "timed_steps": timed_steps, "device": device, "threads": threads}
    package_root = str(Path(__file__).resolve().parents[2])  # holds this checkout's ganprior_core
    # An empty compiler cache per worker: every compiled variant's first steps pay a cold
    # compilation, as a new process on a new machine does, not one warmed by the variant before.
    with tempfile.TemporaryDirectory(prefix="ganprior-speed-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache,
               "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        completed = subprocess.run([sys.executable, "-m", "ganprior_core.lab.speed", "worker", json.dumps(job)],
                                   capture_output=True, text=True, env=env, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"speed worker for {case.name}/{variant} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _worker_main(job_text: str) -> None:
    job = json.loads(job_text)
    case_fields = job["case"]
    fields = case_fields["generator"]
    config_type = StyleGAN2Config if "z_dim" in fields else PGGANConfig
    case = SpeedCase(**{**case_fields, "generator": config_type.from_dict(fields)})
    torch.set_num_threads(job["threads"])
    print(json.dumps(measure_variant(case, job["variant"], job["timed_steps"], job["device"])))


# ---------------------------------------------------------------------------------------------
# The machine's own conv throughput

def measure_conv_throughput(device: str | torch.device = "cpu", batch: int = 8, channels: int = 512,
                            size: int = 32, repeats: int = 3) -> dict[str, float]:
    """FLOP/s of a 3x3 conv like the paper's G1 layers, fp32 and bf16 autocast, channels_last."""
    device = torch.device(device)
    x = torch.randn(batch, channels, size, size, device=device).to(memory_format=torch.channels_last)
    weight = torch.randn(channels, channels, 3, 3, device=device).to(memory_format=torch.channels_last)
    flops = 2 * batch * channels * channels * 9 * size * size
    best = {"fp32": math.inf, "bf16": math.inf}
    for _ in range(repeats + 1):  # the first round is warm-up
        for precision in best:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                 enabled=precision == "bf16"):
                _synchronize(device)
                started = time.perf_counter()
                F.conv2d(x, weight, padding=1)
                _synchronize(device)
                elapsed = time.perf_counter() - started
            if _ > 0:
                best[precision] = min(best[precision], elapsed)
    return {precision: flops / seconds for precision, seconds in best.items()}


# ---------------------------------------------------------------------------------------------
# The benchmark

@dataclass
class VariantReport:
    variant: str
    steps_per_second: float
    step_seconds: float
    warmup_seconds: float  # the first step with set-up (and compilation), mean over rounds
    first_loss: float
    peak_memory_growth: int | None  # bytes above the worker's peak before the optimisation
    flops_per_step: int  # conv FLOPs this variant executes per step
    effective_flops_per_second: float  # the reference's FLOPs per step (the maths) x steps/s
    executed_flops_per_second: float
    compile: bool = False  # whether this variant ran with compile=True (for (b): what "auto" chose)
    notes: list[str] = field(default_factory=list)


@dataclass
class RunProjection:
    """Seconds of one whole auto-stopped run: set-up (and compilation) + steps x seconds per step,
    for the default run (steps before and after the freeze) and for one never frozen."""
    run: str  # e.g. "paper run at 256x256"
    freeze_at: int
    steps_before_freeze: int
    steps_after_freeze: int
    step_seconds_before: float  # (b)
    step_seconds_after: float  # (f)
    set_up_seconds: float  # (f)'s two warm-up steps less one step of each phase
    never_frozen_steps: int
    never_frozen_step_seconds: float  # (p)
    never_frozen_set_up_seconds: float  # (p)'s warm-up step less one step
    compiled: bool
    never_frozen_compiled: bool

    @property
    def seconds(self) -> float:
        return (self.set_up_seconds + self.steps_before_freeze * self.step_seconds_before
                + self.steps_after_freeze * self.step_seconds_after)

    @property
    def never_frozen_seconds(self) -> float:
        return self.never_frozen_set_up_seconds + self.never_frozen_steps * self.never_frozen_step_seconds


def project_run(case: SpeedCase, variants: dict[str, VariantReport],
                mean_steps: dict[str, float] | None = None) -> RunProjection:
    """The projection from (b), (f) and (p) and the auto-stopped runs' mean steps."""
    mean_steps = AUTO_STOP_MEAN_STEPS if mean_steps is None else mean_steps
    before, after, never = (variants[name] for name in (PROJECT, PROJECT_FROZEN, PROJECT_NEVER_FROZEN))
    steps = round(mean_steps["frozen"])
    freeze_at = case.configs()[1].freeze_g1_at
    resolution = case.generator.resolution
    return RunProjection(
        run=f"{case.preset} run at {resolution}x{resolution}", freeze_at=freeze_at,
        steps_before_freeze=min(freeze_at, steps), steps_after_freeze=max(steps - freeze_at, 0),
        step_seconds_before=before.step_seconds, step_seconds_after=after.step_seconds,
        set_up_seconds=max(after.warmup_seconds - before.step_seconds - after.step_seconds, 0.0),
        never_frozen_steps=round(mean_steps["never frozen"]),
        never_frozen_step_seconds=never.step_seconds,
        never_frozen_set_up_seconds=max(never.warmup_seconds - never.step_seconds, 0.0),
        compiled=after.compile, never_frozen_compiled=never.compile)


def format_projection(projection: RunProjection) -> list[str]:
    def set_up(seconds: float, compiled: bool) -> str:
        return f"{seconds:.1f} s set-up" + (" and compilation" if compiled else ", eager")
    return [f"  default {projection.run}: projected {projection.seconds:.0f} s "
            f"({projection.steps_before_freeze} steps x {projection.step_seconds_before:.3f} s, then "
            f"codes and G1 frozen: {projection.steps_after_freeze} steps x "
            f"{projection.step_seconds_after:.3f} s; {set_up(projection.set_up_seconds, projection.compiled)})",
            f"  never frozen {projection.run} (--freeze-g1-at never): projected "
            f"{projection.never_frozen_seconds:.0f} s ({projection.never_frozen_steps} steps x "
            f"{projection.never_frozen_step_seconds:.3f} s; "
            f"{set_up(projection.never_frozen_set_up_seconds, projection.never_frozen_compiled)})",
            f"  (steps: the mean of auto-stopped runs, bundled prior, held-out facades; freeze after "
            f"{projection.freeze_at} steps)"]


@dataclass
class CaseReport:
    name: str
    description: str
    variants: list[VariantReport]  # the reference first
    projection: RunProjection | None = None  # cases with a late phase

    def speedup(self, variant: VariantReport) -> float:
        return variant.steps_per_second / self.variants[0].steps_per_second


@dataclass
class SpeedReport:
    device: str
    machine: str  # CPU model and flags (AMX, AVX-512 bf16) or GPU name, threads, torch version
    threads: int
    conv_flops_per_second: dict[str, float]
    cases: list[CaseReport]
    load_before: tuple[float, float, float] | None
    load_after: tuple[float, float, float] | None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def _variant_report(case: SpeedCase, variant: str, runs: list[dict], reference_flops: int) -> VariantReport:
    steps = sum(run["steps"] for run in runs)
    seconds = sum(run["seconds"] for run in runs)
    memory = [run["peak_memory_growth"] for run in runs]
    flops = step_flops(case, variant)
    rate = steps / seconds
    return VariantReport(variant=variant, steps_per_second=rate, step_seconds=seconds / steps,
                         warmup_seconds=sum(run["warmup_seconds"] for run in runs) / len(runs),
                         first_loss=runs[0]["losses"][0],
                         peak_memory_growth=None if None in memory else max(memory),
                         flops_per_step=flops, effective_flops_per_second=reference_flops * rate,
                         executed_flops_per_second=flops * rate,
                         compile=bool(runs[0].get("compile", False)),
                         notes=sorted({note for run in runs for note in run.get("notes", [])}))


def selected_cases(quick: bool, case_names: list[str] | None) -> tuple[list[SpeedCase], list[str]]:
    """The cases a command asks for (all of them, or the quick one) and notes on how they were built."""
    notes: list[str] = []
    if quick:
        cases = quick_cases()
    else:
        cases, notes = full_cases()
        cases += stylegan2_cases()
    if case_names:
        unknown = sorted(set(case_names) - {case.name for case in cases})
        if unknown:
            raise ValueError(f"unknown case(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(case.name for case in cases)}")
        cases = [case for case in cases if case.name in case_names]
    return cases, notes


def run_benchmark(quick: bool = False, rounds: int | None = None, device: str = "cpu",
                  case_names: list[str] | None = None, threads: int | None = None,
                  compiled: bool = False, log: Callable[[str], None] = print,
                  eager: bool = False) -> SpeedReport:
    started = time.perf_counter()
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    cases, notes = selected_cases(quick, case_names)
    rounds = rounds or (1 if quick else 2)
    load_before = _load_average()
    throughput = (measure_conv_throughput(device, batch=2, channels=64, size=16) if quick
                  else measure_conv_throughput(device))
    log(f"conv throughput: fp32 {throughput['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {throughput['bf16'] / 1e9:.0f} GFLOP/s")
    variants = ([REFERENCE, PROJECT] + ([PROJECT_EAGER] if eager else [])
                + ([PROJECT_COMPILED] if compiled else []))
    reports = []
    for case in cases:
        log(case.describe())
        case_variants = variants + ([PROJECT_FROZEN, PROJECT_NEVER_FROZEN] if freezes_g1(case) else [])
        runs: dict[str, list[dict]] = {variant: [] for variant in case_variants}
        for round_index in range(rounds):
            for variant in case_variants:
                steps = case.reference_steps if variant == REFERENCE else case.project_steps
                run = _run_worker(case, variant, steps, device, threads)
                runs[variant].append(run)
                log(f"  round {round_index + 1}/{rounds} {variant}: "
                    f"{run['steps'] / run['seconds']:.3f} steps/s, first step "
                    f"{run['warmup_seconds']:.1f} s")
        reference_flops = step_flops(case, REFERENCE)
        measured = {variant: _variant_report(case, variant, runs[variant], reference_flops)
                    for variant in case_variants}
        projection = project_run(case, measured) if freezes_g1(case) else None
        reports.append(CaseReport(case.name, case.describe(), list(measured.values()), projection))
    return SpeedReport(device=device, machine=machine_description(device), threads=threads,
                       conv_flops_per_second=throughput, cases=reports, load_before=load_before,
                       load_after=_load_average(), notes=notes,
                       seconds=time.perf_counter() - started)


def _format_bytes(count: int | None) -> str:
    return "unknown" if count is None else f"{count / 2 ** 20:.0f} MiB"


def format_report(report: SpeedReport) -> list[str]:
    peak = report.conv_flops_per_second

    def load(values: tuple[float, float, float] | None) -> str:
        return "unknown" if values is None else " ".join(f"{value:.2f}" for value in values)

    lines = [f"machine: {report.machine}",
             f"device {report.device}, {report.threads} threads",
             f"load average (1/5/15 min) before {load(report.load_before)}, "
             f"after {load(report.load_after)}",
             f"measured conv throughput (3x3 conv, channels_last): fp32 {peak['fp32'] / 1e9:.0f} "
             f"GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s"]
    for case in report.cases:
        lines += ["", case.description]
        for variant in case.variants:
            lines.append(
                f"  {VARIANT_LABELS[variant.variant]}  {variant.steps_per_second:8.3f} steps/s "
                f"({variant.step_seconds:.3f} s/step; first step with set-up "
                f"{variant.warmup_seconds:.1f} s)  peak memory "
                f"+{_format_bytes(variant.peak_memory_growth)}  step-0 loss {variant.first_loss:.5f}"
                + ("  [compiled]" if variant.compile else ""))
            lines += [f"      note: {note}" for note in variant.notes]
            lines.append(
                f"      {variant.flops_per_step / 1e9:.1f} GFLOP/step executed "
                f"({variant.executed_flops_per_second / 1e9:.0f} GFLOP/s); effective "
                f"{variant.effective_flops_per_second / 1e9:.0f} GFLOP/s = "
                f"{variant.effective_flops_per_second / peak['fp32']:.0%} of fp32 / "
                f"{variant.effective_flops_per_second / peak['bf16']:.0%} of bf16 conv throughput")
        lines.append("  speed-up over (a): " + ", ".join(
            f"{VARIANT_LABELS[variant.variant][:3]} {case.speedup(variant):.2f}x"
            for variant in case.variants[1:]))
        if case.projection is not None:
            lines += format_projection(case.projection)
    lines += [f"note: {note}" for note in report.notes]
    lines.append(f"benchmark took {report.seconds:.0f} s")
    return lines


# ---------------------------------------------------------------------------------------------
# Time to quality with the bundled prior

@dataclass
class StopOutcome:
    """One whole run: auto-stop (`steps` = steps it took) or a fixed budget."""
    stop: str
    steps: int
    seconds: float
    psnr: float


@dataclass
class QualityRun:
    precision: str
    image_seed: int
    steps: int
    seconds: float  # the whole fixed-steps inpaint() call
    final_psnr: float
    steps_to_quality: int  # first checked step whose PSNR is within the margin of final_psnr
    seconds_to_quality: float
    curve: list[tuple[int, float, float]]  # (step, seconds since the call began, PSNR)
    auto_stop: StopOutcome | None = None  # the default: auto-stop with `steps` as the maximum
    budgets: list[StopOutcome] = field(default_factory=list)  # shorter fixed runs, own schedules


def _whole_run(prior: PGGANGenerator, truth: torch.Tensor, hole: torch.Tensor, model_config,
               config: OptimizerConfig, device: str, perceptual) -> StopOutcome:
    result = inpaint(prior, truth, hole, model_config, config, seed=0, device=device,
                     perceptual=perceptual)
    return StopOutcome(config.stop, result.steps_run, result.seconds,
                       metrics.psnr(result.composite, truth))


def _psnr_recorder(truth: torch.Tensor, hole: torch.Tensor, curve: list[tuple[int, float, float]]
                   ) -> Callable[[Progress], None]:
    """A progress callback appending (step, seconds, PSNR of the composited preview) to `curve`."""
    started = time.perf_counter()

    def record(progress: Progress) -> None:
        if progress.preview is not None:
            filled = imaging.composite(truth, progress.preview.cpu(), hole)
            curve.append((progress.step, time.perf_counter() - started, metrics.psnr(filled, truth)))
    return record


def time_to_quality(prior: PGGANGenerator, steps: int = 3000, precisions: tuple[str, ...] = ("bf16", "fp32"),
                    image_seeds: list[int] | None = None, every: int = 25, device: str = "cpu",
                    perceptual: VGG16Features | None = None, budgets: tuple[int, ...] = (),
                    compare_auto_stop: bool = True,
                    log: Callable[[str], None] = print) -> list[QualityRun]:
    """Inpaint procedural evaluation facades (centred box hole, a quarter of the image): a fixed
    `steps` run with its PSNR curve, an auto-stop run with `steps` as its maximum and a fixed run
    per budget (each with its own schedule, as a user would run it)."""
    if prior.config.resolution != procedural.IMAGE_SIZE:
        raise ValueError(f"time to quality uses {procedural.IMAGE_SIZE}x{procedural.IMAGE_SIZE} "
                         f"facades; this prior is {prior.config.resolution}x{prior.config.resolution}")
    model_config, base_config = preset("paper", prior.config)
    hole = masks.box_mask(procedural.IMAGE_SIZE)
    runs = []
    for image_seed in image_seeds or procedural.evaluation_seeds(1):
        truth = procedural.facade_image(image_seed)
        for precision in precisions:
            curve: list[tuple[int, float, float]] = []
            record = _psnr_recorder(truth, hole, curve)
            config = replace(base_config, steps=steps, precision=precision, preview_every=every,
                             stop="fixed")
            result = inpaint(prior, truth, hole, model_config, config, seed=0, device=device,
                             perceptual=perceptual, callback=record)
            final = metrics.psnr(result.composite, truth)
            reached = next(point for point in curve + [(steps, result.seconds, final)]
                           if point[2] >= final - QUALITY_MARGIN_DB)
            auto = (_whole_run(prior, truth, hole, model_config, replace(config, stop="auto"),
                               device, perceptual) if compare_auto_stop else None)
            fixed_budgets = [_whole_run(prior, truth, hole, model_config, replace(config, steps=budget),
                                        device, perceptual) for budget in budgets]
            runs.append(QualityRun(precision, image_seed, steps, result.seconds, final,
                                   reached[0], reached[1], curve, auto, fixed_budgets))
            log(f"image {image_seed} {precision}: final PSNR {final:.2f} dB after {steps} steps "
                f"({result.seconds:.0f} s); within {QUALITY_MARGIN_DB} dB from step {reached[0]} "
                f"({reached[1]:.0f} s)"
                + (f"; auto-stop {auto.psnr:.2f} dB after {auto.steps} steps ({auto.seconds:.0f} s)"
                   if auto else ""))
    return runs


CURVE_STEPS = (25, 50, 100, 200, 500, 1000, 2000, 3000)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def format_quality(runs: list[QualityRun]) -> list[str]:
    lines = []
    for run in runs:
        # The PSNR is not monotonic (the fill can peak and then drift while the known pixels keep
        # improving), so the curve and its best point are shown, not only the first crossing.
        shown = [(step, psnr) for step, _, psnr in run.curve if step in CURVE_STEPS]
        best_step, _, best_psnr = max(run.curve, key=lambda point: point[2])
        lines.append(f"image {run.image_seed} {run.precision}: PSNR by step "
                     + ", ".join(f"{step}: {psnr:.2f}" for step, psnr in shown)
                     + f"; best {best_psnr:.2f} dB at step {best_step}")
    by_precision: dict[str, list[QualityRun]] = {}
    for run in runs:
        by_precision.setdefault(run.precision, []).append(run)
    for precision, group in by_precision.items():
        count = len(group)
        lines.append(
            f"{precision}: mean final PSNR {sum(r.final_psnr for r in group) / count:.2f} dB over "
            f"{count} image(s); {sum(r.seconds / r.steps for r in group) / count * 1e3:.1f} ms/step; "
            f"within {QUALITY_MARGIN_DB} dB after {sum(r.steps_to_quality for r in group) / count:.0f} "
            f"steps / {sum(r.seconds_to_quality for r in group) / count:.0f} s (mean)")
        outcomes = [("fixed", group[0].steps, [(r.steps, r.seconds, r.final_psnr) for r in group])]
        if all(r.auto_stop for r in group):
            outcomes.insert(0, ("auto-stop", group[0].steps,
                                [(r.auto_stop.steps, r.auto_stop.seconds, r.auto_stop.psnr) for r in group]))
        for index, budget in enumerate(group[0].budgets):
            outcomes.append(("fixed", budget.steps, [(r.budgets[index].steps, r.budgets[index].seconds,
                                                      r.budgets[index].psnr) for r in group]))
        for name, limit, values in outcomes:
            label = f"auto-stop (max {limit})" if name == "auto-stop" else f"fixed {limit}"
            lines.append(f"  {precision} {label:<20} PSNR {_mean(v[2] for v in values):6.2f} dB, "
                         f"steps {_mean(v[0] for v in values):6.0f} (max {max(v[0] for v in values)}), "
                         f"{_mean(v[1] for v in values):6.1f} s per image")
    if {"bf16", "fp32"} <= by_precision.keys():
        pairs = [(b.final_psnr - f.final_psnr) for b in by_precision["bf16"] for f in by_precision["fp32"]
                 if b.image_seed == f.image_seed]
        mean = sum(pairs) / len(pairs)
        # Rounding changes the optimisation's path: single images differ by about a dB either
        # way, so only the mean over many images says anything at the 0.1 dB level.
        spread = ""
        if len(pairs) > 1:
            variance = sum((d - mean) ** 2 for d in pairs) / (len(pairs) - 1)
            spread = f" +- {math.sqrt(variance / len(pairs)):.3f} (standard error)"
        lines.append(f"bf16 - fp32 final PSNR: mean {mean:+.3f}{spread} dB "
                     f"(per image: {', '.join(f'{d:+.3f}' for d in pairs)})")
    return lines


# ---------------------------------------------------------------------------------------------
# Batched against sequential fills

@dataclass
class BatchedSpeed:
    """N fills of one prior, one after another and as one batched run, timed in alternating
    rounds (seconds per round for all N)."""
    prior: str
    members: int
    steps: int
    freeze_at: int | None
    precision: str
    threads: int
    sequential_seconds: list[float]
    batched_seconds: list[float]
    max_abs_difference: float  # largest |batched - sequential| over every member's image
    same_steps: bool  # every member ran and returned the same steps
    vectorize: str = "loop"  # how the batch stepped its members (config.VECTORIZE_CHOICES)

    @staticmethod
    def _images_per_second(members: int, seconds: list[float]) -> float:
        ordered = sorted(seconds)
        return members / ordered[len(ordered) // 2]

    @property
    def sequential_images_per_second(self) -> float:
        return self._images_per_second(self.members, self.sequential_seconds)

    @property
    def batched_images_per_second(self) -> float:
        return self._images_per_second(self.members, self.batched_seconds)

    @property
    def batch_over_one_fill(self) -> float:
        """The batch's time over one sequential fill's (the issue's GPU goal: at most 2 for 8)."""
        return self.sequential_images_per_second / self.batched_images_per_second * self.members


def batched_speed(prior: torch.nn.Module, images: list[torch.Tensor], holes: list[torch.Tensor],
                  model_config: MultiLatentConfig, config: OptimizerConfig, rounds: int = 2,
                  device: str = "cpu", label: str = "",
                  perceptual: VGG16Features | None = None, vectorize: str = "loop") -> BatchedSpeed:
    """Time len(images) fills (seeds 0, 1, ...) run by `inpaint` one after another against one
    `inpaint_batch` of them; the order alternates between rounds, so that load from other
    processes hits both alike."""
    seeds = list(range(len(images)))
    times: dict[str, list[float]] = {"sequential": [], "batched": []}
    results: dict[str, list] = {}

    def sequential():
        return [inpaint(prior, image, hole, model_config, config, seed, device, perceptual)
                for image, hole, seed in zip(images, holes, seeds)]

    def batched():
        return inpaint_batch(prior, images, holes, model_config, config, seeds, device, perceptual,
                             vectorize=vectorize)

    # Untimed: a process's first fill pays for creating its kernels.
    inpaint(prior, images[0], holes[0], model_config, config, seeds[0], device, perceptual)
    for round_index in range(rounds):
        order = [("sequential", sequential), ("batched", batched)]
        for name, run in order if round_index % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - started)
    pairs = list(zip(results["sequential"], results["batched"]))
    return BatchedSpeed(
        label or family_of(prior).label, len(images), config.steps,
        g1_freeze_step(model_config, config), config.precision, torch.get_num_threads(),
        times["sequential"], times["batched"],
        max(float((a.output - b.output).abs().max()) for a, b in pairs),
        all((a.steps_run, a.best_step) == (b.steps_run, b.best_step) for a, b in pairs), vectorize)


def bundled_batched_speed(family: str, members: int, steps: int, rounds: int = 2,
                          device: str = "cpu", vectorize: str = "loop") -> BatchedSpeed:
    """batched_speed for a bundled prior: `paper` fills of procedural evaluation facades with a
    centred box hole, `steps` fixed steps with the G1 freeze halfway."""
    from ..checkpoints import load_generator
    from ..priors import bundled_prior_path
    prior = load_generator(bundled_prior_path(family))
    model_config, config = preset("paper", prior.config)
    config = replace(config, steps=steps, stop="fixed", freeze_g1_at=max(1, steps // 2))
    images = [procedural.facade_image(seed) for seed in procedural.evaluation_seeds(members)]
    hole = masks.box_mask(procedural.IMAGE_SIZE)  # the bundled priors are facades of this size
    return batched_speed(prior, images, [hole] * members, model_config, config, rounds, device,
                         f"bundled {family_of(prior).label} {procedural.IMAGE_SIZE}x"
                         f"{procedural.IMAGE_SIZE}", vectorize=vectorize)


def case_batched_speed(case: SpeedCase, members: int, steps: int, rounds: int = 2,
                       device: str = "cpu", vectorize: str = "loop") -> BatchedSpeed:
    """batched_speed for a speed case (e.g. `paper`: the paper's 256x256 configuration with its
    VGG16 loss, random weights): `members` random images with a box hole, `steps` fixed steps
    with the G1 freeze halfway."""
    prior, perceptual, _, hole = build_workload(case, device)
    model_config, config = case.configs()
    config = replace(config, steps=steps, freeze_g1_at=max(1, steps // 2))
    resolution = case.generator.resolution
    images = [torch.rand(3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
              for seed in range(members)]
    return batched_speed(prior, images, [hole] * members, model_config, config, rounds, device,
                         f"{case.name} {family_of(prior).label} {resolution}x{resolution}",
                         perceptual if config.perceptual_weight > 0 else None, vectorize)


def format_batched(runs: list[BatchedSpeed]) -> list[str]:
    lines = []
    for run in runs:
        ratio = run.batched_images_per_second / run.sequential_images_per_second
        frozen = "" if run.freeze_at is None else f", G1 frozen after {run.freeze_at}"
        lines.append(
            f"{run.prior}: {run.members} fills of {run.steps} steps{frozen}, precision "
            f"{run.precision}, {run.threads} thread(s): sequential "
            f"{run.sequential_images_per_second:.3f} images/s, batched ({run.vectorize}) "
            f"{run.batched_images_per_second:.3f} images/s ({ratio:.2f}x; the batch took "
            f"{run.batch_over_one_fill:.2f}x one fill's time; median of "
            f"{len(run.batched_seconds)} round(s)); batched - sequential images: max |diff| "
            f"{run.max_abs_difference:.1e}, {'same' if run.same_steps else 'DIFFERENT'} steps")
    return lines


# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # the docstring's own lines
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (a few seconds)")
    parser.add_argument("--cases", help="comma-separated subset of: paper, mganprior, "
                                        "bundled-paper, bundled-mganprior, stylegan2-paper")
    parser.add_argument("--rounds", type=int, help="alternating rounds per case (default 2, quick 1)")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument("--threads", type=int,
                        help="CPU threads (default torch's: all cores). On a machine other jobs "
                             "load, 1 thread gives far steadier timings than 2")
    parser.add_argument("--compile", action="store_true",
                        help="also time (c): the project with compile=True (compiling takes "
                             "tens of seconds per case)")
    parser.add_argument("--eager", action="store_true",
                        help="also time (e): the project with compile=False, never compiled")
    parser.add_argument("--time-to-quality", action="store_true",
                        help="instead: steps and seconds until bundled-prior inpainting is within "
                             f"{QUALITY_MARGIN_DB} dB of its final PSNR, bf16 and fp32; and the "
                             "auto-stop run (maximum --steps) against fixed runs of --steps and of "
                             "each --budgets (PSNR, steps, seconds)")
    parser.add_argument("--budgets", default="300",
                        help="--time-to-quality: comma-separated shorter fixed step counts to run "
                             "too, each with its own schedule (default 300; '' for none)")
    parser.add_argument("--prior", help="prior for --time-to-quality (default: the bundled one)")
    parser.add_argument("--vgg", help="VGG16 weights for --time-to-quality's perceptual term "
                                      "(without: MSE only)")
    parser.add_argument("--steps", type=int, default=3000, help="--time-to-quality steps (default 3000)")
    parser.add_argument("--images", type=int, default=1,
                        help="--time-to-quality evaluation images (default 1)")
    parser.add_argument("--image-offset", type=int, default=0,
                        help="--time-to-quality starts at this evaluation seed offset (to split "
                             "images across processes)")
    parser.add_argument("--precisions", default="bf16,fp32",
                        help="--time-to-quality precisions (default bf16,fp32)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--batched", type=int, metavar="N",
                        help="instead: N bundled-prior fills (with --cases or --quick: fills "
                             "of those cases' configurations) one after another against one "
                             "batched run (images/s of each)")
    parser.add_argument("--families", default="pggan,stylegan2",
                        help="--batched: bundled priors to fill with (default pggan,stylegan2)")
    parser.add_argument("--batched-steps", type=int, default=40,
                        help="--batched: fixed steps per fill, G1 frozen halfway (default 40)")
    parser.add_argument("--vectorize", choices=VECTORIZE_CHOICES, default="loop",
                        help="--batched: how the batch steps its members: loop (exact), vmap "
                             "(one vectorised pass, fp32) or auto (vmap on CUDA) (default loop)")


def run_command(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.time_to_quality:
        from ..checkpoints import load_generator
        from ..method.perceptual import load_vgg16_features
        from ..priors import bundled_prior_path
        prior = load_generator(args.prior or bundled_prior_path())
        runs = time_to_quality(prior, args.steps, tuple(args.precisions.split(",")),
                               procedural.evaluation_seeds(args.images, args.image_offset),
                               device=args.device,
                               perceptual=load_vgg16_features(args.vgg) if args.vgg else None,
                               budgets=tuple(int(b) for b in args.budgets.split(",") if b.strip()))
        lines = format_quality(runs)
        payload = [asdict(run) for run in runs]
    elif args.batched and (args.cases or args.quick):
        cases, _ = selected_cases(args.quick, args.cases.split(",") if args.cases else None)
        batched_runs = [case_batched_speed(case, args.batched, args.batched_steps, args.rounds or 2,
                                           args.device, args.vectorize)
                        for case in cases]
        lines = format_batched(batched_runs)
        payload = [asdict(run) for run in batched_runs]
    elif args.batched:
        batched_runs = [bundled_batched_speed(family, args.batched, args.batched_steps,
                                              args.rounds or 2, args.device, args.vectorize)
                        for family in args.families.split(",")]
        lines = format_batched(batched_runs)
        payload = [asdict(run) for run in batched_runs]
    else:
        report = run_benchmark(args.quick, args.rounds, args.device,
                               args.cases.split(",") if args.cases else None, args.threads,
                               args.compile, eager=args.eager)
        lines = format_report(report)
        payload = asdict(report)
    print("\n".join(lines))
    if args.json:
        write_atomically(args.json, json.dumps(payload, indent=1))


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    _worker_main(sys.argv[2])
