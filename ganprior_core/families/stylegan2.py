"""StyleGAN2 as a generator family (networks/stylegan2.py has the layer numbering and the split
rule; the choices below marked (*) are `StyleGAN2Options`, defaults first):
- (*) a code is a w+ code for G1's style slots [|slots1|, w_dim] (slots1 =
  `config.split_ws_slots(k)[0]`), one w shared by those slots [1, w_dim], or a z [z_dim] that
  the frozen mapping turns into w at every step. All start from z ~ N(0, 1) [N, z_dim] drawn
  from torch.Generator().manual_seed(seed), w and w+ as its mapping with truncation psi = 1 (no
  truncation), so every slot of a code starts at that z's w;
- (*) what drives G2's slots (slots2 = `split_ws_slots(k)[1]`): one shared, learnable w+
  [1, |slots2|, w_dim] initialised to the mean over the codes of their w (for N = 1 that code's
  own w, so a single code starts as the plain network's image of its z) and optimised with the
  codes' learning rate (lr_latent); or the mean of the codes' w, recomputed from the codes; or
  the generator's w_avg. For odd k slot k is in both: the codes' copy drives G1's last ToRGB,
  G2's copy its first conv. At k = num_layers G2 has no slots (an empty [1, 0, w_dim] tensor,
  never optimised);
- G1 hands over (x [N, M, H, W], skip image [N, 3, h, h]). Fusion: x_fused = sum_n beta_n
  alpha_n (.) x_n (alpha per channel, as PGGAN) and img_fused = sum_n beta_n img_n: the skip
  image is weighted by beta only (alpha weighs feature channels; the skip image's 3 RGB channels
  are not among them). With alpha = 1, beta = 1/N both are the plain mean;
- G2 = `synthesize(x_fused, img_fused, ws_G2, k)`: G2's blocks upsample the fused skip image and
  add their ToRGB outputs; at k = num_layers G2 runs nothing and the image is img_fused;
- (*) noise: "const" (each layer's stored noise_const times noise_strength, buffers, never
  optimised) or "optimised" (the copy's noise_const become parameters, fitted with lr_latent;
  G1's are frozen with the codes in the late phase). noise_strength stays frozen in every scope;
- fine-tuning: G1 = b4.const and, for conv layers j < k, their weight, bias and affine (style)
  parameters, plus the ToRGB (weight, bias, affine) of every block whose conv1 is a layer < k;
  G2 = the same for conv layers j >= k and the ToRGBs of blocks whose conv1 is >= k. The
  mapping network (and w_avg) is never trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..method.auto_stop import AutoStopConfig
from ..networks.stylegan2 import NOISE_MODES, StyleGAN2Config, StyleGAN2Generator
from .base import (
    SplitGeometry,
    activation_memory,
    feature_map_elements,
    inference_peak_elements,
    latents_shape,
    seeded_normal,
)

NOISE_MODE = "const"
LATENT_SPACES = ("z", "w", "w+")
G2_STYLE_SOURCES = ("learned", "codes", "average")
NOISE_HANDLING = ("const", "optimised")
G2_STYLE_WORDS = {"learned": "learnt", "codes": "the codes' mean w", "average": "w_avg"}
# What `generate` accepts; "random" is left out: the outputs of given codes are meant to be
# reproducible.
GENERATE_NOISE_MODES = tuple(mode for mode in NOISE_MODES if mode != "random")


# Resident memory of a training step, fp32 and bf16 autocast (base.activation_memory): bytes per
# value of a layer's output where that output is a tensor under 32 MiB and where it is larger,
# and per value of the largest layer for the gradients in flight; and the per-step weight copies
# (bf16 casts, their gradients) in units of the fp32 synthesis weights (see
# StyleGAN2Family.training_bytes). Fitted as the least mean ratio with every measured peak at
# least 8 % below the estimate (docs/memory.md).
TRAINING_BYTES_PER_VALUE = {False: (45.5, 18.5, 18.0), True: (18.0, 7.0, 14.5)}
WEIGHT_COPIES_PER_STEP = {False: 0.0, True: 1.0}
# A forward pass without gradients holds, at its largest layer, the input and this many tensors
# of the output's size.
INFERENCE_OUTPUT_COPIES = 5.0


def _weight_elements(config: StyleGAN2Config) -> int:
    """Values of the synthesis network's conv and ToRGB weights and their style affines."""
    return sum(math.prod(shape) for name, shape in config.expected_shapes().items()
               if name.startswith("synthesis.") and name.endswith("weight"))


@dataclass(frozen=True)
class StyleGAN2Options:
    """The method's choices that exist only on StyleGAN2 (PGGAN codes are z, PGGAN's G2 has no
    styles and no noise). The defaults were chosen on held-out facades (docs/stylegan2_prior.md).

    latent_space: what a code is. "w+": one w per G1 style slot [|slots1|, w_dim]; "w": one w
    for all of G1's slots [1, w_dim]; "z": a z [z_dim] through the (frozen) mapping network.
    g2_styles: what drives G2's style slots. "learned": one shared w+ of their own, optimised
    with the codes' learning rate; "codes": the mean over the codes of their last G1 slot's w
    (it follows the codes and has no parameter); "average": the generator's w_avg, fixed.
    noise: "const": each layer's stored noise map, fixed; "optimised": the private copy's noise
    maps become parameters fitted with the codes' learning rate (G1's frozen with the codes).
    """

    latent_space: str = "w+"
    g2_styles: str = "learned"
    noise: str = "const"

    def validate(self) -> None:
        for name, allowed in (("latent_space", LATENT_SPACES), ("g2_styles", G2_STYLE_SOURCES),
                              ("noise", NOISE_HANDLING)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"StyleGAN2 {name} must be one of {', '.join(allowed)}, "
                                 f"got {value!r}")


class StyleGAN2Split(SplitGeometry):

    def __init__(self, generator: nn.Module, options: StyleGAN2Options) -> None:
        super().__init__(generator)
        self.options = options
        if self.options.noise == "optimised":
            # The generator is the model's private copy: its noise buffers become parameters
            # there, and the loaded prior keeps its buffers.
            for layer in self._noisy_layers(range(0, self.num_layers)):
                noise = layer.noise_const.detach().clone()
                del layer._buffers["noise_const"]
                layer.noise_const = nn.Parameter(noise)

    def init_codes(self, count: int, seed: int, split: int) -> torch.Tensor:
        """Seeded z ~ N(0, 1) [N, z_dim] and, in w / w+, its mapping (psi = 1): [N, 1, w_dim]
        or [N, |slots1|, w_dim] with every slot at that z's w."""
        z = seeded_normal(count, self.config.z_dim, seed)
        if self.options.latent_space == "z":
            return z
        device = self.generator.mapping.w_avg.device
        with torch.no_grad():
            ws = self.generator.mapping(z.to(device))  # [N, num_ws, w_dim]
        if self.options.latent_space == "w":
            return ws[:, :1].clone()
        slots = self.config.split_ws_slots(split)[0]
        return ws[:, slots.start:slots.stop].clone()

    def code_ws(self, codes: torch.Tensor, split: int) -> torch.Tensor:
        """[N, |slots1|, w_dim]: what each code gives G1's style slots."""
        slots = self.config.split_ws_slots(split)[0]
        if self.options.latent_space == "z":
            # The mapping stays in fp32 under the run's autocast, as it was trained.
            with torch.autocast(codes.device.type, enabled=False):
                ws = self.generator.mapping(codes.float())
            return ws[:, slots.start:slots.stop]
        if self.options.latent_space == "w":
            return codes.expand(-1, len(slots), -1)
        return codes

    def init_g2_styles(self, codes: torch.Tensor, split: int) -> torch.Tensor | None:
        """g2_styles "learned": [1, |slots2|, w_dim], every slot the mean over the codes of their
        first slot's w; None for "codes" and "average", which have no parameter of their own."""
        if self.options.g2_styles != "learned":
            return None
        slots = self.config.split_ws_slots(split)[1]
        with torch.no_grad():
            mean_w = self.code_ws(codes, split)[:, 0].mean(dim=0)  # [w_dim]
        return mean_w[None, None].repeat(1, len(slots), 1).detach().clone()

    def g2_ws(self, codes: torch.Tensor, g2_styles: torch.Tensor | None, split: int) -> torch.Tensor:
        """[1, |slots2|, w_dim]: the styles G2 runs with."""
        count = len(self.config.split_ws_slots(split)[1])
        if self.options.g2_styles == "learned":
            return g2_styles
        if self.options.g2_styles == "codes":
            mean_w = self.code_ws(codes, split)[:, -1].mean(dim=0)  # [w_dim]
        else:
            mean_w = self.generator.mapping.w_avg
        return mean_w[None, None].expand(1, count, -1)

    def _full_ws(self, part: torch.Tensor, slots: range) -> torch.Tensor:
        """[B, num_ws, w_dim] with `part` at `slots` and zeros in the slots this half never reads."""
        before, after = slots.start, self.config.num_ws - slots.stop
        return nn.functional.pad(part, (0, 0, before, after))

    def g1(self, codes: torch.Tensor, split: int) -> tuple[torch.Tensor, torch.Tensor]:
        ws = self._full_ws(self.code_ws(codes, split), self.config.split_ws_slots(split)[0])
        return self.generator.features(ws, split, noise_mode=NOISE_MODE)

    @staticmethod
    def fuse(features: tuple[torch.Tensor, torch.Tensor], weights: torch.Tensor,
             beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, img = features
        x_fused = (x * weights.to(x.dtype)[:, :, None, None]).sum(dim=0, keepdim=True)
        img_fused = (img * beta.to(img.dtype)[:, None, None, None]).sum(dim=0, keepdim=True)
        return x_fused, img_fused

    def g2(self, fused: tuple[torch.Tensor, torch.Tensor], g2_ws: torch.Tensor,
           split: int) -> torch.Tensor:
        x, img = fused
        ws = self._full_ws(g2_ws, self.config.split_ws_slots(split)[1])
        return self.generator.synthesize(x, img, ws, split, noise_mode=NOISE_MODE)

    def _layer_modules(self, index: int) -> list[nn.Module]:
        block = getattr(self.generator.synthesis, f"b{4 * 2 ** ((index + 1) // 2)}")
        return [block.conv0] if index % 2 else [block.conv1, block.torgb]

    def _noisy_layers(self, layers: range) -> list[nn.Module]:
        return [module for index in layers for module in self._layer_modules(index)
                if hasattr(module, "noise_const")]

    def _trainable(self, layers: range) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        if 0 in layers:
            params.append(self.generator.synthesis.b4.const)
        for index in layers:
            for module in self._layer_modules(index):
                params += [p for name, p in module.named_parameters()
                           if name not in ("noise_strength", "noise_const")]
        return params

    def g1_parameters(self, split: int) -> list[nn.Parameter]:
        return self._trainable(range(0, split))

    def g2_parameters(self, split: int) -> list[nn.Parameter]:
        return self._trainable(range(split, self.num_layers))

    def noise_parameters(self, split: int) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """noise "optimised": G1's and G2's per-layer noise maps; empty lists for "const"."""
        if self.options.noise != "optimised":
            return [], []
        return ([layer.noise_const for layer in self._noisy_layers(range(0, split))],
                [layer.noise_const for layer in self._noisy_layers(range(split, self.num_layers))])


class StyleGAN2Family:
    name = "stylegan2"
    label = "StyleGAN2"
    generator_type = StyleGAN2Generator
    config_type = StyleGAN2Config
    # Chosen with `stop-study` (docs/stylegan2_prior.md): the hole is best far earlier, relative
    # to the held-out tiles' best check, than on PGGAN, so a run returns the check halfway to the
    # best one instead of three quarters of the way. At most 600 steps, as PGGAN
    # (docs/trustworthy_fill.md).
    auto_stop = AutoStopConfig(rewind=0.5, max_steps=600)
    # 32x32 filled held-out facades better than PGGAN's 16x16 (docs/stylegan2_prior.md).
    paper_coarsest_features = 32
    format_labels = {"nvidia-sg2ada-pkl": "NVIDIA stylegan2-ada-pytorch / stylegan3 .pkl",
                     "nvidia-sg2-tf-pkl": "NVIDIA TensorFlow-era StyleGAN2 .pkl",
                     "rosinality-pt": "rosinality stylegan2-pytorch .pt",
                     "ganprior-stylegan2": "ganprior .safetensors"}
    network_labels = {"G_ema": "G_ema (the moving average)",
                      "Gs": "Gs (the moving average)",
                      "g_ema": "g_ema (the moving average)"}

    def z_dim(self, config: StyleGAN2Config) -> int:
        return config.z_dim

    def check_options(self, model_config) -> None:
        """Every valid StyleGAN2Options applies (MultiLatentConfig.validate checked them)."""

    def split(self, generator: StyleGAN2Generator, model_config) -> StyleGAN2Split:
        return StyleGAN2Split(generator, model_config.stylegan2)

    def split_for_feature_resolution(self, config: StyleGAN2Config,
                                     feature_resolution: int) -> int:
        """k = 2 * block + 1 (layer 0 = b4.conv1, then conv0, conv1 per block): G1 ends with the
        block's conv1 and ToRGB and hands over features and skip image at that resolution."""
        block = max(0, int(math.log2(max(feature_resolution, 4))) - 2)
        return 2 * min(block, len(config.channels) - 1) + 1

    def forward_flop(self, config: StyleGAN2Config, split: int, codes: int,
                     include_g1: bool = True) -> float:
        """Modulated convs (an upsampling conv0 is a stride-2 transposed 3x3 conv: 9 taps per
        input pixel), ToRGBs and the styles' affine layers; G1 runs once per code, G2 once."""
        flops = 0.0
        for index in range(0 if include_g1 else split, config.num_layers):
            block = (index + 1) // 2
            size = config.resolutions[block]
            out_channels = config.channels[block]
            in_channels = config.channels[block - 1] if index % 2 else out_channels
            pixels = (size // 2) ** 2 if index % 2 else size * size
            batch = codes if index < split else 1
            flops += 2.0 * batch * (in_channels * out_channels * 9 * pixels
                                    + config.w_dim * in_channels)
            if index % 2 == 0:  # the block's ToRGB runs with its conv1
                flops += 2.0 * batch * (out_channels * config.img_channels * size * size
                                        + config.w_dim * out_channels)
        return flops

    def activation_elements(self, config: StyleGAN2Config, split: int, codes: int) -> int:
        """Values of every layer's output in one forward pass (G1's once per code)."""
        return feature_map_elements(config, split, codes)

    def training_bytes(self, config: StyleGAN2Config, split: int, codes: int, bf16: bool) -> int:
        """What one optimisation step holds at its peak beyond the run's copy of the prior and
        Adam's state: every layer's activations kept for the backward pass (the modulated input,
        the conv output, the activation's input and output, the ToRGB's modulated input) with
        their gradients in flight (per activation_elements value; G1's once per code), and the
        per-step weight copies (bf16 casts, their gradients). Calibrated upper bounds
        (docs/memory.md)."""
        activations = activation_memory(config, split, codes, 2 if bf16 else 4,
                                        *TRAINING_BYTES_PER_VALUE[bf16])
        return int(activations + WEIGHT_COPIES_PER_STEP[bf16] * 4 * _weight_elements(config))

    def inference_bytes(self, config: StyleGAN2Config, batch: int) -> int:
        """The peak of a forward pass of `batch` codes without gradients (fp32): at the largest
        layer its input and the outputs of the upsampling transposed conv, the padding, the
        blur, the demodulation, noise, bias and activation, and the skip image."""
        return 4 * batch * inference_peak_elements(config, INFERENCE_OUTPUT_COPIES)

    def check_latents(self, config: StyleGAN2Config, latents, truncation_psi: float,
                      noise_mode: str) -> None:
        z_dim, num_ws, w_dim = config.z_dim, config.num_ws, config.w_dim
        is_z = isinstance(latents, torch.Tensor) and latents.dim() == 2 and latents.shape[1] == z_dim
        is_w = (isinstance(latents, torch.Tensor) and latents.dim() == 3
                and tuple(latents.shape[1:]) == (num_ws, w_dim))
        if not (is_z or is_w):
            raise ValueError(f"latents must be z codes [N, {z_dim}] or w+ codes "
                             f"[N, {num_ws}, {w_dim}] for this StyleGAN2, got {latents_shape(latents)}")
        if isinstance(truncation_psi, bool) or not isinstance(truncation_psi, (int, float)) \
                or not math.isfinite(truncation_psi):
            raise ValueError(f"truncation psi must be a finite number, got {truncation_psi!r}")
        if noise_mode not in GENERATE_NOISE_MODES:
            raise ValueError(f"noise must be one of {', '.join(GENERATE_NOISE_MODES)}, "
                             f"got {noise_mode!r}")

    def generate(self, generator: StyleGAN2Generator, latents: torch.Tensor,
                 truncation_psi: float, noise_mode: str) -> torch.Tensor:
        """z [N, z_dim] through the mapping, or w+ [N, num_ws, w_dim] straight into synthesis."""
        if latents.dim() == 2:
            return generator(latents, truncation_psi=truncation_psi, noise_mode=noise_mode)
        if truncation_psi != 1:
            w_avg = generator.mapping.w_avg
            latents = w_avg + truncation_psi * (latents - w_avg)
        return generator.synthesis(latents, noise_mode=noise_mode)

    def describe(self, config: StyleGAN2Config) -> str:
        return (f"{config.resolution}x{config.resolution} StyleGAN2, z {config.z_dim}, "
                f"w {config.w_dim}, {config.num_ws} style slots, {config.num_layers} conv layers")

    def describe_options(self, config: StyleGAN2Config, model_config) -> str:
        """The run's StyleGAN2 choices, as a report lists them."""
        options = model_config.stylegan2
        g2 = (f"G₂ styles {G2_STYLE_WORDS[options.g2_styles]}, "
              if model_config.split_layer < config.num_layers else "")
        return f"codes in {options.latent_space}, {g2}noise {options.noise}"

    def describe_splits(self, config: StyleGAN2Config) -> list[str]:
        return ["split layer k -> fused feature maps (channels x height x width) + skip image:",
                *(f"  k={k}: {'x'.join(map(str, config.feature_shape(k)))} + skip image "
                  f"{'x'.join(map(str, config.skip_image_shape(k)))}"
                  for k in range(1, config.num_layers + 1))]


STYLEGAN2 = StyleGAN2Family()
