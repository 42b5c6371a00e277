"""Tiny random priors of every family, and an inpainting problem one of them can solve.

`TINY_PRIORS` has one builder per generator family (the `tiny_prior` fixture in tests/conftest.py
runs a test once per entry): a family added to ganprior_core.families adds its builder here."""
from __future__ import annotations

import torch

from ganprior_core.families import family_of
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator


def tiny_pggan() -> PGGANGenerator:
    """A 16x16 PGGAN with random weights (the current torch seed): 6 conv layers, latent size 32."""
    return PGGANGenerator(PGGANConfig(16, (32, 32, 16), latent_dim=32)).eval()


def tiny_stylegan2(network=None):
    """A 16x16 StyleGAN2 with random weights: channels 16, 16, 8 (NVIDIA's plan for channel_base
    128, channel_max 16), z and w of 8, two mapping layers, noise strong enough to show, and a w_avg
    away from 0. `network`: the module holding the classes (the pack's own copy in node tests)."""
    if network is None:
        from ganprior_core.networks import stylegan2 as network
    torch.manual_seed(0)
    generator = network.StyleGAN2Generator(network.StyleGAN2Config(16, (16, 16, 8), z_dim=8, w_dim=8,
                                                                   mapping_layers=2))
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("noise_strength"):
                parameter.fill_(0.2)
        generator.mapping.w_avg.normal_(0, 0.5)
    return generator.eval()


def tiny_stylegan2_with_biases(seed: int = 0):
    """tiny_stylegan2's network with what a trained network has and a fresh one lacks: noise
    strengths, synthesis biases and w_avg away from 0, so the constant noise and w_avg take part in
    every check of the method."""
    from ganprior_core.networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    torch.manual_seed(seed)
    generator = StyleGAN2Generator(StyleGAN2Config(16, (16, 16, 8), z_dim=8, w_dim=8,
                                                   mapping_layers=2))
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("noise_strength"):
                parameter.fill_(0.2)
            elif name.endswith(".bias") and "synthesis" in name:
                parameter.normal_(0, 0.1)
        generator.mapping.w_avg.normal_(0, 0.5)
    return generator.eval()


TINY_PRIORS = {"pggan": tiny_pggan, "stylegan2": tiny_stylegan2}


def inpainting_problem(generator, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An image the 16x16 generator can make ([3, 16, 16] in [0, 1], from a seeded z) and a box
    hole [16, 16]."""
    torch.manual_seed(seed)
    z_dim = family_of(generator).z_dim(generator.config)
    with torch.no_grad():
        image = ((generator(torch.randn(1, z_dim))[0] + 1) / 2).clamp(0, 1)
    hole = torch.zeros(16, 16)
    hole[4:12, 3:9] = 1
    return image, hole


def state_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in module.state_dict().items()}


def assert_same_state(before: dict[str, torch.Tensor], module: torch.nn.Module) -> None:
    after = module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before), "the prior changed"
