"""The paper's multi-latent generator: N codes through G1, weighted per channel (alpha) and per
code (beta), fused, finished by G2 (METHOD.md eqs. 5-7), on a PGGAN or a StyleGAN2 prior.

What a code is, what drives G2, how the StyleGAN2 skip image is fused, the noise and the
fine-tune scopes of each family: see the family's module in ganprior_core/families/.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..families import StyleGAN2Options, family_of

FINETUNE_SCOPES = ("none", "g2", "all")


@dataclass(frozen=True)
class MultiLatentConfig:
    num_codes: int = 30
    split_layer: int = 8
    use_alpha: bool = True  # learnable per-channel weights alpha [N, M]; off = all ones
    use_beta: bool = True  # learnable per-code weights beta [N]; off = 1/N (mGANprior's mean)
    finetune: str = "all"  # which generator parameters are optimised: none / g2 / all
    # StyleGAN2 priors only: latent space, what drives G2, noise (families/stylegan2.py)
    stylegan2: StyleGAN2Options = field(default_factory=StyleGAN2Options)

    def validate(self, generator_config) -> None:
        """`generator_config`: a PGGANConfig or StyleGAN2Config (anything with check_split)."""
        if not isinstance(self.stylegan2, StyleGAN2Options):
            raise ValueError(f"stylegan2 must be a StyleGAN2Options, got "
                             f"{type(self.stylegan2).__name__}")
        self.stylegan2.validate()
        family_of(generator_config).check_options(self)
        if self.num_codes < 1:
            raise ValueError(f"number of latent codes must be at least 1, got {self.num_codes}")
        if self.finetune not in FINETUNE_SCOPES:
            raise ValueError(f"fine-tune scope must be one of {', '.join(FINETUNE_SCOPES)}, "
                             f"got {self.finetune!r}")
        generator_config.check_split(self.split_layer)


class MultiLatentModel(nn.Module):
    """Owns a private copy of the prior, so optimising it never touches the loaded generator.

    Parameters: `latents` (the codes: PGGAN [N, latent_dim] z; StyleGAN2 [N, |G1 slots|, w_dim]
    w+), `g2_styles` (StyleGAN2 only: the shared w+ of G2's slots [1, |G2 slots|, w_dim]; None for
    PGGAN), `alpha` [N, M] (starts at 1), `beta` [N] (starts at 1/N) and the fine-tuned
    parameters of `generator` (`generator_parameters()`).
    """

    def __init__(self, prior: nn.Module, config: MultiLatentConfig, seed: int,
                 device: str | torch.device = "cpu") -> None:
        super().__init__()
        config.validate(prior.config)
        self.config = config
        self.generator = copy.deepcopy(prior).to(device)
        self.family = family_of(prior)
        self.adapter = self.family.split(self.generator, config)
        self.generator.requires_grad_(False)
        for parameter in self.generator_parameters():
            parameter.requires_grad_(True)

        channels = self.adapter.feature_shape(config.split_layer)[0]
        latents = self.adapter.init_codes(config.num_codes, seed, config.split_layer)
        self.latents = nn.Parameter(latents.to(device))
        g2_styles = self.adapter.init_g2_styles(self.latents.detach(), config.split_layer)
        self.g2_styles = (None if g2_styles is None
                          else nn.Parameter(g2_styles.to(device), requires_grad=g2_styles.numel() > 0))
        self.g1_noise, self.g2_noise = self.adapter.noise_parameters(config.split_layer)
        for noise in [*self.g1_noise, *self.g2_noise]:
            noise.requires_grad_(True)
        # alpha = 1 and beta = 1/N make the starting point exactly mGANprior's mean fusion.
        self.alpha = nn.Parameter(torch.ones(config.num_codes, channels, device=device),
                                  requires_grad=config.use_alpha)  # [N, M]
        self.beta = nn.Parameter(torch.full((config.num_codes,), 1.0 / config.num_codes,
                                            device=device),
                                 requires_grad=config.use_beta)  # [N]
        # G1's output once the codes and G1 are frozen (freeze_g1); None while they are fitted.
        self.frozen_g1_features: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None
        # G2's styles once they can no longer change (freeze_g1 with styles drawn from the codes
        # or w_avg); None while they are computed every pass.
        self.frozen_g2_ws: torch.Tensor | None = None

    def latent_parameters(self) -> list[nn.Parameter]:
        """What the codes' learning rate moves: the codes and, on StyleGAN2, G2's own styles and
        the optimised noise maps, if any."""
        extra = [] if self.g2_styles is None or not self.g2_styles.requires_grad else [self.g2_styles]
        return [self.latents, *extra, *self.g1_noise, *self.g2_noise]

    def generator_parameters(self) -> list[nn.Parameter]:
        split = self.config.split_layer
        if self.config.finetune == "all":
            return [*self.adapter.g1_parameters(split), *self.adapter.g2_parameters(split)]
        if self.config.finetune == "g2":
            return self.adapter.g2_parameters(split)
        return []

    def g1_features(self):
        """PGGAN: [N, M, H, W]; StyleGAN2: (features [N, M, H, W], skip images [N, 3, h, h])."""
        if self.frozen_g1_features is not None:
            return self.frozen_g1_features
        return self.adapter.g1(self.latents, self.config.split_layer)

    def fused_features(self):
        """PGGAN: [1, M, H, W]; StyleGAN2: (features [1, M, H, W], skip image [1, 3, h, h])."""
        return self.adapter.fuse(self.g1_features(), self.beta[:, None] * self.alpha, self.beta)

    def trains_after_freezing_g1(self) -> bool:
        """Whether anything is left to fit once the codes and G1 are frozen."""
        g2 = self.adapter.g2_parameters(self.config.split_layer) if self.config.finetune != "none" else []
        rest = [self.alpha, self.beta, *([] if self.g2_styles is None else [self.g2_styles]),
                *self.g2_noise, *g2]
        return any(p.requires_grad and p.numel() for p in rest)

    def freeze_g1(self) -> None:
        """Freeze the codes and G1 and keep their features: from now on a forward pass runs only
        the fusion and G2. Call under the run's autocast, so the kept features have the dtype
        G1 would have handed over."""
        with torch.no_grad():
            features = self.adapter.g1(self.latents, self.config.split_layer)
        self.latents.requires_grad_(False)
        for parameter in [*self.adapter.g1_parameters(self.config.split_layer), *self.g1_noise]:
            parameter.requires_grad_(False)
        self.frozen_g1_features = features
        if self.g2_styles is None:  # styles from the frozen codes (the mapping is never tuned)
            with torch.no_grad():
                self.frozen_g2_ws = self.adapter.g2_ws(self.latents, None, self.config.split_layer)

    def forward(self) -> torch.Tensor:
        """The current image [1, 3, R, R] in about [-1, 1]."""
        split = self.config.split_layer
        g2_ws = (self.frozen_g2_ws if self.frozen_g2_ws is not None
                 else self.adapter.g2_ws(self.latents, self.g2_styles, split))
        return self.adapter.g2(self.fused_features(), g2_ws, split)
