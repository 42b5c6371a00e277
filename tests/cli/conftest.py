"""Fixtures of the command-line tests."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def photos(ws):
    """in/photos: b.png (RGBA, a transparent corner), a.jpg and c.png of three sizes, beside a text
    file, a hidden image and a subfolder that are not read; in/masks: a mask for each, a.jpg's as
    a.png."""
    folder, masks = ws["in"] / "photos", ws["in"] / "masks"
    folder.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(3)
    sizes = {"a.jpg": (20, 28), "b.png": (16, 16), "c.png": (12, 18)}
    for index, (name, (height, width)) in enumerate(sizes.items()):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        if name == "b.png":
            alpha = np.full((height, width, 1), 255, np.uint8)
            alpha[:6, :6] = 0
            pixels = np.concatenate([pixels, alpha], axis=2)
        Image.fromarray(pixels).save(folder / name)
        hole = np.zeros((height, width), np.uint8)
        top, left = (index + 1) * height // 8, (index + 1) * width // 8  # each its own place
        hole[top:top + height // 4, left:left + width // 4] = 255
        Image.fromarray(hole).save(masks / name.replace(".jpg", ".png"))
    (folder / "notes.txt").write_text("not an image\n")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / ".hidden.png")
    (folder / "sub.png").mkdir()
    return {**ws, "photos": folder, "masks": masks, "names": sorted(sizes)}
