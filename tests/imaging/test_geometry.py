"""Fitting an image and its hole to the prior and back (ganprior_core/imaging/geometry.py): resize or
pad, masks that never lose a hole pixel, and the composite that keeps every known pixel."""
from __future__ import annotations

import pytest
import torch

from ganprior_core import imaging
from ganprior_core.imaging import (
    composite,
    fit_to_resolution,
    resize_mask,
)
from tests.imaging.images import quantized_image, smooth_image

pytestmark = pytest.mark.usefixtures("one_thread")


def test_resize_mask_never_loses_a_hole_pixel():
    generator = torch.Generator().manual_seed(2)
    hole = (torch.rand(64, 48, generator=generator) > 0.995).float()
    hole_rows, hole_cols = torch.nonzero(hole, as_tuple=True)
    assert len(hole_rows) > 0
    for height, width in ((16, 12), (24, 17), (7, 5), (100, 90)):
        resized = resize_mask(hole, (height, width))
        assert set(resized.unique().tolist()) <= {0.0, 1.0}
        # The output pixel whose footprint contains each input hole pixel must be a hole.
        assert resized[hole_rows * height // 64, hole_cols * width // 48].eq(1).all()
    single = torch.zeros(64, 64)
    single[37, 10] = 1
    down = resize_mask(single, (16, 16))
    assert down.sum() == 1 and down[9, 2] == 1


def test_resize_mask_binarizes_soft_masks():
    soft = torch.tensor([[0.2, 0.5], [0.49, 0.9]])
    assert torch.equal(resize_mask(soft, (2, 2)), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


def test_fit_is_the_identity_at_the_native_resolution():
    image = quantized_image(32, 32)
    hole = torch.zeros(32, 32)
    hole[8:16, 8:20] = 1
    for mode in ("resize", "pad"):
        fitted, fitted_hole, restore = fit_to_resolution(image, hole, 32, mode)
        assert torch.equal(fitted, image) and torch.equal(fitted_hole, hole)
        assert torch.equal(restore(fitted), image)


def test_resize_mode_round_trip_approximates_a_smooth_image():
    image = smooth_image(48, 80)
    hole = torch.zeros(48, 80)
    hole[10:20, 30:50] = 1
    fitted, fitted_hole, restore = fit_to_resolution(image, hole, 32, "resize")
    assert fitted.shape == (3, 32, 32) and fitted_hole.shape == (32, 32)
    assert fitted_hole.sum() > 0 and fitted_hole[0].sum() == 0
    restored = restore(fitted)
    assert restored.shape == (3, 48, 80)
    assert (restored - image).abs().max() < 0.05


def test_pad_mode_marks_the_border_as_hole_and_restore_crops_it():
    image = quantized_image(40, 64, seed=3)
    hole = torch.zeros(40, 64)
    hole[20, 30] = 1
    fitted, fitted_hole, restore = fit_to_resolution(image, hole, 64, "pad")
    assert fitted.shape == (3, 64, 64)
    assert torch.equal(fitted[:, 12:52], image)
    assert torch.equal(fitted[:, :12], image[:, :1].expand(3, 12, 64))  # edge rows repeated
    assert fitted_hole[:12].eq(1).all() and fitted_hole[52:].eq(1).all()
    assert fitted_hole[12:52].sum() == 1 and fitted_hole[32, 30] == 1
    assert torch.equal(restore(fitted), image)

    smooth = smooth_image(40, 64)
    small, small_hole, restore_small = fit_to_resolution(smooth, hole, 32, "pad")
    assert small.shape == (3, 32, 32) and small_hole[:6].eq(1).all()
    assert (restore_small(small) - smooth).abs().max() < 0.05


def test_fit_resizes_a_mask_of_another_size_to_the_image():
    image = smooth_image(32, 32)
    half_size_hole = torch.zeros(16, 16)
    half_size_hole[4:8, 4:8] = 1
    _, fitted_hole, _ = fit_to_resolution(image, half_size_hole, 32)
    expected = torch.zeros(32, 32)
    expected[8:16, 8:16] = 1
    assert torch.equal(fitted_hole, expected)


def test_fit_rejects_bad_inputs_naming_what_is_accepted():
    image, hole = smooth_image(16, 16), torch.zeros(16, 16)
    with pytest.raises(ValueError, match=r"RGB tensor \[3, H, W\]"):
        fit_to_resolution(torch.rand(4, 16, 16), hole, 8)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        fit_to_resolution(image, hole[None], 8)
    with pytest.raises(ValueError, match="resize, pad"):
        fit_to_resolution(image, hole, 8, mode="crop")
    _, _, restore = fit_to_resolution(image, hole, 8)
    with pytest.raises(ValueError, match=r"\[3, 8, 8\]"):
        restore(torch.rand(3, 16, 16))


def test_pad_keeps_a_thin_images_hole_and_known_pixels():
    image = torch.rand(3, 10, 10000)
    hole = torch.zeros(10, 10000)
    hole[2:8, 4000:6000] = 1
    fitted, fitted_hole, restore = imaging.fit_to_resolution(image, hole, 64, "pad")
    assert fitted.shape == (3, 64, 64)
    image_rows = [row for row in range(64) if not fitted_hole[row].all()]
    assert len(image_rows) == 1  # the 10-pixel height becomes one row; the rest is padding
    strip = fitted_hole[image_rows[0]]
    assert strip[:24].eq(0).all() and strip[40:].eq(0).all()  # known stays known
    assert strip[27:37].eq(1).all()  # the hole stays a hole
    assert restore(fitted).shape == (3, 10, 10000)


def test_fit_refuses_a_mask_whose_known_pixels_cannot_survive():
    hole = torch.ones(640, 640)
    hole[::20, ::20] = 0  # known single pixels, 20 apart: none survives at 16x16
    with pytest.raises(ValueError, match="no known pixel"):
        imaging.fit_to_resolution(torch.rand(3, 640, 640), hole, 16)


def test_composite_keeps_known_pixels_bit_exact_and_takes_the_hole_from_the_result():
    original = torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(4))
    result = torch.full((3, 6, 5), float("nan"))
    result[:, 1:3, 1:4] = 0.25
    hole = torch.zeros(6, 5)
    hole[1:3, 1:4] = 1
    merged = composite(original, result, hole)
    assert torch.equal(merged[:, hole == 0], original[:, hole == 0])
    assert torch.equal(merged[:, 1:3, 1:4], result[:, 1:3, 1:4])

    soft = hole * 0.5
    blended = composite(original, torch.zeros_like(original), soft)
    assert torch.allclose(blended[:, 1:3, 1:4], original[:, 1:3, 1:4] * 0.5)
    with pytest.raises(ValueError, match="restore it to the original size"):
        composite(original, result[:, :3], hole)
