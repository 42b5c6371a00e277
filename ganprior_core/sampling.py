"""Unconditional samples from a generator (previews, the CLI's `generate`)."""
from __future__ import annotations

import math

import torch

from .imaging.checks import to_unit_range
from .method.families import family_of, z_dim_of
from .networks.stylegan2 import NOISE_MODES
from .validation import check_count, check_seed, resolve_device

# Samples are returned as one CPU tensor: 4096 images of 256x256 are 3 GB already.
MAX_SAMPLES = 4096
# What `generate` accepts for a StyleGAN2 prior; "random" is left out: the outputs of given codes
# are meant to be reproducible.
GENERATE_NOISE_MODES = tuple(mode for mode in NOISE_MODES if mode != "random")


def sample_latents(count: int, latent_dim: int, seed: int) -> torch.Tensor:
    """[count, latent_dim] standard normal codes; the same seed always gives the same codes."""
    count = check_count(count, "count", 1, MAX_SAMPLES)
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(check_seed(seed)))


def _shape(latents) -> object:
    return list(latents.shape) if hasattr(latents, "shape") else type(latents).__name__


@torch.no_grad()
def generate(generator: torch.nn.Module, latents: torch.Tensor,
             device: str | torch.device = "cpu", batch_size: int = 16,
             truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
    """Raw generator output [N, 3, R, R] in about [-1, 1], float32, unclamped, on the CPU.

    latents: a real floating-point tensor, 1 <= N <= MAX_SAMPLES, all finite (a NaN code would
    silently give a NaN image). PGGAN: z [N, latent_dim]. StyleGAN2: z [N, z_dim] (through the
    mapping network) or w+ codes [N, num_ws, w_dim] (straight into the synthesis network).
    StyleGAN2 only: `truncation_psi` pulls every style towards w_avg (w_avg + psi (w - w_avg),
    for z and w+ codes alike; 1 = none) and `noise_mode` is "const" (the file's stored noise) or
    "none". A PGGAN has neither: other values than 1 and "const" are refused.
    """
    family = family_of(generator)
    config = generator.config
    if family == "stylegan2":
        z_dim, num_ws, w_dim = config.z_dim, config.num_ws, config.w_dim
        is_z = isinstance(latents, torch.Tensor) and latents.dim() == 2 and latents.shape[1] == z_dim
        is_w = (isinstance(latents, torch.Tensor) and latents.dim() == 3
                and tuple(latents.shape[1:]) == (num_ws, w_dim))
        if not (is_z or is_w):
            raise ValueError(f"latents must be z codes [N, {z_dim}] or w+ codes "
                             f"[N, {num_ws}, {w_dim}] for this StyleGAN2, got {_shape(latents)}")
        if isinstance(truncation_psi, bool) or not isinstance(truncation_psi, (int, float)) \
                or not math.isfinite(truncation_psi):
            raise ValueError(f"truncation psi must be a finite number, got {truncation_psi!r}")
        if noise_mode not in GENERATE_NOISE_MODES:
            raise ValueError(f"noise must be one of {', '.join(GENERATE_NOISE_MODES)}, "
                             f"got {noise_mode!r}")
    else:
        latent_dim = config.latent_dim
        if not isinstance(latents, torch.Tensor) or latents.dim() != 2 or latents.shape[1] != latent_dim:
            raise ValueError(f"latents must be [N, {latent_dim}] for this generator, got {_shape(latents)}")
        if truncation_psi != 1:
            raise ValueError(f"a PGGAN has no truncation: psi must be 1, got {truncation_psi!r}")
        if noise_mode != "const":
            raise ValueError(f"a PGGAN adds no noise: the noise setting is for StyleGAN2 priors, "
                             f"got {noise_mode!r}")
    if not latents.dtype.is_floating_point:
        raise ValueError(f"latents must be real floating-point numbers, got dtype {latents.dtype}")
    check_count(len(latents), "the number of latent codes N", 1, MAX_SAMPLES)
    if not torch.isfinite(latents).all():
        raise ValueError("latents contain NaN or infinite values; every code must be finite")
    device = resolve_device(device)

    def run(chunk: torch.Tensor) -> torch.Tensor:
        if family == "pggan":
            return generator(chunk)
        if chunk.dim() == 2:
            return generator(chunk, truncation_psi=truncation_psi, noise_mode=noise_mode)
        if truncation_psi != 1:
            w_avg = generator.mapping.w_avg
            chunk = w_avg + truncation_psi * (chunk - w_avg)
        return generator.synthesis(chunk, noise_mode=noise_mode)

    chunks = [run(chunk.to(device, torch.float32)).float().cpu()
              for chunk in latents.split(batch_size)]
    return torch.cat(chunks)


def sample_images(generator: torch.nn.Module, count: int, seed: int,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """[count, 3, R, R] images in [0, 1]: z ~ N(0, 1) from `seed` (StyleGAN2: no truncation,
    constant noise)."""
    latents = sample_latents(count, z_dim_of(generator), seed)
    return to_unit_range(generate(generator, latents, device))


def image_grid(images: torch.Tensor, columns: int = 8, gap: int = 2) -> torch.Tensor:
    """Tile [N, 3, H, W] images row by row into one [3, H', W'] image with white gaps."""
    count, channels, height, width = images.shape
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    grid = torch.ones(channels, rows * (height + gap) - gap, columns * (width + gap) - gap)
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        grid[:, top:top + height, left:left + width] = image
    return grid
