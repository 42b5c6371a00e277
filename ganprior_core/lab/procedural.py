"""Procedural 64x64 building facades: the training domain of the bundled demo prior.

Every image is a pure function of its seed (numpy.random.default_rng(seed)): a sky gradient,
ground, one building whose windows sit on a regular rows x cols grid, a gable roof, flat roof
or church-like tower with a spire, door(s), colour variation and mild texture. The window grid
is the point: a hole over part of it can only be filled right by a model that knows the grid.

Training and evaluation draw from disjoint seed ranges so that metrics are never computed on
images the prior was trained on.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

IMAGE_SIZE = 64
TRAIN_SEED_START = 0
TRAIN_SEED_STOP = 1_000_000  # exclusive
EVALUATION_SEED_START = 10_000_000

_ROWS, _COLS = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
_EVERY_THIRD_ROW = (np.arange(IMAGE_SIZE) % 3 == 0)[:, None]

# Palettes are base colours; every image jitters them so no two buildings share a colour.
_SKY_TOPS = np.array([[0.20, 0.40, 0.80], [0.35, 0.45, 0.60], [0.25, 0.20, 0.45],
                      [0.45, 0.60, 0.85]], np.float32)
_SKY_HORIZONS = np.array([[0.70, 0.82, 0.95], [0.75, 0.75, 0.78], [0.95, 0.65, 0.45],
                          [0.85, 0.90, 0.95]], np.float32)
_GROUNDS = np.array([[0.30, 0.50, 0.25], [0.45, 0.45, 0.45], [0.50, 0.42, 0.30],
                     [0.35, 0.40, 0.30]], np.float32)
_WALLS = np.array([[0.85, 0.78, 0.62], [0.65, 0.30, 0.22], [0.70, 0.70, 0.70],
                   [0.92, 0.90, 0.85], [0.80, 0.65, 0.45], [0.55, 0.55, 0.60]], np.float32)
_ROOFS = np.array([[0.45, 0.15, 0.12], [0.25, 0.25, 0.30], [0.35, 0.25, 0.18],
                   [0.20, 0.35, 0.35]], np.float32)
_GLASS = np.array([[0.10, 0.14, 0.25], [0.05, 0.05, 0.08], [0.25, 0.35, 0.50],
                   [0.85, 0.75, 0.40]], np.float32)  # the last is lit windows at dusk
_DOORS = np.array([[0.30, 0.18, 0.10], [0.15, 0.15, 0.18], [0.45, 0.10, 0.10]], np.float32)

ROOF_STYLES = ("gable", "flat", "tower_center", "tower_side")


def train_seed_range() -> range:
    return range(TRAIN_SEED_START, TRAIN_SEED_STOP)


def evaluation_seeds(n: int, offset: int = 0) -> list[int]:
    """n seeds no training run ever sees; `offset` gives further disjoint evaluation sets."""
    start = EVALUATION_SEED_START + offset
    return list(range(start, start + n))


def facade_image(seed: int) -> torch.Tensor:
    """The facade of `seed` as float32 [3, 64, 64] in [0, 1]."""
    return torch.from_numpy(render_facade(seed))


def facade_batch(seeds: Sequence[int]) -> torch.Tensor:
    """Facades of `seeds` as float32 [B, 3, 64, 64] in [0, 1]."""
    return torch.from_numpy(np.stack([render_facade(int(s)) for s in seeds]))


def _jitter(rng: np.random.Generator, palette: np.ndarray, amount: float) -> np.ndarray:
    colour = palette[rng.integers(len(palette))]
    return np.clip(colour + rng.uniform(-amount, amount, 3).astype(np.float32), 0.0, 1.0)


def _box(top: float, bottom: float, left: float, right: float) -> np.ndarray:
    return (_ROWS >= top) & (_ROWS < bottom) & (_COLS >= left) & (_COLS < right)


def _triangle(apex_row: float, base_row: float, left: float, right: float) -> np.ndarray:
    """Isosceles triangle pointing up, base from `left` to `right` on `base_row`."""
    centre, half = (left + right) / 2, (right - left) / 2
    depth = (_ROWS - apex_row) / max(base_row - apex_row, 1.0)  # 0 at the apex, 1 at the base
    return (depth >= 0) & (_ROWS < base_row) & (np.abs(_COLS + 0.5 - centre) <= depth * half)


def _paint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    image[:, mask] = colour[:, None]


def render_facade(seed: int) -> np.ndarray:
    """The facade of `seed` as a numpy float32 [3, 64, 64] in [0, 1]."""
    rng = np.random.default_rng(seed)
    size = IMAGE_SIZE

    horizon = int(rng.integers(46, 58))
    sky_top, sky_horizon = _jitter(rng, _SKY_TOPS, 0.08), _jitter(rng, _SKY_HORIZONS, 0.06)
    t = (_ROWS / horizon).clip(0, 1)[None]
    image = (sky_top[:, None, None] * (1 - t) + sky_horizon[:, None, None] * t).astype(np.float32)
    ground = _jitter(rng, _GROUNDS, 0.06)
    ground_shade = 1.0 - 0.25 * ((_ROWS - horizon) / (size - horizon)).clip(0, 1)
    below = _ROWS >= horizon
    image[:, below] = (ground[:, None] * ground_shade[below][None])

    # Building body: the window grid decides its width, so the facade always fits the grid.
    rows, cols = int(rng.integers(2, 6)), int(rng.integers(2, 8))
    window_w, window_h = int(rng.integers(2, 5)), int(rng.integers(3, 6))
    gap_x, gap_y = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    pitch_x, pitch_y = window_w + gap_x, window_h + gap_y
    while cols * pitch_x + gap_x + 2 > size - 4:
        cols -= 1
    margin_x = int(rng.integers(2, 5))
    door_h = int(rng.integers(7, 12))
    wall_w = cols * pitch_x - gap_x + 2 * margin_x
    max_rows = (horizon - door_h - 2 - 14) // pitch_y
    rows = max(1, min(rows, max_rows))
    wall_h = rows * pitch_y + door_h + 2 + int(rng.integers(1, 4))
    left = int(rng.integers(2, size - wall_w - 1))
    right, bottom = left + wall_w, horizon
    top = bottom - wall_h
    wall = _jitter(rng, _WALLS, 0.07)
    roof = _jitter(rng, _ROOFS, 0.06)
    style = ROOF_STYLES[rng.integers(len(ROOF_STYLES))]

    if style == "gable":
        _paint(image, _triangle(max(top - wall_w * rng.uniform(0.25, 0.45), 1), top,
                                left - 2, right + 2), roof)
    elif style == "flat":
        _paint(image, _box(top - 2, top, left - 1, right + 1), roof * 0.8)
    else:
        tower_w = int(rng.integers(8, 14))
        tower_left = ((left + right - tower_w) // 2 if style == "tower_center"
                      else (left if rng.random() < 0.5 else right - tower_w))
        tower_top = max(top - int(rng.integers(10, 18)), 12)
        _paint(image, _triangle(max(tower_top - int(rng.integers(8, 14)), 0), top,
                                left - 1, right + 1) & (_ROWS >= top - 4), roof)
        _paint(image, _box(tower_top, top, tower_left, tower_left + tower_w), wall * 0.92)
        _paint(image, _triangle(max(tower_top - int(rng.integers(8, 13)), 0), tower_top,
                                tower_left - 1, tower_left + tower_w + 1), roof)
        # A round belfry window keeps towers recognisable at 64 pixels.
        cy, cx = tower_top + 4, tower_left + tower_w / 2
        _paint(image, (_ROWS + 0.5 - cy) ** 2 + (_COLS + 0.5 - cx) ** 2 <= 2.2 ** 2,
               _GLASS[1])
    _paint(image, _box(top, bottom, left, right), wall)

    # Horizontal courses give the wall a mild brick-like texture.
    courses = _box(top, bottom, left, right) & _EVERY_THIRD_ROW
    image[:, courses] *= np.float32(rng.uniform(0.9, 0.97))

    grid_left = left + margin_x
    grid_top = top + int(rng.integers(2, 4))
    glass = _jitter(rng, _GLASS, 0.05)
    in_grid = _box(grid_top, grid_top + rows * pitch_y - gap_y, grid_left,
                   grid_left + cols * pitch_x - gap_x)
    windows = (in_grid & (((_COLS - grid_left) % pitch_x) < window_w)
               & (((_ROWS - grid_top) % pitch_y) < window_h))
    sills = (in_grid & (((_COLS - grid_left) % pitch_x) < window_w)
             & (((_ROWS - grid_top) % pitch_y) == window_h))
    _paint(image, sills, np.clip(wall * 1.15, 0, 1))
    _paint(image, windows, glass)

    door_colour = _jitter(rng, _DOORS, 0.05)
    doors = int(rng.choice([1, 1, 2, 3]))
    door_w = int(rng.integers(3, 7))
    for index in range(doors):
        centre = left + wall_w * (index + 1) / (doors + 1)
        door_left = int(round(centre - door_w / 2))
        _paint(image, _box(bottom - door_h, bottom, door_left, door_left + door_w), door_colour)

    image += np.float32(0.02) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0)
