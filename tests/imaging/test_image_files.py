"""Reading and writing images and masks (ganprior_core/imaging/image_files.py): any bit depth and
pixel mode, EXIF orientation, transparency as the hole, lossless 8-bit round trips, and files that
are not images (a pipe, a decompression bomb) refused at once."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from ganprior_core import imaging
from ganprior_core.files import UserFileError
from ganprior_core.imaging import (
    load_image,
    load_mask,
    save_image,
    save_mask,
)
from tests.imaging.images import quantized_image

pytestmark = pytest.mark.usefixtures("one_thread")


def test_image_round_trip_is_lossless_for_8_bit_values(tmp_path):
    image = quantized_image(9, 13)
    save_image(image, tmp_path / "sub" / "image.png")
    loaded = load_image(tmp_path / "sub" / "image.png")
    assert loaded.shape == (3, 9, 13) and loaded.dtype == torch.float32
    assert torch.equal(loaded, image)


def test_load_image_drops_alpha_without_compositing(tmp_path):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 0
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    loaded = load_image(tmp_path / "rgba.png")
    assert loaded.shape == (3, 4, 5)
    assert torch.equal(loaded[:, 0, 0], torch.tensor([200, 100, 50]) / 255)


def test_load_mask_thresholds_gray_at_half_scale(tmp_path):
    gray = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert torch.equal(load_mask(tmp_path / "gray.png"), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))

    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 1] = 255
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert torch.equal(load_mask(tmp_path / "rgb.png"), torch.tensor([[0.0, 1.0], [0.0, 0.0]]))


def test_mask_round_trip(tmp_path):
    hole = (torch.rand(12, 7, generator=torch.Generator().manual_seed(1)) > 0.6).float()
    save_mask(hole, tmp_path / "hole.png")
    assert torch.equal(load_mask(tmp_path / "hole.png"), hole)


def test_16_bit_png_is_scaled_by_its_bit_depth(tmp_path):
    Image.fromarray(np.full((12, 12), 32768, np.uint16)).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    image = imaging.load_image(tmp_path / "grey16.png")
    assert torch.allclose(image, torch.full((3, 12, 12), 32768 / 65535))
    assert imaging.load_mask(tmp_path / "grey16.png").eq(1).all()  # 0.50001 >= 0.5: hole


@pytest.mark.parametrize("mode", ["P", "LA", "1", "CMYK", "F"])
def test_other_pixel_modes_load_as_rgb_in_range(tmp_path, mode):
    gray = np.linspace(0, 255, 12 * 12, dtype=np.float32).reshape(12, 12)
    picture = {"P": lambda: Image.fromarray(gray.astype(np.uint8)).convert("RGB").convert("P"),
               "LA": lambda: Image.fromarray(gray.astype(np.uint8)).convert("LA"),
               "1": lambda: Image.fromarray(gray.astype(np.uint8)).convert("1"),
               "CMYK": lambda: Image.fromarray(gray.astype(np.uint8)).convert("CMYK"),
               "F": lambda: Image.fromarray(gray / 255, "F")}[mode]()
    path = tmp_path / ("image.tif" if mode in ("F", "CMYK") else "image.png")
    picture.save(path)
    image = imaging.load_image(path)
    assert image.shape == (3, 12, 12) and image.min() >= 0 and image.max() <= 1
    if mode in ("LA", "F"):  # exact gray levels survive
        assert torch.allclose(image[0], torch.from_numpy(gray / 255), atol=1 / 255)


def test_exif_orientation_is_applied_to_images_and_masks_alike(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", what phones write
    Image.new("RGB", (20, 10), "white").save(tmp_path / "photo.jpg", exif=exif)
    Image.new("L", (20, 10), 255).save(tmp_path / "mask.png", exif=exif)
    assert imaging.load_image(tmp_path / "photo.jpg").shape == (3, 20, 10)
    assert imaging.load_mask(tmp_path / "mask.png").shape == (20, 10)


def test_mask_transparency_means_hole_as_in_comfyui(tmp_path):
    hole = np.zeros((10, 12), bool)
    hole[2:6, 3:9] = True
    alpha = np.where(hole, 0, 255).astype(np.uint8)
    black = np.zeros((10, 12), np.uint8)
    Image.fromarray(np.dstack([black, black, black, alpha]), "RGBA").save(tmp_path / "alpha.png")
    assert torch.equal(imaging.load_mask(tmp_path / "alpha.png"), torch.from_numpy(hole).float())
    # Fully opaque alpha carries nothing: the colour decides, white = hole.
    white_hole = np.where(hole, 255, 0).astype(np.uint8)
    opaque = np.full((10, 12), 255, np.uint8)
    Image.fromarray(np.dstack([white_hole] * 3 + [opaque]), "RGBA").save(tmp_path / "opaque.png")
    assert torch.equal(imaging.load_mask(tmp_path / "opaque.png"), torch.from_numpy(hole).float())


def test_reading_a_fifo_fails_at_once_instead_of_blocking(bad_ws):
    outcome = {}

    def read():
        try:
            imaging.load_image(bad_ws["bad"]["fifo"])
        except ValueError as error:
            outcome["error"] = str(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "load_image blocked on a named pipe"
    assert "not a regular file" in outcome["error"]


def test_decompression_bomb_is_refused_from_its_header(bad_ws):
    with pytest.raises(ValueError, match="decompression bomb"):
        imaging.load_mask(bad_ws["bad"]["bomb"])


def test_library_save_refuses_an_oversized_webp_without_a_temporary_file(tmp_path):
    with pytest.raises(UserFileError, match="WEBP holds at most 16383"):
        imaging.save_image(torch.zeros(3, 8, 16384), tmp_path / "x.webp")
    assert list(tmp_path.iterdir()) == []
