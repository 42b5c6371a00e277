"""Progressive-growing PGGAN training (Karras et al. 2018) for small CPU-sized priors.

What follows the paper / official code: resolutions grow 4x4 -> R with a fade-in phase (alpha
rises 0 -> 1 while the upsampled output of the previous toRGB is blended with the new one in G,
and the downsampled input through the previous fromRGB with the new block in D; real images are
blended the same way) and a stabilise phase per resolution; WGAN-GP loss with lambda 10 and drift
0.001; minibatch stddev in D; equalised learning rate and pixel norm; Adam(beta1 0, beta2 0.99),
reset when a new resolution starts; a moving-average generator Gs (beta 0.999), which is what
gets saved.

The trainer's generator wraps the networks.pggan.PGGANGenerator that is finally saved and keeps the
toRGB layers of the lower resolutions beside it, because fade-in needs them; the saved model is
a plain PGGANGenerator with only the final toRGB.
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .. import imaging
from ..files import folder_contains
from ..networks.pggan import LEAKY_SLOPE, EqualizedConv2d, PGGANConfig, PGGANGenerator
from ..validation import check_seed
from . import procedural
from .training_run import (
    ScheduleMismatch,
    restore_checkpoint,
    run_loop,
    train_in_folder,
    write_checkpoint,
)

PROCEDURAL = "procedural"
ARCH = "pggan"  # the architecture this trainer trains, recorded in its checkpoints


@dataclass
class TrainConfig:
    # The defaults are the bundled prior's recipe (priors/MODEL_CARD.md), sized for about an
    # hour on one shared CPU core; the official models use 600k images per phase.
    resolution: int = 64
    channels: tuple[int, ...] = (128, 128, 64, 32, 16)  # per resolution 4, 8, ..., resolution
    latent_dim: int = 128
    # Images shown per phase, per resolution 4, 8, ..., resolution: 4x4 has one stabilise
    # phase, every higher resolution a fade-in phase and then a stabilise phase of this length.
    images_per_phase: tuple[int, ...] = (20_000, 20_000, 10_000, 8_000, 16_000)
    batch_sizes: tuple[int, ...] = (16, 16, 16, 16, 16)  # per resolution 4, 8, ..., resolution
    # Length of the last phase (stabilising the final resolution) when it should differ from
    # images_per_phase[-1]: like the official total_kimg, it lets training go on at full size.
    final_stable_images: int | None = 36_000
    learning_rate_g: float = 1e-3
    learning_rate_d: float = 1e-3
    adam_betas: tuple[float, float] = (0.0, 0.99)
    adam_eps: float = 1e-8
    gradient_penalty_weight: float = 10.0
    drift_weight: float = 1e-3
    # The official 0.999 assumes ~37k steps per phase; with ~1k steps per phase Gs would still
    # carry a visible share of the new layers' random initial weights at the end.
    ema_beta: float = 0.995
    minibatch_group: int = 4
    seed: int = 2026
    precision: str = "bf16"  # "bf16" autocasts convolutions on CPU; "fp32" does not
    data: str = PROCEDURAL  # "procedural" or a folder of images
    output_dir: str = "runs/train"
    log_every: int = 2_000  # images
    sample_every: int = 20_000  # images
    checkpoint_every: int = 20_000  # images
    # None keeps torch's default. On a CPU shared with other busy processes one thread is
    # several times faster than two: every parallel region waits for a descheduled thread.
    num_threads: int | None = None
    resume: bool = True  # continue from output_dir/checkpoint.pt when it exists

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.batch_sizes = tuple(int(b) for b in self.batch_sizes)
        self.images_per_phase = tuple(int(n) for n in self.images_per_phase)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        self.validate()

    def validate(self) -> None:
        """Refuse, with one line, a setting this trainer cannot run (called on construction)."""
        self._check_values()
        levels = len(self.network_config().channels)
        for name in ("batch_sizes", "images_per_phase"):
            if len(getattr(self, name)) != levels:
                raise ValueError(f"{name} needs one entry per resolution 4..{self.resolution} "
                                 f"({levels}), got {len(getattr(self, name))}")
        for batch in self.batch_sizes:
            if batch % min(batch, self.minibatch_group):
                raise ValueError(f"batch size {batch} is not a multiple of the minibatch "
                                 f"stddev group {self.minibatch_group}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")

    def _check_values(self) -> None:
        """Zero, negative, NaN and out-of-range settings are refused before anything is built or
        written (a batch of 0 would loop forever, --sample-every 0 divide by zero)."""
        def whole(name: str, values, minimum: int = 1) -> None:
            for value in (values if isinstance(values, tuple) else (values,)):
                if type(value) is not int or value < minimum:
                    raise ValueError(f"--{name} must be {'at least ' + str(minimum)}, got "
                                     f"{list(values) if isinstance(values, tuple) else value}")
        whole("latent-dim", self.latent_dim)
        whole("channels", self.channels)
        whole("images-per-phase", self.images_per_phase)
        whole("batch-sizes", self.batch_sizes)
        if self.final_stable_images is not None:
            whole("final-stable-images", self.final_stable_images)
        whole("log-every", self.log_every)
        whole("sample-every", self.sample_every)
        whole("checkpoint-every", self.checkpoint_every)
        if self.num_threads is not None:
            whole("threads", self.num_threads)
        for name, value in (("lr-g", self.learning_rate_g), ("lr-d", self.learning_rate_d)):
            if not (math.isfinite(value) and 0 < value <= 1):
                raise ValueError(f"--{name} must be a learning rate in (0, 1], got {value}")
        if not (math.isfinite(self.ema_beta) and 0 <= self.ema_beta < 1):
            raise ValueError(f"--ema-beta must be in [0, 1), got {self.ema_beta}")
        if not all(math.isfinite(b) and 0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam betas must be in [0, 1), got {self.adam_betas}")
        for name, value in (("adam_eps", self.adam_eps),
                            ("gradient_penalty_weight", self.gradient_penalty_weight),
                            ("drift_weight", self.drift_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        whole("minibatch_group", self.minibatch_group)
        check_seed(self.seed, "--seed")
        if self.data != PROCEDURAL and folder_contains(self.data, self.output_dir):
            raise ValueError(f"--out {self.output_dir} lies inside --data {self.data}: the sample "
                             "grids written there would become training images; choose an --out "
                             "outside the data folder")

    # Settings a resumed run must share with the checkpoint: anything else would be recorded
    # but not used (the optimisers keep their state) or would change a run half-way.
    RESUME_MUST_MATCH = ("resolution", "channels", "latent_dim", "batch_sizes", "learning_rate_g",
                         "learning_rate_d", "adam_betas", "adam_eps", "gradient_penalty_weight",
                         "drift_weight", "ema_beta", "minibatch_group", "seed", "precision",
                         "data")

    def resume_differences(self, saved: dict) -> list[str]:
        """Names of RESUME_MUST_MATCH settings in which `saved` (asdict of the checkpoint's
        config) differs from this one."""
        mine = asdict(self)
        differing = []
        for name in self.RESUME_MUST_MATCH:
            ours, theirs = mine[name], saved.get(name)
            if isinstance(ours, tuple):
                theirs = tuple(theirs) if isinstance(theirs, (list, tuple)) else theirs
            if name == "data" and ours != PROCEDURAL and isinstance(theirs, str) and theirs != PROCEDURAL:
                ours, theirs = str(Path(ours).resolve()), str(Path(theirs).resolve())
            if ours != theirs:
                differing.append(f"{name} {theirs!r} -> {ours!r}")
        return differing

    def network_config(self) -> PGGANConfig:
        return PGGANConfig(self.resolution, self.channels, self.latent_dim)

    @property
    def levels(self) -> int:
        return len(self.channels)

    def phases(self) -> list[tuple[int, bool, int]]:
        """(level, fading, images) per phase; level l trains resolution 4 * 2**l."""
        phases = [(0, False, self.images_per_phase[0])]
        for level in range(1, self.levels):
            images = self.images_per_phase[level]
            phases += [(level, True, images), (level, False, images)]
        if self.final_stable_images is not None:
            phases[-1] = (phases[-1][0], False, self.final_stable_images)
        return phases

    @property
    def total_images(self) -> int:
        return sum(images for _, _, images in self.phases())


class GrowingGenerator(nn.Module):
    """A PGGANGenerator plus the toRGB layers of the lower resolutions, for fade-in."""

    def __init__(self, config: PGGANConfig) -> None:
        super().__init__()
        self.generator = PGGANGenerator(config)
        self.lower_to_rgb = nn.ModuleList(
            EqualizedConv2d(channels, 3, 1, gain=1.0, padding=0) for channels in config.channels[:-1])

    def to_rgb(self, level: int) -> nn.Module:
        return self.lower_to_rgb[level] if level < len(self.lower_to_rgb) else self.generator.to_rgb

    def forward(self, z: torch.Tensor, level: int, alpha: float = 1.0) -> torch.Tensor:
        layers = self.generator.layers
        x = z
        for layer in layers[:2 * level]:
            x = layer(x)
        lower_features = x
        for layer in layers[2 * level:2 * level + 2]:
            x = layer(x)
        image = self.to_rgb(level)(x)
        if level > 0 and alpha < 1.0:
            lower = F.interpolate(self.to_rgb(level - 1)(lower_features), scale_factor=2,
                                  mode="nearest")
            image = torch.lerp(lower, image.to(lower.dtype), alpha)
        return image


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Appends the mean stddev over groups of samples as one more feature map (official code)."""
    batch, channels, height, width = x.shape
    group = min(group, batch)
    y = x.float().reshape(group, -1, channels, height, width)
    y = y - y.mean(dim=0)
    std = (y.pow(2).mean(dim=0) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [batch / group]
    std = std.reshape(1, -1, 1, 1, 1).expand(group, -1, 1, height, width).reshape(batch, 1, height, width)
    return torch.cat([x, std.to(x.dtype)], dim=1)


class Discriminator(nn.Module):
    """PGGAN discriminator mirroring the generator's channels, growing with it."""

    def __init__(self, config: PGGANConfig, minibatch_group: int = 4) -> None:
        super().__init__()
        gain = math.sqrt(2)
        channels = config.channels
        self.minibatch_group = minibatch_group
        self.from_rgb = nn.ModuleList(EqualizedConv2d(3, c, 1, gain, padding=0) for c in channels)
        # blocks[l] takes level l (resolution 4 * 2**l) down to level l - 1; blocks[0] is unused.
        self.blocks = nn.ModuleList([nn.Identity()] + [
            nn.ModuleList([EqualizedConv2d(channels[level], channels[level], 3, gain, padding=1),
                           EqualizedConv2d(channels[level], channels[level - 1], 3, gain, padding=1)])
            for level in range(1, len(channels))])
        self.final_conv = EqualizedConv2d(channels[0] + 1, channels[0], 3, gain, padding=1)
        self.final_dense = EqualizedConv2d(channels[0], channels[0], 4, gain, padding=0)
        self.output = EqualizedConv2d(channels[0], 1, 1, gain=1.0, padding=0)

    def _from_rgb(self, images: torch.Tensor, level: int) -> torch.Tensor:
        return F.leaky_relu(self.from_rgb[level](images), LEAKY_SLOPE)

    def _block(self, x: torch.Tensor, level: int) -> torch.Tensor:
        for conv in self.blocks[level]:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
        return F.avg_pool2d(x, 2)

    def forward(self, images: torch.Tensor, level: int, alpha: float = 1.0) -> torch.Tensor:
        x = self._from_rgb(images, level)
        if level > 0:
            x = self._block(x, level)
            if alpha < 1.0:
                lower = self._from_rgb(F.avg_pool2d(images, 2), level - 1)
                x = torch.lerp(lower, x.to(lower.dtype), alpha)
            for lower_level in range(level - 1, 0, -1):
                x = self._block(x, lower_level)
        x = minibatch_stddev(x, self.minibatch_group)
        x = F.leaky_relu(self.final_conv(x), LEAKY_SLOPE)
        x = F.leaky_relu(self.final_dense(x), LEAKY_SLOPE)
        return self.output(x).reshape(-1)


class ImageSource(Protocol):
    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        """Real images [B, 3, resolution, resolution] in [0, 1]."""


class ProceduralSource:
    """Fresh procedural facades from the training seed range, area-downsampled if needed."""

    def __init__(self, resolution: int) -> None:
        if procedural.IMAGE_SIZE % resolution:
            raise ValueError(f"procedural images are {procedural.IMAGE_SIZE}x"
                             f"{procedural.IMAGE_SIZE}; resolution {resolution} does not divide it")
        self.factor = procedural.IMAGE_SIZE // resolution

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        seeds = rng.integers(procedural.TRAIN_SEED_START, procedural.TRAIN_SEED_STOP, batch_size)
        images = procedural.facade_batch(seeds)
        return F.avg_pool2d(images, self.factor) if self.factor > 1 else images


class FolderSource:
    """Every image in a folder, centre-cropped to a square and resized, held in memory."""

    EXTENSIONS = set(imaging.IMAGE_SUFFIXES)  # the one list: what imaging reads and writes

    def __init__(self, folder: str, resolution: int) -> None:
        paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in self.EXTENSIONS)
        if not paths:
            raise ValueError(f"no images ({', '.join(sorted(self.EXTENSIONS))}) in {folder}")
        arrays = []
        for path in paths:
            # imaging.load_image refuses pipes, corrupt files and bombs with the file's name and
            # scales 16-bit files by their depth; back at 8 bits (exact for 8-bit files) the
            # crop and the Lanczos resize are PIL's.
            pixels = imaging.load_image(path).permute(1, 2, 0).mul(255).round().to(torch.uint8)
            image = Image.fromarray(pixels.numpy())
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
            arrays.append(np.asarray(image).transpose(2, 0, 1))
        self.images = torch.from_numpy(np.stack(arrays))  # uint8 keeps large folders in memory

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        index = torch.from_numpy(rng.integers(0, len(self.images), batch_size))
        return self.images[index].float() / 255.0


def make_source(config: TrainConfig) -> ImageSource:
    if config.data == PROCEDURAL:
        return ProceduralSource(config.resolution)
    return FolderSource(config.data, config.resolution)


class Trainer:
    """Training state and one step at a time; `run` loops, logs, samples and checkpoints."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        net_config = config.network_config()
        torch.manual_seed(config.seed)  # only for reproducible weight initialisation
        # oneDNN convolutions run about twice as fast on channels-last (NHWC) tensors on CPU;
        # channels-last weights make every activation follow.
        self.generator = GrowingGenerator(net_config).to(memory_format=torch.channels_last)
        self.discriminator = Discriminator(net_config, config.minibatch_group).to(
            memory_format=torch.channels_last)
        self.ema_generator = copy.deepcopy(self.generator).requires_grad_(False)
        self.torch_rng = torch.Generator().manual_seed(config.seed)
        self.data_rng = np.random.default_rng(config.seed)
        self.source = make_source(config)
        self.phase_index = 0
        self.phase_images = 0
        self.images_seen = 0
        self.elapsed_seconds = 0.0
        self._make_optimizers()
        self.sample_latents = torch.randn(
            64, config.latent_dim, generator=torch.Generator().manual_seed(config.seed + 1))

    def _make_optimizers(self) -> None:
        c = self.config
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), c.learning_rate_g,
                                            betas=c.adam_betas, eps=c.adam_eps)
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), c.learning_rate_d,
                                            betas=c.adam_betas, eps=c.adam_eps)

    @property
    def finished(self) -> bool:
        return self.phase_index >= len(self.config.phases())

    @property
    def level(self) -> int:
        return self.config.phases()[min(self.phase_index, len(self.config.phases()) - 1)][0]

    @property
    def alpha(self) -> float:
        if self.finished:
            return 1.0
        _, fading, images = self.config.phases()[self.phase_index]
        return min(self.phase_images / images, 1.0) if fading else 1.0

    @property
    def batch_size(self) -> int:
        return self.config.batch_sizes[self.level]

    def _autocast(self):
        if self.config.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _real_batch(self, level: int, alpha: float) -> torch.Tensor:
        images = imaging.to_signed_range(self.source.sample(self.data_rng, self.batch_size))
        images = F.avg_pool2d(images, self.config.resolution // (4 * 2 ** level))
        if level > 0 and alpha < 1.0:
            # Real images fade in like generated ones, so D never sees a sharper real set.
            lower = F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="nearest")
            images = torch.lerp(lower, images, alpha)
        return images.contiguous(memory_format=torch.channels_last)

    def _latents(self) -> torch.Tensor:
        return torch.randn(self.batch_size, self.config.latent_dim, generator=self.torch_rng)

    def train_step(self) -> dict[str, float]:
        """One discriminator and one generator update on one minibatch."""
        c = self.config
        level, alpha = self.level, self.alpha
        G, D = self.generator, self.discriminator

        reals = self._real_batch(level, alpha)
        with torch.no_grad(), self._autocast():
            fakes = G(self._latents(), level, alpha).float()
        mix = torch.rand(reals.shape[0], 1, 1, 1, generator=self.torch_rng)
        mixed = torch.lerp(reals, fakes, mix).requires_grad_(True)
        with self._autocast():
            d_real = D(reals, level, alpha).float()
            d_fake = D(fakes, level, alpha).float()
            d_mixed = D(mixed, level, alpha).float()
        # Reductions, the penalty and the drift stay in fp32 even when the convs run in bf16.
        (grad,) = torch.autograd.grad(d_mixed.sum(), mixed, create_graph=True)
        penalty = (grad.float().flatten(1).norm(dim=1) - 1).pow(2)
        loss_d = (d_fake - d_real + c.gradient_penalty_weight * penalty
                  + c.drift_weight * d_real.pow(2)).mean()
        self.optimizer_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizer_d.step()

        D.requires_grad_(False)
        with self._autocast():
            loss_g = -D(G(self._latents(), level, alpha), level, alpha).float().mean()
        self.optimizer_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizer_g.step()
        D.requires_grad_(True)

        self._update_ema_generator()
        self._advance(reals.shape[0])
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
                "penalty": penalty.mean().item(), "wasserstein": (d_real - d_fake).mean().item()}

    @torch.no_grad()
    def _update_ema_generator(self) -> None:
        for averaged, current in zip(self.ema_generator.parameters(),
                                     self.generator.parameters()):
            averaged.lerp_(current, 1.0 - self.config.ema_beta)

    def _advance(self, images: int) -> None:
        self.phase_images += images
        self.images_seen += images
        if self.phase_images >= self.config.phases()[self.phase_index][2]:
            previous_level = self.level
            self.phase_index += 1
            self.phase_images = 0
            if not self.finished and self.level != previous_level:
                # As in the official code: Adam's moments of the old resolution do not fit the
                # new layers, so a new resolution starts with fresh optimiser state.
                self._make_optimizers()

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """Gs on the fixed sample latents at the current resolution and alpha, in [-1, 1]."""
        return self.ema_generator(self.sample_latents, self.level, self.alpha)

    def final_generator(self) -> PGGANGenerator:
        return copy.deepcopy(self.ema_generator.generator)

    def state_dict(self) -> dict:
        return {
            "arch": ARCH,
            "config": asdict(self.config),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "smoothed_generator": self.ema_generator.state_dict(),  # the key resumable runs have
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "phase_index": self.phase_index,
            "phase_images": self.phase_images,
            "images_seen": self.images_seen,
            "elapsed_seconds": self.elapsed_seconds,
            "torch_rng": self.torch_rng.get_state(),
            "data_rng": self.data_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.ema_generator.load_state_dict(state["smoothed_generator"])
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        self.images_seen = state["images_seen"]
        self.phase_index, self.phase_images = self._position_in_schedule(
            state["phase_index"], state["phase_images"])
        self.elapsed_seconds = state["elapsed_seconds"]
        self.torch_rng.set_state(state["torch_rng"])
        self.data_rng.bit_generator.state = state["data_rng"]

    def _position_in_schedule(self, saved_index: int, saved_images: int) -> tuple[int, int]:
        """Where `images_seen` falls in this config's schedule.

        It must be where the checkpoint says it is, with one exception: a finished run
        continues when the last phase has been lengthened (`final_stable_images`)."""
        phases = self.config.phases()
        start = 0
        index, images = len(phases), 0
        for phase, (_, _, length) in enumerate(phases):
            if self.images_seen < start + length:
                index, images = phase, self.images_seen - start
                break
            start += length
        lengthened_last_phase = saved_index == len(phases) and index == len(phases) - 1
        if (index, images) != (saved_index, saved_images) and not lengthened_last_phase:
            raise ScheduleMismatch(
                f"the checkpoint is at phase {saved_index + 1}, image {saved_images} of that phase "
                f"({self.images_seen} images in all), but this schedule puts image "
                f"{self.images_seen} at phase {index + 1}, image {images}: phases that have "
                "already run cannot change. Resume with the schedule the run was started with "
                "(only phases that have not started, or the last phase's length, may differ), "
                "or pass --restart.")
        return index, images

    def save_checkpoint(self, path: Path) -> None:
        write_checkpoint(path, self.state_dict())

    def load_checkpoint(self, path: Path) -> None:
        restore_checkpoint(self, path, ARCH,
                           lambda state: self.config.resume_differences(state["config"]))

    def describe_phase(self) -> str:
        resolution = 4 * 2 ** self.level
        fading = not self.finished and self.config.phases()[self.phase_index][1]
        kind = f"fade-in alpha {self.alpha:.2f}" if fading else "stabilise"
        return (f"phase {min(self.phase_index + 1, len(self.config.phases()))}/"
                f"{len(self.config.phases())} {resolution}x{resolution} {kind}")

    def run(self, stop_at_images: int | None = None) -> None:
        """Trains until the schedule ends (or `stop_at_images`), logging, sampling, saving."""
        run_loop(self, stop_at_images)

    def training_record(self) -> dict:
        c = self.config
        return {"data": c.data, "images_seen": self.images_seen,
                "wall_seconds": round(self.elapsed_seconds),
                "images_per_phase": list(c.images_per_phase),
                "final_stable_images": c.final_stable_images,
                "batch_sizes": list(c.batch_sizes), "seed": c.seed, "precision": c.precision}


def train(config: TrainConfig) -> Path:
    """Runs (or resumes) a whole training run; returns the path of the saved Gs."""
    return train_in_folder(config, Trainer, asdict(config))
