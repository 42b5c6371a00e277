"""Unconditional samples from a generator (previews, the CLI's `generate`)."""
from __future__ import annotations

import torch

from .families import GENERATE_NOISE_MODES, family_of, z_dim_of
from .imaging.checks import to_unit_range
from .validation import check_count, check_seed, resolve_device

__all__ = ["GENERATE_NOISE_MODES", "MAX_SAMPLES", "generate", "image_grid", "sample_images",
           "sample_latents"]

# Samples are returned as one CPU tensor: 4096 images of 256x256 are 3 GB already.
MAX_SAMPLES = 4096


def sample_latents(count: int, latent_dim: int, seed: int) -> torch.Tensor:
    """[count, latent_dim] standard normal codes; the same seed always gives the same codes."""
    count = check_count(count, "count", 1, MAX_SAMPLES)
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(check_seed(seed)))


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
    family.check_latents(generator.config, latents, truncation_psi, noise_mode)
    if not latents.dtype.is_floating_point:
        raise ValueError(f"latents must be real floating-point numbers, got dtype {latents.dtype}")
    check_count(len(latents), "the number of latent codes N", 1, MAX_SAMPLES)
    if not torch.isfinite(latents).all():
        raise ValueError("latents contain NaN or infinite values; every code must be finite")
    device = resolve_device(device)

    chunks = [family.generate(generator, chunk.to(device, torch.float32), truncation_psi,
                             noise_mode).float().cpu()
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
