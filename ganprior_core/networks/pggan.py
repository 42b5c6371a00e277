"""PGGAN generator (Karras et al. 2018) as a flat, splittable list of layers.

Layer numbering follows mGANprior / genforce: layer 0 is the 4x4 "Dense" (a 4x4 convolution
applied with padding 3 to z viewed as [B, latent, 1, 1]), layer 1 the 4x4 "Conv"; every higher
resolution r = 4 * 2**b contributes layer 2b ("Conv0": 2x upsample then 3x3 conv) and layer
2b + 1 ("Conv1"). toRGB of the final resolution comes after the last layer and is not counted.

Splitting at k means G1 = layers[:k] (z -> features) and G2 = layers[k:] + toRGB.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2
PIXEL_NORM_EPS = 1e-8
# Below this input size oneDNN's stride-2 transposed conv is slower than upsample + conv despite
# its fewer FLOPs; from 16x16 on it is faster (timings in docs/benchmarks.md).
TRANSPOSED_UPSAMPLE_MIN_SIZE = 16


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + PIXEL_NORM_EPS)


@dataclass(frozen=True)
class PGGANConfig:
    """Architecture of a PGGAN generator: enough to rebuild it from weights."""

    resolution: int
    channels: tuple[int, ...]  # feature channels per resolution 4, 8, ..., resolution
    latent_dim: int = 512
    fused_scale: bool = False

    def __post_init__(self) -> None:
        log2 = math.log2(self.resolution) if self.resolution > 0 else -1
        if log2 != int(log2) or not 8 <= self.resolution <= 1024:
            raise ValueError(
                f"PGGAN resolution must be a power of two from 8 to 1024, got {self.resolution}")
        expected = int(log2) - 1
        if len(self.channels) != expected:
            raise ValueError(
                f"a {self.resolution}x{self.resolution} PGGAN needs {expected} channel counts "
                f"(one per resolution 4..{self.resolution}), got {len(self.channels)}")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

    @classmethod
    def official(cls, resolution: int, fmap_base: int = 8192, fmap_max: int = 512,
                 latent_dim: int = 512, fused_scale: bool = False) -> "PGGANConfig":
        """The channel plan of NVIDIA's released models.

        The official code gives resolution 2**res the channels nf(res - 1) = fmap_base /
        2**(res - 1), capped at fmap_max: 512 up to 32x32, then 256, 128, 64, 32, 16.
        """
        blocks = int(math.log2(resolution)) - 1
        channels = tuple(min(fmap_base // 2 ** (b + 1), fmap_max) for b in range(blocks))
        return cls(resolution, channels, latent_dim, fused_scale)

    @property
    def num_layers(self) -> int:
        return 2 * len(self.channels)

    def layer_resolution(self, index: int) -> int:
        return 4 * 2 ** (index // 2)

    def feature_shape(self, split: int) -> tuple[int, int, int]:
        """(channels, height, width) of G1's output when splitting at `split`."""
        self.check_split(split)
        last = split - 1
        size = self.layer_resolution(last)
        return (self.channels[last // 2], size, size)

    def check_split(self, split: int) -> None:
        if not 1 <= split <= self.num_layers:
            raise ValueError(
                f"split layer k={split} is outside this {self.resolution}x{self.resolution} "
                f"generator: k must be between 1 and {self.num_layers} "
                f"(the generator has {self.num_layers} conv layers)")

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict) -> "PGGANConfig":
        return cls(int(data["resolution"]), tuple(data["channels"]),
                   int(data.get("latent_dim", 512)), bool(data.get("fused_scale", False)))


class EqualizedConv2d(nn.Module):
    """Conv with equalised learning rate: weights stored unscaled, scaled at run time."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float,
                 padding: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class DenseLayer(nn.Module):
    """Layer 0: pixel-normalised z -> [B, C, 4, 4] (the "4x4/Dense" of the official code)."""

    def __init__(self, latent_dim: int, out_channels: int) -> None:
        super().__init__()
        # A 4x4 kernel with padding 3 on a 1x1 input is a dense layer with fan_in latent_dim*16
        # as in genforce; the official gain sqrt(2)/4 with fan_in latent_dim is the same scale.
        self.conv = EqualizedConv2d(latent_dim, out_channels, 4, math.sqrt(2), padding=3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(z.reshape(z.shape[0], -1, 1, 1)).flatten(1)  # [B, latent]
        # Computed as the matrix product it is: output pixel (i, j) sees the 1x1 input through
        # kernel tap (3 - i, 3 - j). As a conv, oneDNN works through a mostly-zero 7x7 padded
        # input, hundreds of times slower (a quarter of a 64x64-prior step went there).
        weight = (self.conv.weight * self.conv.scale).flip(2, 3)  # [C, latent, 4, 4]
        matrix = weight.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # [C * 16, latent]
        bias = self.conv.bias.repeat_interleave(16)
        out = F.linear(x, matrix, bias).view(x.shape[0], -1, 4, 4)  # [B, C, 4, 4]
        return pixel_norm(F.leaky_relu(out, LEAKY_SLOPE))


class ConvLayer(nn.Module):
    """3x3 conv, optionally after 2x nearest-neighbour upsampling ("Conv0" / "Conv1")."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = EqualizedConv2d(in_channels, out_channels, 3, math.sqrt(2), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample and x.shape[-1] >= TRANSPOSED_UPSAMPLE_MIN_SIZE:
            x = upsample_conv3x3(x, self.conv.weight * self.conv.scale, self.conv.bias)
        elif self.upsample:
            x = self.conv(nearest_upsample2x(x))
        else:
            x = self.conv(x)
        return pixel_norm(F.leaky_relu(x, LEAKY_SLOPE))


def nearest_upsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x nearest-neighbour upsampling as a broadcast copy, keeping x's memory format.

    Same values as `interpolate(x, scale_factor=2, mode="nearest")`, but its gradient is a sum
    over each 2x2 block, an ordinary reduction. torch.compile turns interpolate's gradient into a
    scatter that CUDA runs with atomic adds, whose order (and so rounding) changes from run to
    run: same seed, different result."""
    if _is_channels_last(x) and not x.is_contiguous():
        pixels = x.permute(0, 2, 3, 1)  # [B, H, W, C], contiguous
        b, h, w, c = pixels.shape
        up = pixels[:, :, None, :, None, :].expand(b, h, 2, w, 2, c).reshape(b, 2 * h, 2 * w, c)
        return up.permute(0, 3, 1, 2)  # [B, C, 2H, 2W], channels_last
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


def _is_channels_last(x: torch.Tensor) -> bool:
    """x.is_contiguous(memory_format=torch.channels_last), read from the strides: torch.func.vmap
    (method/batched.py's vectorised members) cannot answer that query, but has the strides."""
    expected = 1
    for dim in (1, 3, 2, 0):
        if x.shape[dim] != 1 and x.stride(dim) != expected:
            return False
        expected *= x.shape[dim]
    return True


class _UpsamplingTransposedConv(torch.autograd.Function):
    """conv_transpose2d(x, kernel, bias, stride=2, padding=1) with its backward written out.

    The transposed conv is the adjoint of the stride-2 conv with the same kernel: its input
    gradient is that conv applied to the output gradient, and its kernel gradient is that conv's
    weight gradient with input and output gradient swapped. oneDNN runs these faster than its
    own transposed-conv backward (docs/benchmarks.md), and the kernel gradient is the same bit
    for bit in fp32."""

    generate_vmap_rule = True  # its forward and backward are torch operations that vmap batches

    @staticmethod
    def forward(x, kernel, bias):
        return F.conv_transpose2d(x, kernel, bias, stride=2, padding=1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, kernel, bias = inputs
        ctx.save_for_backward(x, kernel)
        ctx.bias_dtype = bias.dtype

    @staticmethod
    def backward(ctx, grad):
        x, kernel = ctx.saved_tensors
        # Under autocast the forward ran in the gradient's dtype; the saved tensors did not.
        kernel_as_grad = kernel.to(grad.dtype)
        grad_x = grad_kernel = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, kernel_as_grad, stride=2, padding=1).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_kernel = torch.ops.aten.convolution_backward(
                x.to(grad.dtype), grad, kernel_as_grad, None, [2, 2], [1, 1], [1, 1], False,
                [0, 0], 1, [False, True, False])[1].to(kernel.dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3), dtype=ctx.bias_dtype)
        return grad_x, grad_kernel, grad_bias


def upsample_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """2x nearest upsampling then a 3x3 conv (padding 1), as one stride-2 transposed 4x4 conv.

    Same result as `conv2d(interpolate(x, scale_factor=2), weight, bias, padding=1)` up to float
    rounding, with 16 instead of 36 multiply-adds per input pixel and channel pair, and no
    upsampled copy of x. An output pixel sees each input pixel through the sum of the 3x3 taps
    that land on that pixel's 2x2 copy, so the 4x4 kernel is the sum of the four one-pixel
    shifts of the flipped 3x3 kernel (flipped because a transposed conv scatters).
    """
    flipped = F.pad(weight.flip(2, 3).transpose(0, 1), (1, 1, 1, 1))  # [in, out, 5, 5]
    kernel = (flipped[:, :, 1:, 1:] + flipped[:, :, :-1, 1:]
              + flipped[:, :, 1:, :-1] + flipped[:, :, :-1, :-1])  # [in, out, 4, 4]
    return _UpsamplingTransposedConv.apply(x, kernel, bias)


class FusedUpConvLayer(nn.Module):
    """"Conv0_up" of fused_scale models: upsample + 3x3 conv as one stride-2 transposed conv.

    The 3x3 kernel is stored unscaled in conv_transpose layout [in, out, 3, 3]; the 4x4
    transposed kernel is the sum of its four one-pixel shifts, as in NVIDIA's upscale2d_conv2d.
    That equals nearest upsampling followed by a 3x3 conv with the spatially flipped kernel
    (a transposed conv applies its kernel reversed).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_channels, out_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = math.sqrt(2) / math.sqrt(in_channels * 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.pad(self.weight * self.scale, (1, 1, 1, 1))  # [in, out, 5, 5]
        w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]  # 4x4
        x = _UpsamplingTransposedConv.apply(x, w, self.bias)
        return pixel_norm(F.leaky_relu(x, LEAKY_SLOPE))


class PGGANGenerator(nn.Module):
    def __init__(self, config: PGGANConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.channels
        layers: list[nn.Module] = [DenseLayer(config.latent_dim, channels[0]),
                                   ConvLayer(channels[0], channels[0], upsample=False)]
        for block in range(1, len(channels)):
            in_ch, out_ch = channels[block - 1], channels[block]
            layers.append(FusedUpConvLayer(in_ch, out_ch) if config.fused_scale
                          else ConvLayer(in_ch, out_ch, upsample=True))
            layers.append(ConvLayer(out_ch, out_ch, upsample=False))
        self.layers = nn.ModuleList(layers)
        self.to_rgb = EqualizedConv2d(channels[-1], 3, 1, gain=1.0, padding=0)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def features(self, z: torch.Tensor, split: int) -> torch.Tensor:
        """G1: latents [B, latent_dim] -> features [B, *config.feature_shape(split)]."""
        self.config.check_split(split)
        x = z
        for layer in self.layers[:split]:
            x = layer(x)
        return x

    def synthesize(self, features: torch.Tensor, split: int) -> torch.Tensor:
        """G2: features from layer `split` -> image [B, 3, R, R] in about [-1, 1] (unclamped)."""
        self.config.check_split(split)
        x = features
        for layer in self.layers[split:]:
            x = layer(x)
        return self.to_rgb(x)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesize(self.features(z, self.num_layers), self.num_layers)
