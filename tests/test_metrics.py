import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from ganprior_core import metrics
from ganprior_core.metrics import measure, psnr, ssim, ssim_map

pytestmark = pytest.mark.usefixtures("one_thread")


def skimage_ssim(image, reference, data_range=1.0):
    """skimage's SSIM with the paper's settings: (mean, full map [H, W, 3])."""
    return structural_similarity(
        image.permute(1, 2, 0).double().numpy(), reference.permute(1, 2, 0).double().numpy(),
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1,
        data_range=data_range, full=True)


def noisy_pair(shape, seed, noise=0.1):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(shape, generator=generator)
    return image, (image + noise * torch.randn(shape, generator=generator)).clamp(0, 1)


def structured_image(height, width):
    rows = torch.linspace(0, 1, height)[:, None]
    cols = torch.linspace(0, 1, width)[None, :]
    checker = ((torch.arange(height)[:, None] // 4 + torch.arange(width)[None, :] // 4) % 2).float()
    return torch.stack([rows * cols.expand(height, width), 0.3 + 0.4 * checker,
                        0.5 + 0.5 * torch.sin(6 * rows + 9 * cols)])


@pytest.mark.parametrize("shape, seed", [((3, 16, 16), 0), ((3, 40, 23), 1), ((3, 11, 30), 2),
                                         ((3, 64, 64), 3)])
def test_ssim_matches_skimage_on_random_images(shape, seed):
    image, reference = noisy_pair(shape, seed)
    expected, _ = skimage_ssim(image, reference)
    assert ssim(image, reference) == pytest.approx(expected, abs=1e-6)


def test_ssim_matches_skimage_on_structured_images():
    reference = structured_image(48, 36)
    blurred = torch.nn.functional.avg_pool2d(reference[None], 3, stride=1, padding=1,
                                             count_include_pad=False)[0]
    shifted = reference.roll(2, dims=2)
    for image in (blurred, shifted, 1 - reference, (reference * 0.5 + 0.2)):
        expected, _ = skimage_ssim(image, reference)
        assert ssim(image, reference) == pytest.approx(expected, abs=1e-6)


def test_ssim_data_range_matches_skimage():
    image, reference = noisy_pair((3, 20, 24), 4)
    expected, _ = skimage_ssim(image * 255, reference * 255, data_range=255)
    assert ssim(image * 255, reference * 255, data_range=255) == pytest.approx(expected, abs=1e-6)


def test_ssim_of_identical_images_is_one():
    image = structured_image(16, 16)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_ssim_map_equals_skimage_full_map_including_border():
    image, reference = noisy_pair((3, 24, 31), 5)
    _, expected_map = skimage_ssim(image, reference)
    ours = ssim_map(image, reference).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, expected_map, atol=1e-10)


def test_masked_ssim_averages_skimage_map_over_the_mask_inside_the_crop():
    image, reference = noisy_pair((3, 40, 48), 6)
    _, full_map = skimage_ssim(image, reference)
    hole = torch.zeros(40, 48)
    hole[2:20, 10:30] = 1  # reaches into the 5-pixel border: those rows must not count
    inside = np.zeros((40, 48), dtype=bool)
    inside[5:20, 10:30] = True
    expected = full_map.mean(axis=2)[inside].mean()
    assert ssim(image, reference, hole) == pytest.approx(expected, abs=1e-6)


def test_masked_ssim_in_the_border_only_uses_the_uncropped_map():
    image, reference = noisy_pair((3, 32, 32), 7)
    _, full_map = skimage_ssim(image, reference)
    hole = torch.zeros(32, 32)
    hole[0:3, 8:20] = 1
    expected = full_map.mean(axis=2)[hole.numpy() > 0].mean()
    assert ssim(image, reference, hole) == pytest.approx(expected, abs=1e-6)


def test_psnr_of_constant_offset_is_twenty_db():
    reference = torch.full((3, 8, 8), 0.5)
    assert psnr(reference + 0.1, reference) == pytest.approx(20.0, abs=1e-5)
    assert psnr(reference * 255 + 25.5, reference * 255, data_range=255) == pytest.approx(20.0, abs=1e-5)


def test_psnr_of_identical_images_is_infinite():
    image = torch.rand(3, 5, 7)
    assert psnr(image, image) == math.inf


def test_masked_psnr_uses_only_masked_pixels_of_all_channels():
    reference = torch.full((3, 10, 10), 0.5)
    image = reference.clone()
    image[0, 2:6, 3:8] += 0.3  # one channel wrong in the hole: MSE = 0.09 / 3 = 0.03
    image[:, 9, 9] = 0.0  # outside the hole: must not count
    hole = torch.zeros(10, 10)
    hole[2:6, 3:8] = 1
    assert psnr(image, reference, hole) == pytest.approx(10 * math.log10(1 / 0.03), abs=1e-4)
    whole_mse = (0.09 * 20 + 3 * 0.25) / 300
    assert psnr(image, reference) == pytest.approx(10 * math.log10(1 / whole_mse), abs=1e-4)


def test_batches_give_one_value_per_image():
    first, first_ref = noisy_pair((3, 16, 16), 8)
    second, second_ref = noisy_pair((3, 16, 16), 9, noise=0.3)
    batch, batch_ref = torch.stack([first, second]), torch.stack([first_ref, second_ref])
    hole = torch.zeros(16, 16)
    hole[4:12, 4:12] = 1
    assert psnr(batch, batch_ref) == [psnr(first, first_ref), psnr(second, second_ref)]
    assert ssim(batch, batch_ref, hole) == [ssim(first, first_ref, hole), ssim(second, second_ref, hole)]
    per_image_holes = torch.stack([hole, 1 - hole])
    assert psnr(batch, batch_ref, per_image_holes)[1] == psnr(second, second_ref, 1 - hole)


def test_bad_inputs_raise_clear_errors():
    image, reference = noisy_pair((3, 16, 16), 10)
    with pytest.raises(ValueError, match="same shape"):
        psnr(image, reference[:, :8])
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        ssim(image[:2], reference[:2])
    with pytest.raises(ValueError, match="no pixels"):
        psnr(image, reference, torch.zeros(16, 16))
    with pytest.raises(ValueError, match="mask must be"):
        psnr(image, reference, torch.ones(8, 8))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(image[:, :10], reference[:, :10])


def test_report_formats_whole_and_hole_scores():
    reference = structured_image(32, 32)
    result = reference.clone()
    hole = torch.zeros(32, 32)
    hole[8:24, 8:24] = 1
    result[:, 8:24, 8:24] = (result[:, 8:24, 8:24] + 0.1).clamp(max=1)
    report = measure(result, reference, hole)
    assert report.psnr_hole == pytest.approx(psnr(result, reference, hole))
    assert report.ssim_hole == pytest.approx(ssim(result, reference, hole))
    assert report.psnr_hole < report.psnr
    assert str(report) == (f"PSNR {report.psnr:.2f} dB, SSIM {report.ssim:.4f} | "
                           f"hole: PSNR {report.psnr_hole:.2f} dB, SSIM {report.ssim_hole:.4f}")
    assert report.multi_line().splitlines()[1].startswith("hole only:")

    perfect = measure(reference, reference)
    assert perfect.psnr == math.inf and perfect.ssim == pytest.approx(1.0)
    assert perfect.psnr_hole is None and perfect.ssim_hole is None
    assert perfect.one_line() == "PSNR inf dB, SSIM 1.0000"


# --- The implementation before tiling (whole float64 map, computed once per score), kept here as
# the reference the tiled one-pass scores must match.

def reference_ssim(image, reference, region=None):
    similarity = ssim_map(image, reference).mean(dim=0)
    interior = torch.zeros_like(similarity, dtype=torch.bool)
    interior[5:-5, 5:-5] = True
    if region is None:
        return similarity[interior].mean().item()
    chosen = region & interior if (region & interior).any() else region
    return similarity[chosen].mean().item()


def reference_psnr(image, reference, region=None):
    error = (image.double() - reference.double()) ** 2
    mse = (error if region is None else error[:, region]).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.mark.parametrize("tile_rows", [1, 3, 7, 64])
@pytest.mark.parametrize("shape", [(3, 11, 11), (3, 40, 23), (3, 75, 64)])
def test_tiled_one_pass_scores_match_the_whole_map_at_every_tile_size(monkeypatch, tile_rows, shape):
    import ganprior_core.metrics as metrics
    monkeypatch.setattr(metrics, "TILE_ROWS", tile_rows)
    image, reference = noisy_pair(shape, 11)
    hole = torch.zeros(shape[1:])
    hole[2:9, 3:shape[2] - 2] = 1  # crosses the cropped border and several tiles
    region = hole >= 0.5
    report = measure(image, reference, hole)
    assert report.ssim == pytest.approx(reference_ssim(image, reference), abs=1e-9)
    assert report.ssim_hole == pytest.approx(reference_ssim(image, reference, region), abs=1e-9)
    assert report.psnr == pytest.approx(reference_psnr(image, reference), abs=1e-9)
    assert report.psnr_hole == pytest.approx(reference_psnr(image, reference, region), abs=1e-9)
    assert report.notes == ()
    assert ssim(image, reference, hole) == pytest.approx(report.ssim_hole, abs=1e-12)
    np.testing.assert_allclose(ssim_map(image, reference).numpy(),
                               skimage_ssim(image, reference)[1].transpose(2, 0, 1), atol=1e-10)


def test_border_only_mask_scores_the_same_as_before_with_tiles(monkeypatch):
    import ganprior_core.metrics as metrics
    monkeypatch.setattr(metrics, "TILE_ROWS", 4)
    image, reference = noisy_pair((3, 32, 32), 7)
    hole = torch.zeros(32, 32)
    hole[0:3, 8:20] = 1
    assert ssim(image, reference, hole) == pytest.approx(reference_ssim(image, reference, hole > 0),
                                                          abs=1e-9)


def test_images_under_11x11_get_a_smaller_window_and_a_note():
    from ganprior_core.imaging import MIN_IMAGE_SIDE
    from ganprior_core.metrics import ssim_window
    assert ssim_window(11, 300) == ssim_window(4000, 4000)  # the standard window
    window = ssim_window(MIN_IMAGE_SIDE, 30, shrink_window=True)
    assert (window.size, window.sigma) == (7, pytest.approx(0.9))
    assert ssim_window(10, 10, shrink_window=True).size == 9
    assert ssim_window(1, 1, shrink_window=True).size == 1

    image, reference = noisy_pair((3, MIN_IMAGE_SIDE, MIN_IMAGE_SIDE), 12)
    report = measure(image, reference, torch.ones(MIN_IMAGE_SIDE, MIN_IMAGE_SIDE))
    assert -1 <= report.ssim <= 1 and -1 <= report.ssim_hole <= 1
    assert report.notes and "7x7" in report.notes[0] and "7x7" in report.multi_line()
    assert measure(image, image).ssim == pytest.approx(1.0)
    worse = measure((image + 0.3).clamp(0, 1), image).ssim
    assert worse < measure((image + 0.05).clamp(0, 1), image).ssim < 1
    with pytest.raises(ValueError, match=r"at least 11x11, got 30x8 \(width x height\)"):
        ssim(noisy_pair((3, 8, 30), 1)[0], noisy_pair((3, 8, 30), 2)[0])
    assert isinstance(ssim(image, reference, shrink_window=True), float)


def test_sizes_in_messages_read_width_x_height():
    tall = torch.rand(3, 3000, 1)
    with pytest.raises(ValueError, match=r"got 1x3000 \(width x height\)"):
        ssim(tall, tall)
    with pytest.raises(ValueError, match=r"1x3000"):
        psnr(tall, torch.rand(3, 3000, 2))
    with pytest.raises(ValueError, match=r"mask must be 1x3000 \(width x height\)"):
        psnr(tall, tall, torch.ones(1, 3000))
    from ganprior_core.imaging import composite, fit_to_resolution
    with pytest.raises(ValueError, match=r"the image is 1x3000 pixels \(width x height\)"):
        fit_to_resolution(tall, torch.zeros(3000, 1), 64)
    with pytest.raises(ValueError, match=r"hole mask 3000x1 must match the image size 1x3000 "
                                         r"\(width x height\)"):
        composite(tall, tall, torch.zeros(1, 3000))


def test_metrics_accept_another_range_with_its_data_range():
    a, b = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    assert metrics.psnr(a * 255, b * 255, data_range=255) == pytest.approx(metrics.psnr(a, b))
