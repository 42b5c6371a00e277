"""PGGAN as a generator family (networks/pggan.py; the paper's own prior).

- a code is z [latent_dim], initialised N(0, 1) from torch.Generator().manual_seed(seed);
- layers are numbered as in mGANprior (layer 0 = the dense 4x4 layer, two per block): G1(z) =
  layers[:k] -> features [N, M, H, W]; G2 = layers[k:] + to_rgb, driven by the features alone
  (no styles, no noise);
- fine-tuning: layers[:k] are G1, layers[k:] and to_rgb are G2.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..method.auto_stop import AutoStopConfig
from ..networks.pggan import PGGANConfig, PGGANGenerator
from .base import (
    SplitGeometry,
    activation_memory,
    feature_map_elements,
    inference_peak_elements,
    latents_shape,
    seeded_normal,
)

# Resident memory of a training step, fp32 and bf16 autocast (base.activation_memory): bytes per
# value of a layer's output (the conv output, activation and pixel-norm output it keeps for the
# backward pass), where that output is a tensor under 32 MiB (served from malloc's heap, which
# fragments) and where it is larger, and per value of the largest layer for the gradients in
# flight; and the per-step copies of the weights in units of the fp32 weights (scaled copies, 4x4
# upsampling kernels, bf16 casts, their gradients). Fitted as the least mean ratio with every
# measured peak at least 8 % below the estimate (docs/memory.md).
TRAINING_BYTES_PER_VALUE = {False: (20.5, 13.0, 17.5), True: (5.0, 3.5, 19.5)}
WEIGHT_COPIES_PER_STEP = {False: 3.0, True: 2.5}
# A forward pass without gradients holds, at its largest layer, the input and this many tensors
# of the output's size (conv, leaky ReLU, the pixel norm's square and product).
INFERENCE_OUTPUT_COPIES = 4.0


def _weight_elements(config: PGGANConfig) -> int:
    """Values of the convolution weights (the dense 4x4 layer, every 3x3 conv, to_rgb)."""
    channels = config.channels
    total = config.latent_dim * channels[0] * 16 + channels[0] * channels[0] * 9
    for block in range(1, len(channels)):
        total += channels[block - 1] * channels[block] * 9 + channels[block] * channels[block] * 9
    return total + channels[-1] * 3


class PGGANSplit(SplitGeometry):
    def init_codes(self, count: int, seed: int, split: int) -> torch.Tensor:
        return seeded_normal(count, self.config.latent_dim, seed)  # [N, latent_dim]

    def init_g2_styles(self, codes: torch.Tensor, split: int) -> None:
        return None

    def g1(self, codes: torch.Tensor, split: int) -> torch.Tensor:
        return self.generator.features(codes, split)

    @staticmethod
    def fuse(features: torch.Tensor, weights: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        # beta_n * alpha_n folded into one small [N, M] weight (`weights`), so the large feature
        # tensor is read once, stays in its memory format (an einsum copies channels_last
        # features into its own layout) and keeps the autocast dtype instead of fp32.
        weights = weights.to(features.dtype)
        return (features * weights[:, :, None, None]).sum(dim=0, keepdim=True)

    def g2_ws(self, codes: torch.Tensor, g2_styles: torch.Tensor | None, split: int) -> None:
        return None

    def g2(self, fused: torch.Tensor, g2_ws: None, split: int) -> torch.Tensor:
        return self.generator.synthesize(fused, split)

    def noise_parameters(self, split: int) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        return [], []

    def g1_parameters(self, split: int) -> list[nn.Parameter]:
        return [p for layer in self.generator.layers[:split] for p in layer.parameters()]

    def g2_parameters(self, split: int) -> list[nn.Parameter]:
        modules = [*self.generator.layers[split:], self.generator.to_rgb]
        return [p for module in modules for p in module.parameters()]


class PGGANFamily:
    name = "pggan"
    label = "PGGAN"
    generator_type = PGGANGenerator
    config_type = PGGANConfig
    # At most 600 steps: longer runs filled held-out facades no better (docs/trustworthy_fill.md).
    auto_stop = AutoStopConfig(max_steps=600)
    paper_coarsest_features = 16
    format_labels = {"genforce-zoo-pth": "genforce model-zoo .pth",
                     "genforce-pth": "genforce/mGANprior state dict .pth",
                     "nvidia-tf-pkl": "NVIDIA TensorFlow-era .pkl",
                     "nvidia-theano-pkl": "NVIDIA Theano-era .pkl",
                     "ganprior": "ganprior .safetensors"}
    network_labels = {"generator_smooth": "generator_smooth (the moving average)",
                      "generator": "generator (raw weights: the file has no generator_smooth)",
                      "Gs": "Gs (the moving average)"}

    def z_dim(self, config: PGGANConfig) -> int:
        return config.latent_dim

    def check_options(self, model_config) -> None:
        """The StyleGAN2 choices must be left at their defaults."""
        if model_config.stylegan2 != type(model_config)().stylegan2:
            raise ValueError("latent space, G2 styles and noise choices apply to StyleGAN2 priors "
                             "only: a PGGAN code is always z and its G2 has no styles or noise")

    def split(self, generator: PGGANGenerator, model_config) -> PGGANSplit:
        return PGGANSplit(generator)

    def split_for_feature_resolution(self, config: PGGANConfig, feature_resolution: int) -> int:
        """k = 2 * block + 2: G1 ends with the block at `feature_resolution` (at least 4x4)."""
        block = max(0, int(math.log2(max(feature_resolution, 4))) - 2)
        return 2 * min(block, len(config.channels) - 1) + 2

    def forward_flop(self, config: PGGANConfig, split: int, codes: int,
                     include_g1: bool = True) -> float:
        """The dense layer and every conv; G1 runs once per code, G2 once."""
        flops = 2.0 * config.latent_dim * config.channels[0] * 16 * codes if include_g1 else 0.0
        for index in range(1 if include_g1 else max(split, 1), config.num_layers):
            block = index // 2
            size = config.layer_resolution(index)
            in_channels = config.channels[block - 1] if index % 2 == 0 else config.channels[block]
            # upsampling layers from 16x16 up run as 4x4 transposed convs: 16 instead of 36 taps
            taps = 16 / 4 if index % 2 == 0 and size > 16 else 9
            batch = codes if index < split else 1
            flops += 2.0 * batch * in_channels * config.channels[block] * taps * size * size
        return flops

    def activation_elements(self, config: PGGANConfig, split: int, codes: int) -> int:
        """Values of every layer's output in one forward pass: G1's once per code."""
        return feature_map_elements(config, split, codes)

    def training_bytes(self, config: PGGANConfig, split: int, codes: int, bf16: bool) -> int:
        """What one optimisation step holds at its peak beyond the run's copy of the prior and
        Adam's state: every layer's activations kept for the backward pass with their gradients
        in flight (per activation_elements value; G1's once per code) and the per-step weight
        copies (the equalised-lr scaled weights, the 4x4 upsampling kernels, their gradients).
        Calibrated upper bounds (docs/memory.md)."""
        activations = activation_memory(config, split, codes, 2 if bf16 else 4,
                                        *TRAINING_BYTES_PER_VALUE[bf16])
        return int(activations + WEIGHT_COPIES_PER_STEP[bf16] * 4 * _weight_elements(config))

    def inference_bytes(self, config: PGGANConfig, batch: int) -> int:
        """The peak of a forward pass of `batch` codes without gradients (fp32): the largest
        layer's input and the outputs of its conv, activation and pixel norm."""
        return 4 * batch * inference_peak_elements(config, INFERENCE_OUTPUT_COPIES)

    def check_latents(self, config: PGGANConfig, latents, truncation_psi: float,
                      noise_mode: str) -> None:
        if not isinstance(latents, torch.Tensor) or latents.dim() != 2 \
                or latents.shape[1] != config.latent_dim:
            raise ValueError(f"latents must be [N, {config.latent_dim}] for this generator, "
                             f"got {latents_shape(latents)}")
        if truncation_psi != 1:
            raise ValueError(f"a PGGAN has no truncation: psi must be 1, got {truncation_psi!r}")
        if noise_mode != "const":
            raise ValueError(f"a PGGAN adds no noise: the noise setting is for StyleGAN2 priors, "
                             f"got {noise_mode!r}")

    def generate(self, generator: PGGANGenerator, latents: torch.Tensor, truncation_psi: float,
                 noise_mode: str) -> torch.Tensor:
        return generator(latents)

    def describe(self, config: PGGANConfig) -> str:
        return (f"{config.resolution}x{config.resolution} PGGAN, latent {config.latent_dim}, "
                f"{config.num_layers} conv layers")

    def describe_options(self, config: PGGANConfig, model_config) -> str:
        """A PGGAN run has no choices of its own (codes are z, G2 has no styles or noise)."""
        return ""

    def describe_splits(self, config: PGGANConfig) -> list[str]:
        return ["split layer k -> fused feature maps (channels x height x width):",
                *(f"  k={k}: {'x'.join(map(str, config.feature_shape(k)))}"
                  for k in range(1, config.num_layers + 1))]


PGGAN = PGGANFamily()
