"""Figures for people: images side by side with captions."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .checks import check_image
from .geometry import resize_image


def side_by_side(images: list[torch.Tensor], labels: list[str] | None = None,
                 gap: int = 4) -> torch.Tensor:
    """Join images left to right into one [3, H, W] figure, e.g. input | mask | result | truth.

    Entries may be images [3, h, w] or masks [h, w] (shown in gray levels). Each is scaled, keeping
    its aspect ratio, to the height of the first. With labels, a caption strip is drawn on top.
    Gaps and the strip are white.
    """
    if not images:
        raise ValueError("side_by_side needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"got {len(labels)} labels for {len(images)} images")
    panels = [_as_rgb(entry) for entry in images]
    height = panels[0].shape[1]
    panels = [panel if panel.shape[1] == height
              else resize_image(panel, (height, max(1, round(panel.shape[2] * height / panel.shape[1]))))
              for panel in panels]
    spacer = torch.ones(3, height, gap)
    pieces = [panels[0]]
    for panel in panels[1:]:
        pieces += [spacer, panel]
    figure = torch.cat(pieces, dim=2)
    if labels is None:
        return figure
    return torch.cat([_caption_strip(labels, [p.shape[2] for p in panels], gap), figure], dim=1)


def _as_rgb(entry: torch.Tensor) -> torch.Tensor:
    if entry.dim() == 2:
        return entry.detach().float().clamp(0, 1).expand(3, *entry.shape)
    check_image(entry, "side_by_side entry")
    return entry.detach().float()


def _caption_strip(labels: list[str], widths: list[int], gap: int) -> torch.Tensor:
    font = ImageFont.load_default()
    text_height = max(font.getbbox(label or " ")[3] for label in labels)
    strip = Image.new("RGB", (sum(widths) + gap * (len(widths) - 1), text_height + 6), "white")
    draw = ImageDraw.Draw(strip)
    left = 0
    for label, width in zip(labels, widths):
        draw.text((left + 2, 3), label, fill="black", font=font)
        left += width + gap
    return torch.from_numpy(np.asarray(strip, dtype=np.float32) / 255).permute(2, 0, 1)
