"""StyleGAN2 training (Karras et al. 2020) for small CPU-sized priors, saving the project's
networks.stylegan2.StyleGAN2Generator.

What follows NVIDIA's recipe (stylegan2-ada-pytorch, without augmentation):
- the generator is the project's StyleGAN2Generator (mapping with lr multiplier 0.01, modulated /
  demodulated convs, skip ToRGBs), trained with fresh per-pixel noise (noise_mode "random");
- a residual discriminator ("resnet" architecture): fromRGB 1x1 at the top resolution, one block
  per resolution down to 8x8 (3x3 conv, 3x3 conv with 2x downsampling, and a linear 1x1
  downsampling skip, both branches scaled by sqrt(1/2)), downsampling by the [1, 3, 3, 1] low-pass
  filter before a stride-2 convolution, and a 4x4 epilogue: minibatch stddev (group 4, one
  feature), 3x3 conv, dense, dense to one logit. Equalised learning rate (weights stored N(0, 1),
  scaled by 1 / sqrt(fan_in) at run time) and leaky ReLU 0.2 times sqrt(2), as in the generator;
- the non-saturating logistic loss: G minimises softplus(-D(G(z))), D minimises
  softplus(D(G(z))) + softplus(-D(x));
- R1 on the reals, gamma / 2 * ||grad_x D(x)||^2, lazily: every `r1_every` (16) steps, multiplied
  by that interval. gamma defaults to stylegan2-ada's "auto" value 0.0002 * resolution^2 / batch;
- style mixing with probability 0.9 (one crossover slot per minibatch, uniform in 1..num_ws-1);
- w_avg tracked during training as w_avg = lerp(mean(w), w_avg, 0.995) on the discriminator
  step's fakes (stylegan3's "update_emas" placement);
- the saved generator is the moving average G_ema with a half-life of `ema_images` images
  (beta = 0.5 ** (batch / ema_images); by default batch * 10 / 32 kimg with the 0.05 ramp-up
  ema_images <= 0.05 * images seen, as in stylegan2-ada's "auto" config); buffers (w_avg,
  noise_const) are copied from G;
- Adam (beta1 0, beta2 0.99, eps 1e-8), learning rate 0.0025 for both networks.

What differs or is left out:
- no path-length regularisation (the generator's `pl` term) and no adaptive augmentation;
- the lazy R1 term is added to that step's discriminator loss (one backward pass and one Adam
  step on the same real logits) instead of NVIDIA's separate "Dreg" pass and step; so no extra
  optimiser steps are taken and Adam's learning rate and betas are not rescaled by
  r1_every / (r1_every + 1) as NVIDIA does for its extra steps;
- no fp16 layers and no conv_clamp: mixed precision is bf16 autocast of the convolutions (the
  mapping, styles, demodulation, losses and R1's reduction stay in fp32), chosen by `precision`
  "auto" only where the CPU has native bf16 (method.precision);
- the generator's step runs before the discriminator's in every iteration, as in NVIDIA's phase
  order; one real minibatch per iteration.

Resuming, progress lines, sample grids and the checkpoint reader are shared with the PGGAN
trainer (lab.training_run): the checkpoint holds G, D, G_ema, both optimisers, the torch and numpy
generators and the image count, and a resumed run is bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import imaging
from ..files import folder_contains
from ..method.precision import PRECISIONS, describe_choice, uses_bf16
from ..networks.stylegan2 import (
    LEAKY_SLOPE,
    LRELU_GAIN,
    FullyConnected,
    StyleGAN2Config,
    StyleGAN2Generator,
    resample_filter,
)
from ..validation import check_seed
from .train import PROCEDURAL, make_source, minibatch_stddev
from .training_run import restore_checkpoint, run_loop, train_in_folder, write_checkpoint

ARCH = "stylegan2"
SQRT_HALF = math.sqrt(0.5)
CPU = torch.device("cpu")


@dataclass(frozen=True)
class StyleGAN2TrainConfig:
    """One StyleGAN2 training run; refuses what it cannot run on construction (`validate`)."""

    resolution: int = 64
    channels: tuple[int, ...] = (128, 128, 64, 32, 16)  # per resolution 4, 8, ..., resolution (G and D)
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 2  # stylegan2-ada's "auto" config; the paper's networks have 8
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995
    batch_size: int = 16
    total_images: int = 200_000  # raise it and rerun to continue a finished run
    learning_rate_g: float = 0.0025
    learning_rate_d: float = 0.0025
    adam_betas: tuple[float, float] = (0.0, 0.99)
    adam_eps: float = 1e-8
    r1_gamma: float | None = None  # None: 0.0002 * resolution**2 / batch_size (NVIDIA's auto)
    r1_every: int = 16  # lazy regularisation interval in steps
    style_mixing: float = 0.9  # probability that a minibatch mixes two latents
    ema_images: int | None = None  # G_ema half-life in images; None: batch_size * 10_000 / 32
    ema_rampup: float | None = 0.05  # half-life at most this times the images seen; None: off
    minibatch_group: int = 4
    seed: int = 2026
    precision: str = "auto"  # "auto" (bf16 only with native bf16), "bf16" or "fp32"
    data: str = PROCEDURAL  # "procedural" or a folder of images
    output_dir: str = "runs/train"
    log_every: int = 2_000  # images
    sample_every: int = 20_000  # images
    checkpoint_every: int = 20_000  # images
    num_threads: int | None = None
    resume: bool = True  # continue from output_dir/checkpoint.pt when it exists

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        self.validate()

    def validate(self) -> None:
        """Refuse, with one line naming the option, a setting this trainer cannot run."""
        def whole(name: str, values, minimum: int = 1) -> None:
            for value in (values if isinstance(values, tuple) else (values,)):
                if type(value) is not int or value < minimum:
                    shown = list(values) if isinstance(values, tuple) else value
                    raise ValueError(f"--{name} must be at least {minimum}, got {shown!r}")

        def number(name: str, value, low: float, high: float, low_open: bool = False,
                   high_open: bool = False) -> None:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value) and (value > low if low_open else value >= low)
                  and (value < high if high_open else value <= high))
            if not ok:
                interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
                raise ValueError(f"--{name} must be a number in {interval}, got {value!r}")

        for name in ("resolution", "z_dim", "w_dim", "mapping_layers", "batch_size",
                     "total_images", "r1_every", "minibatch_group", "log_every", "sample_every",
                     "checkpoint_every"):
            whole(name.replace("_", "-"), getattr(self, name))
        whole("channels", self.channels)
        if self.num_threads is not None:
            whole("threads", self.num_threads)
        if self.ema_images is not None:
            whole("ema-images", self.ema_images)
        number("lr-g", self.learning_rate_g, 0, 1, low_open=True)
        number("lr-d", self.learning_rate_d, 0, 1, low_open=True)
        number("style-mixing", self.style_mixing, 0, 1)
        number("w-avg-beta", self.w_avg_beta, 0, 1, high_open=True)
        number("mapping-lr-multiplier", self.mapping_lr_multiplier, 0, 1, low_open=True)
        number("adam-eps", self.adam_eps, 0, 1)
        if self.r1_gamma is not None:
            number("r1-gamma", self.r1_gamma, 0, 1e6)
        if self.ema_rampup is not None:
            number("ema-rampup", self.ema_rampup, 0, 1e6, low_open=True)
        if len(self.adam_betas) != 2:
            raise ValueError(f"adam betas must be two numbers, got {self.adam_betas}")
        for beta in self.adam_betas:
            number("adam-betas", beta, 0, 1, high_open=True)
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {self.precision!r}")
        if self.batch_size % min(self.batch_size, self.minibatch_group):
            raise ValueError(f"--batch-size {self.batch_size} is not a multiple of the minibatch "
                             f"stddev group {self.minibatch_group}")
        check_seed(self.seed, "--seed")
        self.network_config()  # the architecture's own checks (resolution, channel count)
        if self.data != PROCEDURAL and folder_contains(self.data, self.output_dir):
            raise ValueError(f"--out {self.output_dir} lies inside --data {self.data}: the sample "
                             "grids written there would become training images; choose an --out "
                             "outside the data folder")

    def network_config(self) -> StyleGAN2Config:
        try:
            return StyleGAN2Config(self.resolution, self.channels, self.z_dim, self.w_dim,
                                   self.mapping_layers, self.mapping_lr_multiplier)
        except ValueError as error:
            raise ValueError(f"--resolution/--channels: {error}") from None

    @property
    def gamma(self) -> float:
        """R1 weight: r1_gamma, or stylegan2-ada's auto value 0.0002 * resolution^2 / batch."""
        if self.r1_gamma is not None:
            return float(self.r1_gamma)
        return 0.0002 * self.resolution ** 2 / self.batch_size

    @property
    def ema_half_life(self) -> float:
        """G_ema's half-life in images before the ramp-up."""
        return float(self.ema_images if self.ema_images is not None
                     else self.batch_size * 10_000 / 32)

    # Settings a resumed run must share with its checkpoint (total_images, the intervals, the
    # output and the thread count may change).
    RESUME_MUST_MATCH = ("resolution", "channels", "z_dim", "w_dim", "mapping_layers",
                         "mapping_lr_multiplier", "w_avg_beta", "batch_size", "learning_rate_g",
                         "learning_rate_d", "adam_betas", "adam_eps", "r1_gamma", "r1_every",
                         "style_mixing", "ema_images", "ema_rampup", "minibatch_group", "seed",
                         "precision", "data")

    def resume_differences(self, saved: dict) -> list[str]:
        """Names of RESUME_MUST_MATCH settings in which `saved` (asdict of the checkpoint's
        config) differs from this one."""
        mine = asdict(self)
        differing = []
        for name in self.RESUME_MUST_MATCH:
            ours, theirs = mine[name], saved.get(name)
            if isinstance(ours, tuple):
                theirs = tuple(theirs) if isinstance(theirs, (list, tuple)) else theirs
            if name == "data" and ours != PROCEDURAL and isinstance(theirs, str) \
                    and theirs != PROCEDURAL:
                ours, theirs = str(Path(ours).resolve()), str(Path(theirs).resolve())
            if ours != theirs:
                differing.append(f"{name} {theirs!r} -> {ours!r}")
        return differing

    def recipe(self) -> dict:
        """The training recipe recorded in the saved generator's metadata."""
        keep = ("data", "batch_size", "learning_rate_g", "learning_rate_d", "adam_betas",
                "r1_every", "style_mixing", "ema_rampup", "w_avg_beta", "minibatch_group", "seed",
                "precision")
        recipe = {name: getattr(self, name) for name in keep}
        recipe["adam_betas"] = list(self.adam_betas)
        recipe.update(r1_gamma=self.gamma, ema_half_life_images=self.ema_half_life,
                      loss="non-saturating logistic, lazy R1", path_length_regularisation=False,
                      discriminator="resnet", channels=list(self.channels))
        return recipe


# --- losses -------------------------------------------------------------------------------------

def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: mean softplus(-D(G(z)))."""
    return F.softplus(-fake_logits.float()).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss: mean softplus(D(G(z))) + mean softplus(-D(x))."""
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, reals: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / 2 * ||grad_x D(x)||^2 per sample [N], differentiable (create_graph) so that the
    discriminator's parameters get its gradient. `reals` must require grad and `real_logits`
    be D(reals)."""
    (gradient,) = torch.autograd.grad(real_logits.float().sum(), reals, create_graph=True)
    return gradient.float().square().flatten(1).sum(dim=1) * (gamma / 2)


# --- the discriminator --------------------------------------------------------------------------

class DiscriminatorConv(nn.Module):
    """Conv with equalised learning rate, optional 2x downsampling and leaky ReLU * sqrt(2).

    Downsampling low-pass filters with [1, 3, 3, 1] (padded so the size halves exactly) and then
    convolves with stride 2; `gain` scales the output (the residual branches' sqrt(1/2))."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, activation: bool = True,
                 down: bool = False, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.activation = activation
        self.down = down
        self.padding = kernel // 2
        if down:
            self.register_buffer("resample_filter", resample_filter())

    def _low_pass(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        kernel = self.resample_filter.to(x.dtype).expand(channels, 1, 4, 4)
        # Padding (k - 1) / 2 + 1 per side: the filter leaves H + 2 * pad - 3 pixels, and the
        # stride-2 kernel-k conv without padding then gives exactly H / 2.
        return F.conv2d(x, kernel, padding=self.padding + 1, groups=channels)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        weight = self.weight * self.weight_gain
        if self.down:
            x = F.conv2d(self._low_pass(x), weight.to(x.dtype), stride=2)
        else:
            x = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype)[:, None, None]
        if self.activation:
            x = F.leaky_relu(x, LEAKY_SLOPE) * LRELU_GAIN
        return x * gain if gain != 1.0 else x


class DiscriminatorBlock(nn.Module):
    """One resolution of the residual discriminator: [N, c_in, H, W] -> [N, c_out, H/2, W/2]."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = DiscriminatorConv(in_channels, in_channels, 3)
        self.conv1 = DiscriminatorConv(in_channels, out_channels, 3, down=True)
        self.skip = DiscriminatorConv(in_channels, out_channels, 1, activation=False, down=True,
                                      bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(x, gain=SQRT_HALF)
        return skip + self.conv1(self.conv0(x), gain=SQRT_HALF)


class ResidualDiscriminator(nn.Module):
    """StyleGAN2's residual discriminator with the generator's channel plan, one logit per image."""

    def __init__(self, resolution: int, channels: tuple[int, ...], minibatch_group: int = 4,
                 img_channels: int = 3) -> None:
        super().__init__()
        if len(channels) != int(math.log2(resolution)) - 1:
            raise ValueError(f"a {resolution}x{resolution} discriminator needs one channel count "
                             f"per resolution 4..{resolution}, got {len(channels)}")
        self.resolution = resolution
        self.minibatch_group = minibatch_group
        self.from_rgb = DiscriminatorConv(img_channels, channels[-1], 1)
        # blocks run from the top resolution down to 8x8, block i taking level L-i to L-i-1
        self.blocks = nn.ModuleList(DiscriminatorBlock(channels[level], channels[level - 1])
                                    for level in range(len(channels) - 1, 0, -1))
        top = channels[0]
        self.epilogue_conv = DiscriminatorConv(top + 1, top, 3)
        self.epilogue_dense = FullyConnected(top * 16, top, activation=True)
        self.output = FullyConnected(top, 1, activation=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.from_rgb(images)
        for block in self.blocks:
            x = block(x)
        x = minibatch_stddev(x, self.minibatch_group)
        x = self.epilogue_conv(x)
        with torch.autocast("cpu", enabled=False):  # the dense layers are tiny: fp32
            x = self.epilogue_dense(x.float().flatten(1))
            return self.output(x).reshape(-1)


# --- the trainer --------------------------------------------------------------------------------

class StyleGAN2Trainer:
    """Training state and one iteration at a time; `run` loops, logs, samples and checkpoints."""

    def __init__(self, config: StyleGAN2TrainConfig) -> None:
        self.config = config
        self.network_config = config.network_config()
        self.bf16 = uses_bf16(config.precision, CPU)
        torch.manual_seed(config.seed)  # only for reproducible weight initialisation
        # Channels-last (NHWC) weights make the activations follow: oneDNN's CPU convolutions
        # ran this trainer about 15-20% faster so (64x64, batch 16, one thread).
        self.generator = StyleGAN2Generator(self.network_config).to(
            memory_format=torch.channels_last)
        self.discriminator = ResidualDiscriminator(config.resolution, config.channels,
                                                   config.minibatch_group).to(
            memory_format=torch.channels_last)
        self.ema_generator = copy.deepcopy(self.generator).requires_grad_(False).eval()
        self.torch_rng = torch.Generator().manual_seed(config.seed)
        self.data_rng = np.random.default_rng(config.seed)
        self.source = make_source(config)
        self.images_seen = 0
        self.steps = 0
        self.elapsed_seconds = 0.0
        self.last_r1 = float("nan")
        c = config
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), c.learning_rate_g,
                                            betas=c.adam_betas, eps=c.adam_eps)
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), c.learning_rate_d,
                                            betas=c.adam_betas, eps=c.adam_eps)
        self.sample_latents = torch.randn(
            64, c.z_dim, generator=torch.Generator().manual_seed(c.seed + 1))

    @property
    def finished(self) -> bool:
        return self.images_seen >= self.config.total_images

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def _real_batch(self) -> torch.Tensor:
        return imaging.to_signed_range(self.source.sample(self.data_rng, self.config.batch_size))

    def _latents(self) -> torch.Tensor:
        return torch.randn(self.config.batch_size, self.config.z_dim, generator=self.torch_rng)

    def _generate(self, update_w_avg: bool) -> torch.Tensor:
        """G's images of fresh latents, style-mixed with probability style_mixing, with fresh
        noise; every random number comes from the trainer's torch generator."""
        c, G = self.config, self.generator
        ws = G.mapping(self._latents())
        if update_w_avg:
            with torch.no_grad():
                G.mapping.w_avg.copy_(ws[:, 0].float().mean(dim=0).lerp(G.mapping.w_avg,
                                                                         c.w_avg_beta))
        if c.style_mixing > 0:
            # drawn on every call so that the random stream does not depend on the outcome
            cutoff = int(torch.randint(1, G.num_ws, (), generator=self.torch_rng))
            mix = float(torch.rand((), generator=self.torch_rng)) < c.style_mixing
            other = G.mapping(self._latents())
            if mix:
                ws = torch.cat([ws[:, :cutoff], other[:, cutoff:]], dim=1)
        return G.synthesis(ws, noise_mode="random", noise_generator=self.torch_rng)

    def train_step(self) -> dict[str, float]:
        """One generator and one discriminator update (with R1 every r1_every steps)."""
        c = self.config
        D = self.discriminator
        reals = self._real_batch()

        D.requires_grad_(False)
        with self._autocast():
            loss_g = generator_loss(D(self._generate(update_w_avg=False)))
        self.optimizer_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizer_g.step()
        D.requires_grad_(True)

        regularise = c.gamma > 0 and self.steps % c.r1_every == 0
        with torch.no_grad(), self._autocast():
            fakes = self._generate(update_w_avg=True).float()
        reals.requires_grad_(regularise)
        with self._autocast():
            real_logits = D(reals)
            fake_logits = D(fakes)
        loss_d = discriminator_loss(real_logits, fake_logits)
        total_d = loss_d
        if regularise:
            penalty = r1_penalty(real_logits, reals, c.gamma).mean()
            total_d = loss_d + penalty * c.r1_every
            self.last_r1 = penalty.item()
        self.optimizer_d.zero_grad(set_to_none=True)
        total_d.backward()
        self.optimizer_d.step()

        self._update_ema()
        self.images_seen += c.batch_size
        self.steps += 1
        return {"loss_g": loss_g.item(), "loss_d": loss_d.item(), "r1": self.last_r1,
                "d_real": real_logits.float().mean().item(),
                "d_fake": fake_logits.float().mean().item()}

    def ema_beta(self, images_seen: int | None = None) -> float:
        """NVIDIA's G_ema decay per step: 0.5 ** (batch / half-life), the half-life capped at
        ema_rampup * images seen so far (before this step's images)."""
        c = self.config
        seen = self.images_seen if images_seen is None else images_seen
        half_life = c.ema_half_life
        if c.ema_rampup is not None:
            half_life = min(half_life, seen * c.ema_rampup)
        return 0.5 ** (c.batch_size / max(half_life, 1e-8))

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = self.ema_beta()
        for averaged, current in zip(self.ema_generator.parameters(), self.generator.parameters()):
            averaged.copy_(current.lerp(averaged, beta))
        for averaged, current in zip(self.ema_generator.buffers(), self.generator.buffers()):
            averaged.copy_(current)

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """G_ema on the fixed sample latents with its constant noise, in [-1, 1]."""
        return self.ema_generator(self.sample_latents, noise_mode="const")

    def final_generator(self) -> StyleGAN2Generator:
        return copy.deepcopy(self.ema_generator).requires_grad_(True)

    def state_dict(self) -> dict:
        return {
            "arch": ARCH,
            "config": asdict(self.config),
            "bf16": self.bf16,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "ema_generator": self.ema_generator.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "images_seen": self.images_seen,
            "steps": self.steps,
            "elapsed_seconds": self.elapsed_seconds,
            "last_r1": self.last_r1,
            "torch_rng": self.torch_rng.get_state(),
            "data_rng": self.data_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.ema_generator.load_state_dict(state["ema_generator"])
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        self.images_seen = int(state["images_seen"])
        self.steps = int(state["steps"])
        if self.steps * self.config.batch_size != self.images_seen:
            raise ValueError(f"its step count {self.steps} and image count {self.images_seen} "
                             f"disagree for batch size {self.config.batch_size}")
        self.elapsed_seconds = float(state["elapsed_seconds"])
        self.last_r1 = float(state["last_r1"])
        self.torch_rng.set_state(state["torch_rng"])
        self.data_rng.bit_generator.state = state["data_rng"]

    def save_checkpoint(self, path: Path) -> None:
        write_checkpoint(path, self.state_dict())

    def load_checkpoint(self, path: Path) -> None:
        restore_checkpoint(self, path, ARCH, self._resume_differences)

    def _resume_differences(self, state: dict) -> list[str]:
        differing = self.config.resume_differences(state["config"])
        if "bf16" in state and state["bf16"] != self.bf16:
            differing.append(f"precision {self.config.precision!r} ran as "
                             f"{'bf16' if state['bf16'] else 'fp32'}, here as "
                             f"{'bf16' if self.bf16 else 'fp32'}")
        return differing

    def describe_phase(self) -> str:
        return ""  # one phase: no progressive growing

    def run(self, stop_at_images: int | None = None) -> None:
        """Trains until total_images (or `stop_at_images`), logging, sampling, saving."""
        run_loop(self, stop_at_images)

    def training_record(self) -> dict:
        return {"arch": ARCH, **self.config.recipe(), "images_seen": self.images_seen,
                "wall_seconds": round(self.elapsed_seconds),
                "ran_as": "bf16" if self.bf16 else "fp32"}


def train(config: StyleGAN2TrainConfig) -> Path:
    """Runs (or resumes) a whole training run; returns the path of the saved G_ema."""
    choice = describe_choice(config.precision, CPU)
    return train_in_folder(config, StyleGAN2Trainer, {"arch": ARCH, **asdict(config)},
                           notes=[choice] if choice is not None else [])
