"""StyleGAN2 generator (Karras et al. 2020, config F / "skip" architecture) as splittable layers.

The network computes what NVIDIA's stylegan2-ada-pytorch `training/networks.py` Generator computes
in float32 (its fp16 blocks aside), and its state dict uses that Generator's tensor names, so a
G_ema state dict loads with `load_state_dict(strict=True)` and no renaming. The code is our own.

Layer numbering. The synthesis conv layers are numbered 0..L-1 in the order they run:
layer 0 is b4.conv1 (on the learned 4x4 constant), and block b >= 1 (resolution 4 * 2**b)
contributes layer 2b - 1 (conv0: 2x upsampling 3x3 conv) and layer 2b (conv1: 3x3 conv).
L = num_ws - 1 = 2 * log2(resolution) - 3. Conv layer j reads style slot ws[:, j]; the ToRGB
of the block whose conv1 is layer j reads ws[:, j + 1] (NVIDIA's assignment: b4 uses ws[0],
ws[1]; block b uses ws[2b - 1], ws[2b], ws[2b + 1]).

Splits. Splitting at k (1 <= k <= L) means G1 = conv layers [:k], G2 = conv layers [k:]. A
block's ToRGB runs right after its conv1, on the same side as that conv1. Because layer 0 always
belongs to G1, the b4 ToRGB always runs in G1, so G1 always hands over two tensors:
  x    [N, C, H, W]  the features after layer k - 1 (`feature_shape(k)`),
  img  [N, 3, h, h]  the skip-architecture image summed over the blocks completed so far
                     (`skip_image_shape(k)`: h = H after a conv1, h = H / 2 after a conv0).
The skip image travels with the features: G2 upsamples it and adds its own blocks' ToRGB
outputs. Both halves take the full ws [N, num_ws, w_dim] and read only their own slots
(`split_ws_slots(k)`); for odd k both read slot k (G1's last ToRGB and G2's first conv).

Noise modes (per-pixel noise added after each modulated conv): "const" uses each layer's stored
`noise_const` buffer times `noise_strength` (deterministic, NVIDIA's noise_mode='const'),
"none" adds nothing, "random" draws fresh N(0, 1) noise [N, 1, H, W] per layer from the given
torch.Generator (or the global one) times `noise_strength`.

Mixed precision: under bf16 autocast the convolutions run in bf16, while the mapping network,
the styles, the demodulation coefficients and the skip image stay in float32.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the activation's second moment (NVIDIA's def_gain)
MOMENT_EPS = 1e-8  # normalize_2nd_moment of z
DEMOD_EPS = 1e-8
RESAMPLE_TAPS = (1.0, 3.0, 3.0, 1.0)
NOISE_MODES = ("const", "none", "random")


def resample_filter() -> torch.Tensor:
    """NVIDIA's setup_filter([1, 3, 3, 1]): the outer product normalised to sum 1, [4, 4]."""
    taps = torch.tensor(RESAMPLE_TAPS)
    kernel = torch.outer(taps, taps)
    return kernel / kernel.sum()


def _check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")


def _no_autocast(device: torch.device):
    if device.type == "meta":  # shape-only runs (FLOP counts): autocast knows no meta dtype
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"StyleGAN2 {name} must be a positive integer, got {value!r}")
    return value


def _positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"StyleGAN2 {name} must be a positive finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class StyleGAN2Config:
    """Architecture of a StyleGAN2 generator: enough to rebuild it from weights."""

    resolution: int
    channels: tuple[int, ...]  # feature channels per resolution 4, 8, ..., resolution
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01  # runtime gain of the mapping network's stored weights
    conv_clamp: float | None = None  # clamp conv and ToRGB outputs to +-conv_clamp; None = off
    img_channels: int = 3

    def __post_init__(self) -> None:
        r = self.resolution
        if isinstance(r, bool) or not isinstance(r, int) or r < 8 or r > 1024 or r & (r - 1):
            raise ValueError(
                f"StyleGAN2 resolution must be a power of two from 8 to 1024, got {r!r}")
        if isinstance(self.channels, (str, bytes)) or not hasattr(self.channels, "__len__"):
            raise ValueError(f"StyleGAN2 channels must be a sequence of positive integers, "
                             f"got {self.channels!r}")
        expected = int(math.log2(r)) - 1
        if len(self.channels) != expected:
            raise ValueError(
                f"a {r}x{r} StyleGAN2 needs {expected} channel counts (one per resolution "
                f"4..{r}), got {len(self.channels)}")
        channels = tuple(_positive_int("channels entry", c) for c in self.channels)
        object.__setattr__(self, "channels", channels)
        for name in ("z_dim", "w_dim", "mapping_layers", "img_channels"):
            _positive_int(name, getattr(self, name))
        object.__setattr__(self, "mapping_lr_multiplier",
                           _positive_float("mapping_lr_multiplier", self.mapping_lr_multiplier))
        if self.conv_clamp is not None:
            object.__setattr__(self, "conv_clamp", _positive_float("conv_clamp (or None)",
                                                                   self.conv_clamp))

    @classmethod
    def official(cls, resolution: int, channel_base: int = 32768, channel_max: int = 512,
                 z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8,
                 conv_clamp: float | None = None) -> "StyleGAN2Config":
        """NVIDIA's channel plan: resolution res gets min(channel_base // res, channel_max).

        stylegan2-ada-pytorch's own training runs use conv_clamp=256; generators converted from
        the TensorFlow StyleGAN2 releases have none.
        """
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 4:
            raise ValueError(f"StyleGAN2 resolution must be a power of two from 8 to 1024, "
                             f"got {resolution!r}")
        resolutions = [2 ** i for i in range(2, resolution.bit_length())]
        channels = tuple(min(channel_base // res, channel_max) for res in resolutions)
        return cls(resolution, channels, z_dim, w_dim, mapping_layers, conv_clamp=conv_clamp)

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(4 * 2 ** b for b in range(len(self.channels)))

    @property
    def num_ws(self) -> int:
        """Style slots: one per conv layer plus one for the last ToRGB (2 * log2(R) - 2)."""
        return 2 * int(math.log2(self.resolution)) - 2

    @property
    def num_layers(self) -> int:
        return self.num_ws - 1

    def layer_name(self, index: int) -> str:
        """'b{res}.conv0' or 'b{res}.conv1' for conv layer `index` (0 = b4.conv1)."""
        block = (index + 1) // 2
        return f"b{4 * 2 ** block}.conv{0 if index % 2 else 1}"

    def check_split(self, split: int) -> None:
        if isinstance(split, bool) or not isinstance(split, int) \
                or not 1 <= split <= self.num_layers:
            raise ValueError(
                f"split layer k={split!r} is outside this {self.resolution}x{self.resolution} "
                f"StyleGAN2: k must be between 1 and {self.num_layers} "
                f"(the generator has {self.num_layers} conv layers)")

    def feature_shape(self, split: int) -> tuple[int, int, int]:
        """(channels, height, width) of G1's features when splitting at `split`."""
        self.check_split(split)
        block = split // 2  # the block of layer split - 1
        size = 4 * 2 ** block
        return (self.channels[block], size, size)

    def skip_image_shape(self, split: int) -> tuple[int, int, int]:
        """(img_channels, h, w) of the skip image G1 hands over: that of the last whole block."""
        self.check_split(split)
        size = 4 * 2 ** ((split - 1) // 2)
        return (self.img_channels, size, size)

    def split_ws_slots(self, split: int) -> tuple[range, range]:
        """The ws slots G1 and G2 read; they share slot `split` when `split` is odd and G2 has
        layers (at split = num_layers G2 runs nothing and reads no slot)."""
        self.check_split(split)
        g2_start = split if split < self.num_layers else self.num_ws
        return range(0, split + split % 2), range(g2_start, self.num_ws)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """{state-dict name: shape} of every parameter and buffer, in state-dict order.

        Computed from the config alone, so a loader can check a file before building anything.
        """
        shapes: dict[str, tuple[int, ...]] = {}
        w = self.w_dim

        def modulated(prefix: str, c_in: int, c_out: int, size: int, kernel: int,
                      noise: bool) -> None:
            shapes[f"{prefix}.weight"] = (c_out, c_in, kernel, kernel)
            if noise:
                shapes[f"{prefix}.noise_strength"] = ()
            shapes[f"{prefix}.bias"] = (c_out,)
            if noise:
                shapes[f"{prefix}.resample_filter"] = (4, 4)
                shapes[f"{prefix}.noise_const"] = (size, size)
            shapes[f"{prefix}.affine.weight"] = (c_in, w)
            shapes[f"{prefix}.affine.bias"] = (c_in,)

        previous = 0
        for res, c in zip(self.resolutions, self.channels):
            block = f"synthesis.b{res}"
            if res == 4:
                shapes[f"{block}.const"] = (c, 4, 4)
            shapes[f"{block}.resample_filter"] = (4, 4)
            if res > 4:
                modulated(f"{block}.conv0", previous, c, res, 3, noise=True)
            modulated(f"{block}.conv1", c, c, res, 3, noise=True)
            modulated(f"{block}.torgb", c, self.img_channels, res, 1, noise=False)
            previous = c
        shapes["mapping.w_avg"] = (w,)
        for i in range(self.mapping_layers):
            shapes[f"mapping.fc{i}.weight"] = (w, self.z_dim if i == 0 else w)
            shapes[f"mapping.fc{i}.bias"] = (w,)
        return shapes

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict) -> "StyleGAN2Config":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown StyleGAN2 config field(s): {', '.join(map(str, unknown))}")
        missing = [name for name in ("resolution", "channels") if name not in data]
        if missing:
            raise ValueError(f"StyleGAN2 config is missing {', '.join(missing)}")
        values = dict(data)
        if isinstance(values["channels"], list):
            values["channels"] = tuple(values["channels"])
        return cls(**values)


class FullyConnected(nn.Module):
    """Linear layer with equalised learning rate: raw weights scaled by lr_mul / sqrt(fan_in)."""

    def __init__(self, in_features: int, out_features: int, activation: bool,
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation  # leaky ReLU * sqrt(2) after the bias, else linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return F.leaky_relu(x, LEAKY_SLOPE) * LRELU_GAIN if self.activation else x


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> ws [N, num_ws, w_dim]: normalised z through an MLP, then truncation."""

    def __init__(self, config: StyleGAN2Config) -> None:
        super().__init__()
        self.num_ws = config.num_ws
        self.num_layers = config.mapping_layers
        for i in range(config.mapping_layers):
            fan_in = config.z_dim if i == 0 else config.w_dim
            setattr(self, f"fc{i}", FullyConnected(fan_in, config.w_dim, activation=True,
                                                   lr_multiplier=config.mapping_lr_multiplier))
        # The running mean of w over training: the centre truncation pulls towards.
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.fc0.weight.shape[1]:
            raise ValueError(f"z must be [N, {self.fc0.weight.shape[1]}], got {list(z.shape)}")
        if truncation_cutoff is not None and (isinstance(truncation_cutoff, bool)
                                              or not isinstance(truncation_cutoff, int)
                                              or truncation_cutoff < 0):
            raise ValueError(f"truncation_cutoff must be None or a non-negative integer, "
                             f"got {truncation_cutoff!r}")
        # A small MLP: float32 keeps w exact for the optimiser at no real cost.
        with _no_autocast(z.device):
            x = z.float()
            x = x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + MOMENT_EPS)
            for i in range(self.num_layers):
                x = getattr(self, f"fc{i}")(x)  # [N, w_dim]
            ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
            if truncation_psi != 1:
                cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
                head = self.w_avg + truncation_psi * (ws[:, :cut] - self.w_avg)
                ws = torch.cat([head, ws[:, cut:]], dim=1)
        return ws


class ModulatedConv3x3(nn.Module):
    """NVIDIA's SynthesisLayer: style-modulated, demodulated 3x3 conv, noise, bias, lrelu, clamp.

    Runs as NVIDIA's non-fused path: scale the input channels by the styles, convolve with the
    shared weight, scale the output channels by the demodulation coefficients. This is the same
    as convolving each sample with its own modulated-demodulated weight, but one dense conv over
    the batch (and one shared weight gradient) instead of a grouped conv. The stored weight has
    no runtime gain: demodulation cancels any scale (NVIDIA applies none here).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 upsample: bool, conv_clamp: float | None) -> None:
        super().__init__()
        self.upsample = upsample
        self.resolution = resolution
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", resample_filter())
        self.affine = FullyConnected(w_dim, in_channels, activation=False, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def demodulation(self, styles: torch.Tensor) -> torch.Tensor:
        """rsqrt of the squared modulated weight summed over (in, ky, kx), [N, out], float32."""
        with _no_autocast(styles.device):
            energy = self.weight.float().square().sum(dim=(2, 3))  # [out, in]
            return torch.rsqrt(styles.float().square() @ energy.t() + DEMOD_EPS)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str,
                noise_generator: torch.Generator | None = None) -> torch.Tensor:
        with _no_autocast(w.device):
            styles = self.affine(w.float())  # [N, in]
        demod = self.demodulation(styles)  # [N, out]
        x = x * styles.to(x.dtype)[:, :, None, None]
        weight = self.weight.to(x.dtype)
        if self.upsample:
            # NVIDIA's up=2 conv is a true convolution (not correlation): the stride-2
            # transposed conv with the unflipped kernel, [N, out, 2H + 1, 2W + 1] ...
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            # ... then the [1,3,3,1] low-pass at gain 4 (2x2 zero insertion keeps 1/4 of the
            # energy), padded 1 on each side so the output is exactly [N, out, 2H, 2W].
            channels = x.shape[1]
            blur = (self.resample_filter * 4).flip(0, 1).to(x.dtype)
            x = F.conv2d(F.pad(x, (1, 1, 1, 1)), blur.expand(channels, 1, 4, 4), groups=channels)
        else:
            x = F.conv2d(x, weight, padding=1)  # [N, out, H, W]
        x = x * demod.to(x.dtype)[:, :, None, None]

        if noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        elif noise_mode == "random":
            device = noise_generator.device if noise_generator is not None else x.device
            noise = torch.randn((x.shape[0], 1, self.resolution, self.resolution),
                                generator=noise_generator, device=device)
            x = x + (noise.to(x.device) * self.noise_strength).to(x.dtype)

        x = F.leaky_relu(x + self.bias.to(x.dtype)[:, None, None], LEAKY_SLOPE) * LRELU_GAIN
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToRGB(nn.Module):
    """Style-modulated 1x1 conv to image channels, without demodulation; linear bias, clamp."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int,
                 conv_clamp: float | None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, activation=False, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)  # fan_in of a 1x1 kernel

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        with _no_autocast(w.device):
            styles = self.affine(w.float()) * self.weight_gain  # [N, in]
        y = F.conv2d(x * styles.to(x.dtype)[:, :, None, None], self.weight.to(x.dtype))
        y = y.float() + self.bias[:, None, None]  # [N, img_channels, H, W], float32
        if self.conv_clamp is not None:
            y = y.clamp(-self.conv_clamp, self.conv_clamp)
        return y


class SynthesisBlock(nn.Module):
    """One resolution: [const | conv0 (2x up)], conv1, and the ToRGB added to the skip image."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int,
                 config: StyleGAN2Config) -> None:
        super().__init__()
        self.resolution = resolution
        self.register_buffer("resample_filter", resample_filter())
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = ModulatedConv3x3(in_channels, out_channels, config.w_dim, resolution,
                                          upsample=True, conv_clamp=config.conv_clamp)
        self.conv1 = ModulatedConv3x3(out_channels, out_channels, config.w_dim, resolution,
                                      upsample=False, conv_clamp=config.conv_clamp)
        self.torgb = ToRGB(out_channels, config.img_channels, config.w_dim, config.conv_clamp)

    def upsample_image(self, img: torch.Tensor) -> torch.Tensor:
        """NVIDIA's upsample2d: 2x zero insertion, [1,3,3,1] filter at gain 4, [N, c, 2h, 2w].

        Written as the depthwise stride-2 transposed conv (a true convolution with the filter)
        whose full [2h + 2] output, cropped by one pixel on each side, is upfirdn2d with
        padding (2, 1).
        """
        with _no_autocast(img.device):
            channels = img.shape[1]
            kernel = (self.resample_filter * 4).expand(channels, 1, 4, 4)
            up = F.conv_transpose2d(img.float(), kernel, stride=2, groups=channels)
            return up[:, :, 1:-1, 1:-1]

    def add_rgb(self, x: torch.Tensor, img: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
        rgb = self.torgb(x, w)
        return rgb if img is None else self.upsample_image(img) + rgb


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R], runnable in two halves."""

    def __init__(self, config: StyleGAN2Config) -> None:
        super().__init__()
        self.config = config
        previous = 0
        for res, channels in zip(config.resolutions, config.channels):
            setattr(self, f"b{res}", SynthesisBlock(previous, channels, res, config))
            previous = channels

    def _check_ws(self, ws: torch.Tensor) -> None:
        shape = [self.config.num_ws, self.config.w_dim]
        if ws.ndim != 3 or list(ws.shape[1:]) != shape:
            raise ValueError(f"ws must be [N, {shape[0]}, {shape[1]}], got {list(ws.shape)}")

    def _run(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
             start: int, stop: int, noise_mode: str, noise_generator: torch.Generator | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv layers start..stop-1, each block's ToRGB right after its conv1."""
        for index in range(start, stop):
            block = getattr(self, f"b{4 * 2 ** ((index + 1) // 2)}")
            w = ws[:, index]  # conv layer j reads slot j
            if index == 0:
                x = block.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)  # [N, C, 4, 4]
            if index % 2:
                x = block.conv0(x, w, noise_mode, noise_generator)
            else:
                x = block.conv1(x, w, noise_mode, noise_generator)
                img = block.add_rgb(x, img, ws[:, index + 1])  # ToRGB reads the next slot
        return x, img

    def features(self, ws: torch.Tensor, split: int, noise_mode: str = "const",
                 noise_generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """G1: ws [N, num_ws, w_dim] -> (features [N, C, H, W], skip image [N, 3, h, h])."""
        self.config.check_split(split)
        _check_noise_mode(noise_mode)
        self._check_ws(ws)
        return self._run(None, None, ws.float(), 0, split, noise_mode, noise_generator)

    def synthesize(self, x: torch.Tensor, img: torch.Tensor, ws: torch.Tensor, split: int,
                   noise_mode: str = "const", noise_generator: torch.Generator | None = None
                   ) -> torch.Tensor:
        """G2: G1's (features, skip image) and ws -> image [N, 3, R, R] (unclamped, ~[-1, 1]).

        ws may have batch 1 to use one set of styles for every sample (e.g. fused features).
        """
        self.config.check_split(split)
        _check_noise_mode(noise_mode)
        self._check_ws(ws)
        batch = x.shape[0]
        if list(x.shape[1:]) != list(self.config.feature_shape(split)):
            raise ValueError(f"features for split {split} must be "
                             f"[N, {', '.join(map(str, self.config.feature_shape(split)))}], "
                             f"got {list(x.shape)}")
        image_shape = [batch, *self.config.skip_image_shape(split)]
        if img is None or list(img.shape) != image_shape:
            raise ValueError(f"skip image for split {split} must be {image_shape}, "
                             f"got {None if img is None else list(img.shape)}")
        if ws.shape[0] not in (1, batch):
            raise ValueError(f"ws batch must be 1 or the features' {batch}, got {ws.shape[0]}")
        ws = ws.float().expand(batch, -1, -1)
        return self._run(x, img, ws, split, self.config.num_layers, noise_mode,
                         noise_generator)[1]

    def forward(self, ws: torch.Tensor, noise_mode: str = "const",
                noise_generator: torch.Generator | None = None) -> torch.Tensor:
        return self.features(ws, self.config.num_layers, noise_mode, noise_generator)[1]


class StyleGAN2Generator(nn.Module):
    """Mapping + synthesis, with the state-dict names of NVIDIA's stylegan2-ada Generator."""

    def __init__(self, config: StyleGAN2Config) -> None:
        super().__init__()
        self.config = config
        self.synthesis = SynthesisNetwork(config)
        self.mapping = MappingNetwork(config)

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    def check_split(self, split: int) -> None:
        self.config.check_split(split)

    def feature_shape(self, split: int) -> tuple[int, int, int]:
        return self.config.feature_shape(split)

    def features(self, ws: torch.Tensor, split: int, noise_mode: str = "const",
                 noise_generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """G1 = conv layers [:split] -> (x [N, *feature_shape(split)],
        img [N, *config.skip_image_shape(split)])."""
        return self.synthesis.features(ws, split, noise_mode, noise_generator)

    def synthesize(self, x: torch.Tensor, img: torch.Tensor, ws: torch.Tensor, split: int,
                   noise_mode: str = "const", noise_generator: torch.Generator | None = None
                   ) -> torch.Tensor:
        """G2 = conv layers [split:] -> image [N, img_channels, R, R]."""
        return self.synthesis.synthesize(x, img, ws, split, noise_mode, noise_generator)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const",
                noise_generator: torch.Generator | None = None) -> torch.Tensor:
        _check_noise_mode(noise_mode)
        ws = self.mapping(z, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode, noise_generator)
