"""Deep Image Prior (Ulyanov et al. 2018): the paper's CNN baseline, with no pretrained weights.

A randomly initialised encoder-decoder ("hourglass" with skip connections, their `skip()` network)
maps a fixed noise tensor to the image and is fitted to the known pixels only; the structure of
the network, not any training data, fills the hole. Defaults follow their inpainting setup:
5 levels, 3x3 convs, stride-2 downsampling, bilinear upsampling, BatchNorm + LeakyReLU,
reflection padding, sigmoid output, 32-channel uniform noise x 0.1 as input, Adam at lr 0.01 on a
masked MSE, and optional jitter of the input (sigma = 1/30) as regularisation.

`dip_restore` fits the same network through a degradation operator (super-resolution,
colorization, chains: method/degradations.py), on the same loss restore fits the generator with,
and projects its image as restore does, so the bench compares DIP and the GAN prior on equal
terms: same observation, same comparison, same consistency.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import imaging
from ..method import compiler_cache
from ..method.degradations import Degradation
from ..method.precision import PRECISIONS, uses_bf16
from ..method.results import InpaintResult, Progress, report_step

UPSAMPLE_MODES = ("bilinear", "nearest")
LEAKY_SLOPE = 0.2
SMALLEST_FEATURE_SIDE = 2  # reflection padding of a 3x3 conv needs maps of at least 2 pixels


@dataclass(frozen=True)
class DIPConfig:
    steps: int = 3000
    learning_rate: float = 0.01
    levels: int = 5  # stride-2 downsamplings; fewer are used if the image is too small for them
    channels: int | None = None  # down/up channels per level; None = scaled to the image size
    skip_channels: int = 4  # channels of each skip connection (0 = no skips)
    input_channels: int = 32
    input_scale: float = 0.1  # the input is uniform noise in [0, input_scale)
    input_noise_std: float = 1 / 30  # fresh Gaussian jitter of the input every step; 0 = off
    upsample: str = "bilinear"
    precision: str = "fp32"  # bf16 autocast for the network; parameters and loss stay fp32
    preview_every: int = 50  # progress carries loss and preview image every this many steps

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.levels < 1:
            raise ValueError(f"levels must be at least 1, got {self.levels}")
        if self.channels is not None and self.channels < 1:
            raise ValueError(f"channels must be at least 1, got {self.channels}")
        if min(self.skip_channels, self.input_noise_std, self.input_scale) < 0:
            raise ValueError("skip channels, input scale and input noise must not be negative")
        if self.input_channels < 1 or self.learning_rate <= 0:
            raise ValueError("input channels and learning rate must be positive")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {self.upsample!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.preview_every < 1:
            raise ValueError(f"preview_every must be at least 1, got {self.preview_every}")

    def channels_for(self, height: int, width: int) -> int:
        """Ulyanov et al. use 128 channels on 512-pixel images; smaller images get fewer
        (half the shorter side, at least 16) so a 64x64 fit stays affordable on a CPU."""
        if self.channels is not None:
            return self.channels
        return max(16, min(128, min(height, width) // 2))

    def levels_for(self, height: int, width: int) -> int:
        deepest = max(0, int(math.log2(min(height, width) / SMALLEST_FEATURE_SIDE)))
        return max(1, min(self.levels, deepest))

    def describe(self, height: int, width: int) -> str:
        return (f"{self.levels_for(height, width)} levels, {self.channels_for(height, width)} "
                f"channels down/up, {self.skip_channels}-channel skips, {self.input_channels}-channel "
                f"noise input x {self.input_scale:g}, input jitter sigma {self.input_noise_std:.4g}, "
                f"{self.upsample} upsampling, Adam lr {self.learning_rate:g}, {self.steps} steps, "
                f"{self.precision}")


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    padding = (kernel_size - 1) // 2
    layers: list[nn.Module] = [nn.ReflectionPad2d(padding)] if padding else []
    layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride))
    return nn.Sequential(*layers)


def _conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(in_channels, out_channels, kernel_size, stride),
                         nn.BatchNorm2d(out_channels), nn.LeakyReLU(LEAKY_SLOPE))


class HourglassLevel(nn.Module):
    """One level of the `skip()` network: a skip branch beside a stride-2 path through the deeper
    levels, concatenated at this level's resolution and merged by a 3x3 and a 1x1 conv."""

    def __init__(self, in_channels: int, channels: int, skip_channels: int,
                 deeper: "HourglassLevel | None", upsample: str) -> None:
        super().__init__()
        self.skip = _conv_bn_act(in_channels, skip_channels, 1) if skip_channels else None
        self.down = nn.Sequential(_conv_bn_act(in_channels, channels, 3, stride=2),
                                  _conv_bn_act(channels, channels, 3))
        self.deeper = deeper
        self.upsample = upsample
        merged = skip_channels + channels
        self.merge_norm = nn.BatchNorm2d(merged)
        self.merge = nn.Sequential(_conv_bn_act(merged, channels, 3), _conv_bn_act(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.down(x)
        if self.deeper is not None:
            deep = self.deeper(deep)
        align = False if self.upsample == "bilinear" else None
        deep = F.interpolate(deep, scale_factor=2, mode=self.upsample, align_corners=align)
        # Odd sizes round up on the way down and come back one pixel larger: crop to match.
        deep = deep[..., :x.shape[-2], :x.shape[-1]]
        merged = deep if self.skip is None else torch.cat([self.skip(x), deep], dim=1)
        return self.merge(self.merge_norm(merged))


class HourglassNet(nn.Module):
    def __init__(self, input_channels: int, channels: int, skip_channels: int, levels: int,
                 upsample: str, output_channels: int = 3) -> None:
        super().__init__()
        level = None
        for depth in reversed(range(levels)):
            level = HourglassLevel(input_channels if depth == 0 else channels, channels,
                                   skip_channels, level, upsample)
        self.body = level
        self.to_rgb = _conv(channels, output_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.to_rgb(self.body(x)))


def dip_inpaint(image: torch.Tensor, hole_mask: torch.Tensor | None, config: DIPConfig = DIPConfig(),
                seed: int = 0, device: str | torch.device = "cpu",
                callback: Callable[[Progress], None] | None = None) -> InpaintResult:
    """Fit a fresh hourglass network to the known pixels of `image` and fill the hole.

    image: [3, H, W] in [0, 1]; hole_mask: [H, W] with 1 = hole, or None to fit the whole image.
    The same seed gives the same weights, input and jitter, hence the same result. `callback`
    is called after every step; raising from it cancels the run (the exception propagates).
    """
    config.validate()
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be [3, H, W], got {list(image.shape)}")
    height, width = image.shape[1:]
    if hole_mask is not None and tuple(hole_mask.shape) != (height, width):
        raise ValueError(f"hole mask must be [{height}, {width}], got {list(hole_mask.shape)}")
    started = time.perf_counter()
    device = torch.device(device)
    image = image.detach().to(device, torch.float32)
    hole = (torch.zeros(height, width, device=device) if hole_mask is None
            else imaging.hole_pixels(hole_mask.detach().to(device)).float())
    known = (1 - hole)[None, None]
    notes: list[str] = []
    if not known.any():
        notes.append("the mask covers the whole image: nothing is known, so the result is the "
                     "untrained network's output")
    target = image[None] * known
    final, losses = _fit(config, (height, width), lambda output: F.mse_loss(output * known, target),
                         seed, device, callback, notes)
    composite = imaging.composite(image, final, hole)
    return InpaintResult(output=final.cpu(), composite=composite.cpu(), loss_history=losses,
                         seconds=time.perf_counter() - started, notes=notes,
                         steps_run=config.steps, stop_reason=f"fixed {config.steps} steps")


def dip_restore(observation: torch.Tensor, degradation: Degradation, config: DIPConfig = DIPConfig(),
                seed: int = 0, device: str | torch.device = "cpu",
                callback: Callable[[Progress], None] | None = None) -> InpaintResult:
    """DIP through a degradation operator (super-resolution, colorization, chains): the network
    makes the image at the degradation's input size, and its loss is the squared error of
    `degradation.observe(image)` against the observation on the observed entries, the same
    comparison `restore` fits the generator with. The result is `degradation.project(image,
    observation)`, so it is consistent with the observation exactly as restore's is.

    observation: [C, h, w] in [0, 1] on the degradation's grid (C = 1 for a gray observation).
    Returns an InpaintResult: `output` the network's image, `composite` the projected result.
    """
    config.validate()
    if not isinstance(degradation, Degradation):
        raise ValueError(f"degradation must be a Degradation, got {type(degradation).__name__}")
    if observation.dim() != 3:
        raise ValueError(f"observation must be [C, h, w], got {list(observation.shape)}")
    size = degradation.input_size(tuple(observation.shape[1:]))
    expected = degradation.observation_shape((1, 3, *size))
    if tuple(observation.shape) != tuple(expected[1:]):
        raise ValueError(f"observation must be {list(expected[1:])} for {degradation!r}, got "
                         f"{list(observation.shape)}")
    started = time.perf_counter()
    device = torch.device(device)
    y = observation.detach().to(device, torch.float32)[None].clamp(0, 1)
    observed = degradation.observed_mask(tuple(y.shape[2:]), device)[None, None]
    notes: list[str] = []
    # Mean over the observed entries (every channel of each), as restore's ObservationLoss.
    weight = 1 / (observed.sum() * y.shape[1]).clamp_min(1)

    def loss_of(output: torch.Tensor) -> torch.Tensor:
        return ((degradation.observe(output) - y) ** 2 * observed).sum() * weight

    final, losses = _fit(config, size, loss_of, seed, device, callback, notes)
    projected, report = degradation.project(final[None], y)
    notes += report.notes
    return InpaintResult(output=final.cpu(), composite=projected[0].cpu(), loss_history=losses,
                         seconds=time.perf_counter() - started, notes=notes,
                         steps_run=config.steps, stop_reason=f"fixed {config.steps} steps")


def _fit(config: DIPConfig, size: tuple[int, int], loss_of: Callable[[torch.Tensor], torch.Tensor],
         seed: int, device: torch.device, callback: Callable[[Progress], None] | None,
         notes: list[str]) -> tuple[torch.Tensor, list[float]]:
    """A fresh seeded hourglass network of `size` fitted for config.steps steps to `loss_of` (of
    its fp32 image [1, 3, H, W]); returns its final image [3, H, W] in [0, 1] and the losses."""
    height, width = size
    levels = config.levels_for(height, width)
    if levels < config.levels:
        notes.append(f"{height}x{width} is too small for {config.levels} levels: using {levels}")
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        torch.manual_seed(seed)
        network = HourglassNet(config.input_channels, config.channels_for(height, width),
                               config.skip_channels, levels, config.upsample).to(device)
    noise = torch.Generator().manual_seed(seed)
    net_input = (torch.rand(1, config.input_channels, height, width, generator=noise)
                 * config.input_scale).to(device)
    compiler_cache.prepare_cache_dir(notes)  # Adam imports the compiler stack (see there)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    network.train()  # batch statistics throughout, as in the original: running stats never fit

    use_bf16 = uses_bf16(config.precision, device)
    losses = torch.empty(config.steps, device=device)  # kept on device: no host sync per step
    for step in range(config.steps):
        jittered = net_input
        if config.input_noise_std > 0:
            jitter = torch.randn(net_input.shape, generator=noise).to(device)
            jittered = net_input + config.input_noise_std * jitter
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            output = network(jittered)
        loss = loss_of(output.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = loss.detach()
        report_step(callback, step + 1, config.steps, config.preview_every, loss, output,
                    lambda image: image[0].float())

    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        final = network(net_input)[0].float().clamp(0, 1)
    return final, losses.cpu().tolist()
