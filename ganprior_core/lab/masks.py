"""Seeded occlusion masks for inpainting experiments.

Every generator returns a hole mask: a float32 tensor [H, W] with 1 = hole (to fill) and
0 = known. ``size`` is an int for a square image or a (height, width) pair. Randomness comes
only from ``numpy.random.default_rng(seed)``, so the same seed always gives the same mask and
no global RNG state is touched.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

MASK_KINDS = ("box", "random-boxes", "strokes")


def box_mask(size: int | tuple[int, int], area_fraction: float = 0.25,
             seed: int | None = None) -> torch.Tensor:
    """One box covering ``area_fraction`` of the image, with the image's aspect ratio.

    Centred when ``seed`` is None, otherwise placed uniformly at random inside the image.
    """
    height, width = _height_width(size)
    if not 0 < area_fraction <= 1:
        raise ValueError(f"area_fraction must be in (0, 1], got {area_fraction}")
    box_height = max(1, round(height * math.sqrt(area_fraction)))
    box_width = max(1, round(width * math.sqrt(area_fraction)))
    if seed is None:
        top, left = (height - box_height) // 2, (width - box_width) // 2
    else:
        rng = np.random.default_rng(seed)
        top = int(rng.integers(0, height - box_height + 1))
        left = int(rng.integers(0, width - box_width + 1))
    mask = torch.zeros(height, width)
    mask[top:top + box_height, left:left + box_width] = 1
    return mask


def random_boxes_mask(size: int | tuple[int, int], seed: int, num_boxes: int = 5,
                      min_side: float = 0.1, max_side: float = 0.4) -> torch.Tensor:
    """``num_boxes`` possibly overlapping boxes at random positions.

    Each side is drawn uniformly between ``min_side`` and ``max_side`` times the image side.
    """
    height, width = _height_width(size)
    if num_boxes < 1:
        raise ValueError(f"num_boxes must be at least 1, got {num_boxes}")
    if not 0 < min_side <= max_side <= 1:
        raise ValueError(f"need 0 < min_side <= max_side <= 1, got {min_side} and {max_side}")
    rng = np.random.default_rng(seed)
    mask = torch.zeros(height, width)
    for _ in range(num_boxes):
        box_height = max(1, round(height * rng.uniform(min_side, max_side)))
        box_width = max(1, round(width * rng.uniform(min_side, max_side)))
        top = int(rng.integers(0, height - box_height + 1))
        left = int(rng.integers(0, width - box_width + 1))
        mask[top:top + box_height, left:left + box_width] = 1
    return mask


def strokes_mask(size: int | tuple[int, int], seed: int, max_strokes: int = 3,
                 min_vertices: int = 4, max_vertices: int = 12,
                 min_width: float = 12 / 256, max_width: float = 40 / 256) -> torch.Tensor:
    """Free-form brush strokes, following DeepFill v2's ``brush_stroke_mask``.

    Each of 1..``max_strokes`` strokes is a zig-zag polyline of random vertex count whose
    segments alternate direction around a mean angle of 72 degrees, drawn with round joints.
    Widths are fractions of the shorter image side; the defaults are DeepFill's 12-40 pixels at
    256x256, so masks look the same at any resolution. The mask may be flipped at random.
    """
    height, width = _height_width(size)
    if not 1 <= min_vertices <= max_vertices:
        raise ValueError(f"need 1 <= min_vertices <= max_vertices, got {min_vertices}, {max_vertices}")
    if not 0 < min_width <= max_width:
        raise ValueError(f"need 0 < min_width <= max_width, got {min_width} and {max_width}")
    rng = np.random.default_rng(seed)
    mean_angle = 2 * math.pi / 5
    angle_spread = 2 * math.pi / 15
    mean_step = math.hypot(height, width) / 8
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        num_vertices = int(rng.integers(min_vertices, max_vertices + 1))
        angle_min = mean_angle - rng.uniform(0, angle_spread)
        angle_max = mean_angle + rng.uniform(0, angle_spread)
        points = [(float(rng.uniform(0, width)), float(rng.uniform(0, height)))]
        for i in range(num_vertices):
            angle = rng.uniform(angle_min, angle_max)
            if i % 2 == 0:  # alternate turns make the zig-zag of a hand-drawn scribble
                angle = 2 * math.pi - angle
            step = np.clip(rng.normal(mean_step, mean_step / 2), 0, 2 * mean_step)
            x = np.clip(points[-1][0] + step * math.cos(angle), 0, width - 1)
            y = np.clip(points[-1][1] + step * math.sin(angle), 0, height - 1)
            points.append((float(x), float(y)))
        brush = max(1, round(min(height, width) * rng.uniform(min_width, max_width)))
        draw.line(points, fill=255, width=brush)
        radius = brush / 2
        for x, y in points:  # PIL draws no joints: round them off so turns have no notches
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    mask = torch.from_numpy(np.array(canvas) > 0).float()
    if rng.random() < 0.5:
        mask = mask.flip(1)
    if rng.random() < 0.5:
        mask = mask.flip(0)
    return mask


def make_mask(kind: str, size: int | tuple[int, int], seed: int, **options) -> torch.Tensor:
    """Dispatch by name: ``box``, ``random-boxes`` or ``strokes``.

    ``options`` go to the generator (e.g. ``area_fraction`` for ``box``). A ``box`` is placed at
    random unless ``centred=True`` is given, in which case the seed is ignored.
    """
    if kind == "box":
        centred = options.pop("centred", False)
        return box_mask(size, seed=None if centred else seed, **options)
    if kind == "random-boxes":
        return random_boxes_mask(size, seed, **options)
    if kind == "strokes":
        return strokes_mask(size, seed, **options)
    raise ValueError(f"unknown mask kind {kind!r}; accepted kinds: {', '.join(MASK_KINDS)}")


def _height_width(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, (int, np.integer)) else size
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be positive, got {size}")
    return int(height), int(width)
