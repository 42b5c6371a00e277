"""Unconditional samples from a generator (previews, the CLI's `generate`)."""
from __future__ import annotations

import torch

from .network import PGGANGenerator


def sample_latents(count: int, latent_dim: int, seed: int) -> torch.Tensor:
    """[count, latent_dim] standard normal codes; the same seed always gives the same codes."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate(generator: PGGANGenerator, latents: torch.Tensor,
             device: str | torch.device = "cpu", batch_size: int = 16) -> torch.Tensor:
    """Raw generator output [N, 3, R, R] in about [-1, 1], float32, unclamped, on the CPU."""
    latent_dim = generator.config.latent_dim
    if latents.dim() != 2 or latents.shape[1] != latent_dim:
        raise ValueError(f"latents must be [N, {latent_dim}] for this generator, "
                         f"got {list(latents.shape)}")
    chunks = [generator(chunk.to(device, torch.float32)).float().cpu()
              for chunk in latents.split(batch_size)]
    return torch.cat(chunks)


def sample_images(generator: PGGANGenerator, count: int, seed: int,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """[count, 3, R, R] images in [0, 1]."""
    latents = sample_latents(count, generator.config.latent_dim, seed)
    return ((generate(generator, latents, device) + 1) / 2).clamp(0, 1)


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
