"""The held-out facades the method's settings are chosen on (`choose`, `stop-study`).

A setting chosen on the facades a benchmark reports would flatter it there; these are never
trained on and disjoint from the evaluation facades (`procedural.evaluation_seeds(n)`), and every
study that chooses something uses the same ones, each with a seeded box and seeded strokes.
"""
from __future__ import annotations

import torch

from . import masks, procedural

HELD_OUT_OFFSET = 5_100  # seeds 10,005,100 on: apart from the PGGAN choices' 10,005,000-043
HOLE_KINDS = ("box", "strokes")


def held_out_seeds(count: int) -> list[int]:
    """The first `count` held-out facades' seeds."""
    return procedural.evaluation_seeds(count, offset=HELD_OUT_OFFSET)


def held_out_cases(count: int, resolution: int) -> list[tuple[int, str, torch.Tensor, torch.Tensor]]:
    """(facade seed, hole kind, image [3, R, R] quantised to 8 bits, hole [R, R]) per run."""
    if resolution != procedural.IMAGE_SIZE:
        raise ValueError(f"the procedural facades are {procedural.IMAGE_SIZE}x{procedural.IMAGE_SIZE}; "
                         f"this prior generates {resolution}x{resolution}")
    cases = []
    for seed in held_out_seeds(count):
        image = torch.round(procedural.facade_image(seed) * 255) / 255  # what a PNG holds
        for kind in HOLE_KINDS:
            cases.append((seed, kind, image, masks.make_mask(kind, resolution, seed)))
    return cases
