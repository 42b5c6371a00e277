"""The paper's multi-latent generator: N codes through G1, weighted per channel (alpha) and per
code (beta), fused, finished by G2 (METHOD.md eqs. 5-7)."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..networks.pggan import PGGANConfig, PGGANGenerator

FINETUNE_SCOPES = ("none", "g2", "all")


@dataclass(frozen=True)
class MultiLatentConfig:
    num_codes: int = 30
    split_layer: int = 8
    use_alpha: bool = True  # learnable per-channel weights alpha [N, M]; off = all ones
    use_beta: bool = True  # learnable per-code weights beta [N]; off = 1/N (mGANprior's mean)
    finetune: str = "all"  # which generator parameters are optimised: none / g2 / all

    def validate(self, generator_config: PGGANConfig) -> None:
        if self.num_codes < 1:
            raise ValueError(f"number of latent codes must be at least 1, got {self.num_codes}")
        if self.finetune not in FINETUNE_SCOPES:
            raise ValueError(f"fine-tune scope must be one of {', '.join(FINETUNE_SCOPES)}, "
                             f"got {self.finetune!r}")
        generator_config.check_split(self.split_layer)


class MultiLatentGenerator(nn.Module):
    """Owns a private copy of the prior, so optimising it never touches the loaded generator."""

    def __init__(self, prior: PGGANGenerator, config: MultiLatentConfig, seed: int,
                 device: str | torch.device = "cpu") -> None:
        super().__init__()
        config.validate(prior.config)
        self.config = config
        self.generator = copy.deepcopy(prior).to(device)
        self.generator.requires_grad_(False)
        for module in self.finetuned_modules():
            module.requires_grad_(True)

        channels = prior.config.feature_shape(config.split_layer)[0]
        noise = torch.Generator().manual_seed(seed)
        latents = torch.randn(config.num_codes, prior.config.latent_dim, generator=noise)
        self.latents = nn.Parameter(latents.to(device))  # [N, latent_dim]
        # alpha = 1 and beta = 1/N make the starting point exactly mGANprior's mean fusion.
        self.alpha = nn.Parameter(torch.ones(config.num_codes, channels, device=device),
                                  requires_grad=config.use_alpha)  # [N, M]
        self.beta = nn.Parameter(torch.full((config.num_codes,), 1.0 / config.num_codes,
                                            device=device),
                                 requires_grad=config.use_beta)  # [N]

    def finetuned_modules(self) -> list[nn.Module]:
        layers = list(self.generator.layers)
        if self.config.finetune == "all":
            return [*layers, self.generator.to_rgb]
        if self.config.finetune == "g2":
            return [*layers[self.config.split_layer:], self.generator.to_rgb]
        return []

    def generator_parameters(self) -> list[nn.Parameter]:
        return [p for module in self.finetuned_modules() for p in module.parameters()]

    def fused_features(self) -> torch.Tensor:
        features = self.generator.features(self.latents, self.config.split_layer)  # [N, M, H, W]
        # beta_n * alpha_n folded into one small [N, M] weight, so the large feature tensor is
        # read once, stays in its memory format (an einsum copies channels_last features into
        # its own layout) and keeps the autocast dtype instead of being promoted to fp32.
        weights = (self.beta[:, None] * self.alpha).to(features.dtype)
        return (features * weights[:, :, None, None]).sum(dim=0, keepdim=True)

    def forward(self) -> torch.Tensor:
        """The current image [1, 3, R, R] in about [-1, 1]."""
        return self.generator.synthesize(self.fused_features(), self.config.split_layer)
