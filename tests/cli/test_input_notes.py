"""What the user did not mean is not answered silently: `inpaint` without --mask on an image with
a transparent region fills that region (as ComfyUI's Load Image reads it) and says so; an
image's alpha channel and 16-bit depth are kept in --out where its format holds them, and noted
where not; `metrics` notes transparent pixels it scores by their stored colour."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganprior_core import bundled_prior_path, imaging
from tests.cli_harness import run_cli
from tests.pack_under_test import ROOT

FAST = ["--steps", "2", "--stop", "fixed", "--precision", "fp32", "--compile", "off", "--codes", "2"]
SHIPPED = ROOT / "example_workflows" / "ganprior_facade_hole.png"


def inpaint(*argv) -> tuple[str, str]:
    code, out, err = run_cli(["inpaint", "--checkpoint", bundled_prior_path("pggan"), *FAST, *argv])
    assert code == 0, err
    return out, err


def notes(out: str) -> list[str]:
    return [line.removeprefix("note: ") for line in out.splitlines() if line.startswith("note: ")]


def test_the_shipped_facade_without_mask_fills_its_transparent_pixels_and_says_so(tmp_path):
    before = SHIPPED.read_bytes()
    out, _ = inpaint("--image", SHIPPED, "--out", tmp_path / "filled.png")
    loaded = imaging.read_image(SHIPPED)
    holes = int(loaded.alpha_hole().sum())
    assert (f"no --mask: the {holes} transparent pixels of ganprior_facade_hole.png (alpha at most "
            "half) are the hole, as ComfyUI's Load Image reads them; give --mask to choose the hole "
            "yourself") in notes(out)
    # Exactly what an explicit mask of those pixels gives.
    imaging.save_mask(loaded.alpha_hole(), tmp_path / "alpha_mask.png")
    inpaint("--image", SHIPPED, "--mask", tmp_path / "alpha_mask.png", "--out", tmp_path / "masked.png")
    filled, masked = imaging.read_image(tmp_path / "filled.png"), imaging.read_image(tmp_path / "masked.png")
    assert torch.equal(filled.pixels, masked.pixels)
    # The transparent region was filled, not returned unchanged, and is opaque now.
    hole = loaded.alpha_hole().bool()
    assert not torch.equal(filled.pixels[:, hole], loaded.pixels[:, hole])
    assert filled.alpha is None or bool((filled.alpha[hole] == 1).all())
    assert SHIPPED.read_bytes() == before


def test_with_a_mask_the_alpha_is_kept_where_known_and_the_fill_is_opaque(tmp_path):
    rgba = np.zeros((24, 20, 4), np.uint8)
    rgba[..., :3] = np.random.default_rng(0).integers(0, 256, (24, 20, 3))
    rgba[..., 3] = 255
    rgba[2:6, 2:6, 3] = 0  # a transparent corner the mask keeps
    rgba[10:14, 8:12, 3] = 0  # a transparent area the mask fills
    Image.fromarray(rgba, "RGBA").save(tmp_path / "image.png")
    hole = torch.zeros(24, 20)
    hole[9:15, 7:13] = 1
    imaging.save_mask(hole, tmp_path / "mask.png")
    out, _ = inpaint("--image", tmp_path / "image.png", "--mask", tmp_path / "mask.png",
                     "--out", tmp_path / "out.png")
    assert ("image.png has 32 transparent or partly transparent pixels: --mask says what to fill, "
            "and they are read as their stored colour; --out keeps their alpha where the format "
            "holds one") in notes(out)
    written = imaging.read_image(tmp_path / "out.png")
    expected_alpha = torch.from_numpy(rgba[..., 3] / 255).float()
    expected_alpha[hole.bool()] = 1
    assert torch.equal(written.alpha, expected_alpha)
    known = ~hole.bool()
    assert torch.equal(written.pixels[:, known], imaging.read_image(tmp_path / "image.png").pixels[:, known])

    out, _ = inpaint("--image", tmp_path / "image.png", "--mask", tmp_path / "mask.png",
                     "--out", tmp_path / "out.jpg")
    assert "out.jpg: the alpha channel is not written (JPEG holds none here; .png keeps it)" in notes(out)


def test_partly_transparent_pixels_that_are_no_hole_are_said_too(tmp_path):
    rgba = np.full((16, 16, 4), 128, np.uint8)
    rgba[..., 3] = 255
    rgba[4:8, 4:8, 3] = 200  # more than half opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "faint.png")
    out, _ = inpaint("--image", tmp_path / "faint.png", "--out", tmp_path / "out.png")
    assert ("no --mask: faint.png has 16 partly transparent pixels, none transparent enough (alpha at "
            "most half) to be a hole, so the whole image is reconstructed; give --mask to choose a "
            "hole") in notes(out)


def test_a_16_bit_image_gives_a_16_bit_png_and_keeps_its_known_pixels_exactly(tmp_path):
    samples = np.random.default_rng(0).integers(0, 65536, (24, 20, 3)).astype(np.uint16)
    image = torch.from_numpy(samples.astype(np.float32) / 65535).permute(2, 0, 1)
    imaging.save_image(image, tmp_path / "deep.png", bits=16)
    hole = torch.zeros(24, 20)
    hole[8:16, 6:14] = 1
    imaging.save_mask(hole, tmp_path / "mask.png")
    out, _ = inpaint("--image", tmp_path / "deep.png", "--mask", tmp_path / "mask.png",
                     "--out", tmp_path / "out.png")
    assert notes(out) == [n for n in notes(out) if "bits" not in n]  # nothing lost: nothing said
    written = imaging.read_image(tmp_path / "out.png")
    assert written.bits == 16
    known = ~hole.bool()
    assert torch.equal(written.pixels[:, known], image[:, known])

    out, _ = inpaint("--image", tmp_path / "deep.png", "--mask", tmp_path / "mask.png",
                     "--out", tmp_path / "out.jpg")
    assert "out.jpg: written at 8 bits per channel (JPEG is written at 8 bits here; .png keeps 16)" \
        in notes(out)


def test_a_float_tiff_is_written_at_16_bits_and_says_so(tmp_path):
    Image.fromarray(np.linspace(0, 1, 24 * 20, dtype=np.float32).reshape(24, 20), "F").save(
        tmp_path / "float.tif")
    out, _ = inpaint("--image", tmp_path / "float.tif", "--out", tmp_path / "out.png")
    assert ("out.png: the image's 32-bit floating-point samples are written at 16 bits per channel"
            in notes(out))
    assert imaging.read_image(tmp_path / "out.png").bits == 16


@pytest.mark.parametrize("which", ["image", "reference"])
def test_metrics_notes_transparent_pixels_it_scores_by_their_colour(tmp_path, which):
    rgba = np.full((16, 16, 4), 100, np.uint8)
    rgba[..., 3] = 255
    rgba[0, :5, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "plain.png")
    files = {"image": tmp_path / "plain.png", "reference": tmp_path / "plain.png", which: tmp_path / "alpha.png"}
    code, out, err = run_cli(["metrics", files["image"], files["reference"]])
    assert code == 0, err
    assert notes(out) == ["alpha.png has 5 transparent or partly transparent pixels: they are scored "
                          "by their stored colour (alpha is not compared)"]
