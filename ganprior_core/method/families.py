"""What the multi-latent method needs from a generator family, behind one small interface.

`split_prior(generator)` wraps a generator (the MultiLatentModel's private copy) in an adapter
with: `family`, `resolution`, `num_layers` (split layers k = 1..num_layers), `feature_shape(k)`,
`init_codes(n, seed, k)` (seeded starting codes), `init_g2_styles(codes, k)` (what drives G2, if
anything), `g1(codes, k)` (per-code features), `fuse(features, weights)`, `g2(fused, g2_styles, k)`
(the image), `g1_parameters(k)` / `g2_parameters(k)` (what fine-tuning may train) and
`sample(z)`. Families:

PGGAN (`PGGANSplit`), unchanged from before this interface existed (same seed, same numbers):
- a code is z [latent_dim], initialised N(0, 1) from torch.Generator().manual_seed(seed);
- G1(z) = layers[:k] -> features [N, M, H, W]; G2 = layers[k:] + to_rgb, driven by the features
  alone (no G2 styles);
- fine-tuning: layers[:k] are G1, layers[k:] and to_rgb are G2.

StyleGAN2 (`StyleGAN2Split`; layer numbering and split rule in networks/stylegan2.py):
- a code is a w+ code for G1's style slots: [|slots1|, w_dim] with slots1 =
  `config.split_ws_slots(k)[0]`. Initialised as mapping(z) with truncation psi = 1 (no
  truncation) of z ~ N(0, 1) [N, z_dim] drawn from torch.Generator().manual_seed(seed), so every
  slot of a code starts at that z's w;
- what drives G2: one shared, learnable w+ for G2's slots ([1, |slots2|, w_dim], slots2 =
  `split_ws_slots(k)[1]`), initialised to the mean over the codes of their w (for N = 1 that
  code's own w, so a single code starts as the plain network's image of its z). Optimised with
  the codes' learning rate (lr_latent). For odd k slot k is in both: the codes' copy drives G1's
  last ToRGB, the shared copy G2's first conv. At k = num_layers G2 has no slots (an empty
  [1, 0, w_dim] tensor, never optimised);
- G1 hands over (x [N, M, H, W], skip image [N, 3, h, h]). Fusion: x_fused = sum_n beta_n
  alpha_n (.) x_n (alpha per channel, as PGGAN) and img_fused = sum_n beta_n img_n: the skip
  image is weighted by beta only (alpha weighs feature channels; the skip image's 3 RGB channels
  are not among them). With alpha = 1, beta = 1/N both are the plain mean;
- G2 = `synthesize(x_fused, img_fused, ws_G2, k)`: G2's blocks upsample the fused skip image and
  add their ToRGB outputs; at k = num_layers G2 runs nothing and the image is img_fused;
- noise: "const" (each layer's stored noise_const times noise_strength), never optimised:
  noise_const are buffers and noise_strength stays frozen in every fine-tune scope;
- fine-tuning: G1 = b4.const and, for conv layers j < k, their weight, bias and affine (style)
  parameters, plus the ToRGB (weight, bias, affine) of every block whose conv1 is a layer < k;
  G2 = the same for conv layers j >= k and the ToRGBs of blocks whose conv1 is >= k. The
  mapping network (and w_avg) is never trained.
"""
from __future__ import annotations

import torch
from torch import nn

from ..networks.pggan import PGGANGenerator
from ..networks.stylegan2 import StyleGAN2Generator

FAMILIES = ("pggan", "stylegan2")
NOISE_MODE = "const"


def family_of(generator: nn.Module) -> str:
    if isinstance(generator, StyleGAN2Generator):
        return "stylegan2"
    if isinstance(generator, PGGANGenerator):
        return "pggan"
    raise ValueError(f"not a generator this method can split: {type(generator).__name__} "
                     f"(expected a PGGAN or StyleGAN2 generator)")


def z_dim_of(generator: nn.Module) -> int:
    """Length of the generator's input code z."""
    config = generator.config
    return config.z_dim if family_of(generator) == "stylegan2" else config.latent_dim


def _seeded_normal(count: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(count, dim, generator=torch.Generator().manual_seed(seed))


class _Split:
    """What both families' splits share: the generator and its split geometry."""

    def __init__(self, generator: nn.Module) -> None:
        self.generator = generator
        self.config = generator.config

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    def check_split(self, split: int) -> None:
        self.config.check_split(split)

    def feature_shape(self, split: int) -> tuple[int, int, int]:
        return self.config.feature_shape(split)


class PGGANSplit(_Split):
    family = "pggan"

    def init_codes(self, count: int, seed: int, split: int) -> torch.Tensor:
        return _seeded_normal(count, self.config.latent_dim, seed)  # [N, latent_dim]

    def init_g2_styles(self, codes: torch.Tensor, split: int) -> torch.Tensor | None:
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

    def g2(self, fused: torch.Tensor, g2_styles: torch.Tensor | None, split: int) -> torch.Tensor:
        return self.generator.synthesize(fused, split)

    def g1_parameters(self, split: int) -> list[nn.Parameter]:
        return [p for layer in self.generator.layers[:split] for p in layer.parameters()]

    def g2_parameters(self, split: int) -> list[nn.Parameter]:
        modules = [*self.generator.layers[split:], self.generator.to_rgb]
        return [p for module in modules for p in module.parameters()]

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)


class StyleGAN2Split(_Split):
    family = "stylegan2"

    def init_codes(self, count: int, seed: int, split: int) -> torch.Tensor:
        """[N, |slots1|, w_dim]: mapping (psi = 1) of seeded z, G1's slots."""
        z = _seeded_normal(count, self.config.z_dim, seed)
        device = self.generator.mapping.w_avg.device
        with torch.no_grad():
            ws = self.generator.mapping(z.to(device))  # [N, num_ws, w_dim]
        slots = self.config.split_ws_slots(split)[0]
        return ws[:, slots.start:slots.stop].clone()

    def init_g2_styles(self, codes: torch.Tensor, split: int) -> torch.Tensor:
        """[1, |slots2|, w_dim]: every slot the mean over the codes of their w (their slot 0)."""
        slots = self.config.split_ws_slots(split)[1]
        mean_w = codes[:, 0].mean(dim=0)  # [w_dim]
        return mean_w[None, None].repeat(1, len(slots), 1).detach().clone()

    def _full_ws(self, part: torch.Tensor, slots: range) -> torch.Tensor:
        """[B, num_ws, w_dim] with `part` at `slots` and zeros in the slots this half never reads."""
        before, after = slots.start, self.config.num_ws - slots.stop
        return nn.functional.pad(part, (0, 0, before, after))

    def g1(self, codes: torch.Tensor, split: int) -> tuple[torch.Tensor, torch.Tensor]:
        ws = self._full_ws(codes, self.config.split_ws_slots(split)[0])
        return self.generator.features(ws, split, noise_mode=NOISE_MODE)

    @staticmethod
    def fuse(features: tuple[torch.Tensor, torch.Tensor], weights: torch.Tensor,
             beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, img = features
        x_fused = (x * weights.to(x.dtype)[:, :, None, None]).sum(dim=0, keepdim=True)
        img_fused = (img * beta.to(img.dtype)[:, None, None, None]).sum(dim=0, keepdim=True)
        return x_fused, img_fused

    def g2(self, fused: tuple[torch.Tensor, torch.Tensor], g2_styles: torch.Tensor,
           split: int) -> torch.Tensor:
        x, img = fused
        ws = self._full_ws(g2_styles, self.config.split_ws_slots(split)[1])
        return self.generator.synthesize(x, img, ws, split, noise_mode=NOISE_MODE)

    def _layer_modules(self, index: int) -> list[nn.Module]:
        block = getattr(self.generator.synthesis, f"b{4 * 2 ** ((index + 1) // 2)}")
        return [block.conv0] if index % 2 else [block.conv1, block.torgb]

    def _trainable(self, layers: range) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        if 0 in layers:
            params.append(self.generator.synthesis.b4.const)
        for index in layers:
            for module in self._layer_modules(index):
                params += [p for name, p in module.named_parameters() if name != "noise_strength"]
        return params

    def g1_parameters(self, split: int) -> list[nn.Parameter]:
        return self._trainable(range(0, split))

    def g2_parameters(self, split: int) -> list[nn.Parameter]:
        return self._trainable(range(split, self.num_layers))

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z, noise_mode=NOISE_MODE)


def split_prior(generator: nn.Module) -> PGGANSplit | StyleGAN2Split:
    family = family_of(generator)
    return StyleGAN2Split(generator) if family == "stylegan2" else PGGANSplit(generator)
