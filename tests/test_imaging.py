import numpy as np
import pytest
import torch
from PIL import Image

from ganprior_core.imaging import (
    composite,
    fit_to_resolution,
    load_image,
    load_mask,
    resize_mask,
    save_image,
    save_mask,
    side_by_side,
)


def quantized_image(height, width, seed=0):
    """Values that are exact multiples of 1/255, so an 8-bit round trip is lossless."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), generator=generator).float() / 255


def smooth_image(height, width):
    rows = torch.linspace(0, 1, height)[:, None].expand(height, width)
    cols = torch.linspace(0, 1, width)[None, :].expand(height, width)
    return torch.stack([rows, cols, 0.5 + 0.4 * torch.sin(3 * rows + 2 * cols)])


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
