"""Unconditional samples from a generator (previews, the CLI's `generate`)."""
from __future__ import annotations

import torch

from .families import GENERATE_NOISE_MODES, family_of, z_dim_of
from .imaging.checks import check_holds_values, to_unit_range
from .method import memory
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
             truncation_psi: float = 1.0, noise_mode: str = "const",
             output_copies: float = 1.0) -> torch.Tensor:
    """Raw generator output [N, 3, R, R] in about [-1, 1], float32, unclamped, on the CPU.

    latents: a real floating-point tensor, 1 <= N <= MAX_SAMPLES, all finite (a NaN code would
    silently give a NaN image). PGGAN: z [N, latent_dim]. StyleGAN2: z [N, z_dim] (through the
    mapping network) or w+ codes [N, num_ws, w_dim] (straight into the synthesis network).
    StyleGAN2 only: `truncation_psi` pulls every style towards w_avg (w_avg + psi (w - w_avg),
    for z and w+ codes alike; 1 = none) and `noise_mode` is "const" (the file's stored noise) or
    "none". A PGGAN has neither: other values than 1 and "const" are refused.

    Memory: at most `batch_size` codes run at once, fewer where that many would hold more than
    memory.GENERATE_CHUNK_BYTES (a 1024x1024 prior); the batch follows from the prior alone,
    never from the memory free now, so the same codes give the same images on every machine.
    Where the batch and the outputs do not fit in the memory available, a MemoryEstimateError
    (a ValueError) says so before anything runs, naming how many images would fit.
    `output_copies`: how many copies of the outputs the caller will make of them (a grid, a
    file), counted in that check.
    """
    family = family_of(generator)
    family.check_latents(generator.config, latents, truncation_psi, noise_mode)
    check_holds_values(latents, "latents")
    if not latents.dtype.is_floating_point:
        raise ValueError(f"latents must be real floating-point numbers, got dtype {latents.dtype}")
    check_count(len(latents), "the number of latent codes N", 1, MAX_SAMPLES)
    if not torch.isfinite(latents).all():
        raise ValueError("latents contain NaN or infinite values; every code must be finite")
    device = resolve_device(device)
    batch = memory.generate_batch(generator, check_count(batch_size, "batch_size", 1))
    memory.check_generate_fits(generator, len(latents), batch, device, output_copies)

    images = None  # [N, 3, R, R], filled chunk by chunk (no list of chunks to concatenate)
    for start in range(0, len(latents), batch):
        chunk = latents[start:start + batch].to(device, torch.float32)
        output = family.generate(generator, chunk, truncation_psi, noise_mode).float().cpu()
        if images is None:
            images = torch.empty((len(latents), *output.shape[1:]), dtype=torch.float32)
        images[start:start + len(output)] = output
    return images


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
