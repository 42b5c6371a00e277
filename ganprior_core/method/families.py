"""What the multi-latent method needs from a generator family, behind one small interface.

`split_prior(generator, stylegan2_options)` wraps a generator (the MultiLatentModel's private
copy) in an adapter with: `family`, `resolution`, `num_layers` (split layers k = 1..num_layers),
`feature_shape(k)`, `init_codes(n, seed, k)` (seeded starting codes), `init_g2_styles(codes, k)`
(G2's own style parameter, if any), `g2_ws(codes, g2_styles, k)` (what drives G2, if anything),
`g1(codes, k)` (per-code features), `fuse(features, weights)`, `g2(fused, g2_ws, k)` (the image),
`g1_parameters(k)` / `g2_parameters(k)` (what fine-tuning may train), `noise_parameters(k)` (noise
maps fitted with the codes) and `sample(z)`. Families:

PGGAN (`PGGANSplit`), unchanged from before this interface existed (same seed, same numbers):
- a code is z [latent_dim], initialised N(0, 1) from torch.Generator().manual_seed(seed);
- G1(z) = layers[:k] -> features [N, M, H, W]; G2 = layers[k:] + to_rgb, driven by the features
  alone (no G2 styles, no noise);
- fine-tuning: layers[:k] are G1, layers[k:] and to_rgb are G2.

StyleGAN2 (`StyleGAN2Split`; layer numbering and split rule in networks/stylegan2.py; the
choices below marked (*) are `StyleGAN2Options`, defaults first):
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

from dataclasses import dataclass

import torch
from torch import nn

from ..networks.pggan import PGGANGenerator
from ..networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from .auto_stop import AutoStopConfig

FAMILIES = ("pggan", "stylegan2")
NOISE_MODE = "const"
LATENT_SPACES = ("z", "w", "w+")
G2_STYLE_SOURCES = ("learned", "codes", "average")
NOISE_HANDLING = ("const", "optimised")


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


# Auto-stop's rule on a StyleGAN2 prior (docs/stylegan2_prior.md, chosen with `stop-study`): its
# hole is best far earlier, relative to the held-out tiles' best check, than on PGGAN, so the run
# returns the check halfway to the best one instead of three quarters of the way.
STYLEGAN2_AUTO_STOP = AutoStopConfig(rewind=0.5)


def auto_stop_rule(generator_config, chosen: AutoStopConfig | None = None) -> AutoStopConfig:
    """The auto-stop rule a run uses: `chosen` where one was given, else its prior family's
    (PGGAN: AutoStopConfig's defaults; StyleGAN2: STYLEGAN2_AUTO_STOP)."""
    if chosen is not None:
        return chosen
    return STYLEGAN2_AUTO_STOP if isinstance(generator_config, StyleGAN2Config) else AutoStopConfig()


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

    def g2_ws(self, codes: torch.Tensor, g2_styles: torch.Tensor | None, split: int) -> None:
        return None

    def g2(self, fused: torch.Tensor, g2_ws: torch.Tensor | None, split: int) -> torch.Tensor:
        return self.generator.synthesize(fused, split)

    def noise_parameters(self, split: int) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        return [], []

    def g1_parameters(self, split: int) -> list[nn.Parameter]:
        return [p for layer in self.generator.layers[:split] for p in layer.parameters()]

    def g2_parameters(self, split: int) -> list[nn.Parameter]:
        modules = [*self.generator.layers[split:], self.generator.to_rgb]
        return [p for module in modules for p in module.parameters()]

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)


class StyleGAN2Split(_Split):
    family = "stylegan2"

    def __init__(self, generator: nn.Module, options: StyleGAN2Options | None = None) -> None:
        super().__init__(generator)
        self.options = options or StyleGAN2Options()
        self.options.validate()
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
        z = _seeded_normal(count, self.config.z_dim, seed)
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

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z, noise_mode=NOISE_MODE)


def split_prior(generator: nn.Module, stylegan2: StyleGAN2Options | None = None
                ) -> PGGANSplit | StyleGAN2Split:
    """The family's adapter; `stylegan2`: the StyleGAN2 choices (ignored for PGGAN)."""
    if family_of(generator) == "stylegan2":
        return StyleGAN2Split(generator, stylegan2)
    return PGGANSplit(generator)
