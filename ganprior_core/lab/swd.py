"""Multi-scale sliced Wasserstein distance (SWD), the image-statistics metric of the PGGAN paper.

Follows the official code (metrics/sliced_wasserstein.py): a Laplacian pyramid per image down to
16x16 (5x5 binomial filter, mirrored borders, as cv2.pyrDown / pyrUp); 128 random 7x7x3
neighbourhoods per image and level (here at the same positions in both sets); each set's
descriptors normalised per colour channel by that set's own mean and standard deviation; then the
sliced Wasserstein distance over random unit directions (the paper's 512, repeated 4 times and
averaged), reported x1e3 per pyramid level.
Lower is better; two independent real sets give the floor a finite sample size can reach.
`python -m ganprior_core swd` scores a prior against the procedural facades.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoints import load_generator
from ..cli import CommandError
from ..families import z_dim_of
from ..imaging.checks import to_unit_range
from ..sampling import generate, sample_latents
from . import procedural

_BINOMIAL_5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
_PYRAMID_FILTER = torch.outer(_BINOMIAL_5, _BINOMIAL_5) / 256.0


@dataclass(frozen=True)
class SWDConfig:
    neighbourhood_size: int = 7
    neighbourhoods_per_image: int = 128
    directions_per_repeat: int = 512
    repeats: int = 4
    min_resolution: int = 16
    # Directions are projected this many at a time, bounding memory for large image sets.
    direction_chunk: int = 128


def _blur(images: torch.Tensor, gain: float) -> torch.Tensor:
    channels = images.shape[1]
    kernel = (_PYRAMID_FILTER * gain).to(images.dtype).expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="reflect"), kernel, groups=channels)


def pyramid_down(images: torch.Tensor) -> torch.Tensor:
    return _blur(images, 1.0)[:, :, ::2, ::2]


def pyramid_up(images: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = images.shape
    spread = images.new_zeros(batch, channels, 2 * height, 2 * width)
    spread[:, :, ::2, ::2] = images
    return _blur(spread, 4.0)  # x4 restores the energy of the three zeros per pixel


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass levels, finest first; the last level is the low-pass remainder."""
    pyramid = [images.float()]
    for _ in range(1, levels):
        pyramid.append(pyramid_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyramid_up(pyramid[-1])
    return pyramid


def neighbourhood_positions(batch: int, resolution: int, size: int, per_image: int,
                            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Centres (rows, cols) of `per_image` random size x size neighbourhoods of every image."""
    half = size // 2
    count = batch * per_image
    return (rng.integers(half, resolution - half, count),
            rng.integers(half, resolution - half, count))


def neighbourhood_descriptors(level: torch.Tensor, rows: np.ndarray, cols: np.ndarray,
                              size: int) -> torch.Tensor:
    """The size x size x C patches around (rows, cols), consecutive per image:
    [len(rows), C, size, size]."""
    batch, channels = level.shape[:2]
    image_index = np.repeat(np.arange(batch), len(rows) // batch)
    offsets = np.arange(-(size // 2), size // 2 + 1)
    row_index = torch.from_numpy(rows[:, None] + offsets)[:, None, :, None]  # [count, 1, size, 1]
    col_index = torch.from_numpy(cols[:, None] + offsets)[:, None, None, :]  # [count, 1, 1, size]
    return level[torch.from_numpy(image_index)[:, None, None, None],
                 torch.arange(channels)[None, :, None, None], row_index, col_index]


def normalise_descriptors(descriptors: torch.Tensor) -> np.ndarray:
    """Zero mean, unit std per colour channel over the whole set, as float32 [count, C*size*size]."""
    mean = descriptors.mean(dim=(0, 2, 3), keepdim=True)
    std = descriptors.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return ((descriptors - mean) / std).reshape(descriptors.shape[0], -1).numpy()


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions_per_repeat: int,
                       repeats: int, rng: np.random.Generator, direction_chunk: int = 128) -> float:
    """Mean over repeats of the 1-D Wasserstein-1 distance averaged over random unit directions.

    a, b: [count, dims] point sets of equal size. Along one direction the distance between two
    equal-size empirical distributions is the mean absolute difference of the sorted projections.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two [count, dims] sets of equal shape, got {a.shape} and {b.shape}")
    results = []
    for _ in range(repeats):
        directions = rng.standard_normal((a.shape[1], directions_per_repeat))
        directions = (directions / np.sqrt(np.square(directions).sum(axis=0))).astype(np.float32)
        total = 0.0
        for start in range(0, directions_per_repeat, direction_chunk):
            chunk = directions[:, start:start + direction_chunk]
            # numpy sorts rows with SIMD; several times faster than torch.sort on CPU.
            projected_a = np.sort((a @ chunk).T, axis=1)
            projected_b = np.sort((b @ chunk).T, axis=1)
            total += float(np.abs(projected_a - projected_b).mean(axis=1).sum())
        results.append(total / directions_per_repeat)
    return float(np.mean(results))


def pyramid_resolutions(resolution: int, min_resolution: int = 16) -> list[int]:
    resolutions = []
    while resolution >= min_resolution:
        resolutions.append(resolution)
        resolution //= 2
    return resolutions


def swd_per_scale(images_a: torch.Tensor, images_b: torch.Tensor, seed: int = 0,
                  config: SWDConfig = SWDConfig()) -> dict[int, float]:
    """SWD x1e3 between two equal-size image sets, per pyramid resolution (finest first).

    images: [N, 3, H, W] float in any fixed range (descriptors are normalised per set); square,
    H a power of two >= config.min_resolution. The seed fixes the neighbourhood positions and
    the directions, so results repeat exactly.
    """
    if images_a.shape != images_b.shape:
        raise ValueError(f"SWD compares sets of equal size and shape, got {tuple(images_a.shape)} "
                         f"and {tuple(images_b.shape)}")
    resolutions = pyramid_resolutions(images_a.shape[-1], config.min_resolution)
    if not resolutions:
        raise ValueError(f"images of {images_a.shape[-1]} pixels are below the smallest SWD "
                         f"resolution {config.min_resolution}")
    pyramids = [laplacian_pyramid(torch.as_tensor(images), len(resolutions))
                for images in (images_a, images_b)]
    rng = np.random.default_rng(seed)
    distances = {}
    for level, resolution in enumerate(resolutions):
        # Both sets use the same neighbourhood positions: less sampling noise, and identical
        # sets score exactly zero.
        rows, cols = neighbourhood_positions(images_a.shape[0], resolution,
                                             config.neighbourhood_size,
                                             config.neighbourhoods_per_image, rng)
        descriptors = [normalise_descriptors(neighbourhood_descriptors(
            pyramid[level], rows, cols, config.neighbourhood_size)) for pyramid in pyramids]
        distances[resolution] = 1e3 * sliced_wasserstein(
            descriptors[0], descriptors[1], config.directions_per_repeat, config.repeats, rng,
            config.direction_chunk)
    return distances


def generator_swd(generator: torch.nn.Module, real_images: torch.Tensor, seed: int = 0,
                  config: SWDConfig = SWDConfig()) -> dict[int, float]:
    """SWD x1e3 per scale between `len(real_images)` samples of `generator` (PGGAN, or StyleGAN2
    with its constant noise, as the method uses it) and the real images.

    real_images: [N, 3, R, R] in [0, 1]. The samples use `sampling.sample_latents(N, ..., seed)`,
    clamped to [-1, 1] and mapped to [0, 1]; `seed` also fixes neighbourhoods and directions."""
    resolution = generator.config.resolution
    if real_images.dim() != 4 or real_images.shape[1:] != (3, resolution, resolution):
        raise ValueError(f"real images must be [N, 3, {resolution}, {resolution}] like the "
                         f"generator's output, got {tuple(real_images.shape)}")
    latents = sample_latents(len(real_images), z_dim_of(generator), seed)
    generated = torch.cat([generate(generator, chunk) for chunk in latents.split(256)])
    return swd_per_scale(real_images, to_unit_range(generated), seed, config)


# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("The PGGAN paper's sample-quality metric (ganprior_core.swd): N seeded "
                          "samples of the checkpoint against the first N procedural evaluation "
                          "facades, x1e3 per pyramid scale; --floor scores two disjoint real sets "
                          "instead.")
    parser.add_argument("--checkpoint", help="the generator (any supported format)")
    parser.add_argument("--procedural", dest="count", type=int, default=2048, metavar="N",
                        help="images per set (default 2048, as in the model card)")
    parser.add_argument("--floor", action="store_true",
                        help="real vs real: what a perfect generator would score with N images")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the samples and the patch positions (default 0)")
    parser.add_argument("--threads", type=int, help="CPU threads (default torch's)")


def run_command(args: argparse.Namespace) -> None:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.count < 2:
        raise CommandError(f"--procedural needs at least 2 images, got {args.count}")
    real = procedural.facade_batch(procedural.evaluation_seeds(args.count))
    if args.floor:
        label = f"{args.count} real vs {args.count} other real (the floor)"
        other = procedural.facade_batch(procedural.evaluation_seeds(args.count, offset=args.count))
        distances = swd_per_scale(real, other, args.seed)
    else:
        if not args.checkpoint:
            raise CommandError("give --checkpoint (or --floor for the real-vs-real floor)")
        generator = load_generator(args.checkpoint).eval()
        if generator.config.resolution != procedural.IMAGE_SIZE:
            raise CommandError(f"the procedural facades are {procedural.IMAGE_SIZE}x"
                               f"{procedural.IMAGE_SIZE}; {args.checkpoint} generates "
                               f"{generator.config.resolution}x{generator.config.resolution}")
        label = f"{args.count} samples of {args.checkpoint} (latent seed {args.seed}) vs real"
        distances = generator_swd(generator, real, args.seed)
    print(f"SWD x1e3, {label}:")
    for resolution, distance in distances.items():
        print(f"  {resolution:4d} px  {distance:7.2f}")
    print(f"  mean     {sum(distances.values()) / len(distances):7.2f}")
