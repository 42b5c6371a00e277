"""Figures (ganprior_core/imaging/figures.py): panels side by side with gaps and captions."""
from __future__ import annotations

import torch

from ganprior_core.imaging import (
    side_by_side,
)
from tests.imaging.images import quantized_image


def test_side_by_side_places_panels_with_gaps_and_captions():
    first, second = quantized_image(10, 8, seed=5), quantized_image(10, 6, seed=6)
    hole = torch.zeros(10, 4)
    hole[2:5, 1] = 1
    figure = side_by_side([first, hole, second], gap=2)
    assert figure.shape == (3, 10, 8 + 2 + 4 + 2 + 6)
    assert torch.equal(figure[:, :, :8], first)
    assert torch.equal(figure[:, :, 8:10], torch.ones(3, 10, 2))
    assert torch.equal(figure[:, :, 10:14], hole.expand(3, 10, 4))
    assert torch.equal(figure[:, :, 16:], second)

    tall = quantized_image(20, 12, seed=7)
    assert side_by_side([first, tall], gap=0).shape == (3, 10, 8 + 6)

    captioned = side_by_side([first, second], labels=["input", "result"], gap=2)
    strip = captioned.shape[1] - 10
    assert strip > 0 and captioned.shape[2] == 16
    assert torch.equal(captioned[:, strip:], side_by_side([first, second], gap=2))
    assert (captioned[:, :strip] < 0.5).any()  # some dark text was drawn
