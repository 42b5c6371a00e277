"""Image quality metrics: PSNR and SSIM (paper eqs. 9-11), over the whole image or a region.

Images are float tensors [3, H, W] in [0, 1] (or [B, 3, H, W]); a region mask is [H, W] (or
[B, H, W]) where pixels >= 0.5 are inside the region, e.g. a hole mask to score only the fill.
Images in another range need ``data_range`` (e.g. 255 for float [0, 255]); integer, NaN and
out-of-range images are refused (imaging.check_image_values), not scored.

A single image gives a float; a batch gives a list with one float per image. Batches are not
averaged here because the mean of per-image PSNRs (what papers report) differs from the PSNR
of the pooled MSE: the caller chooses.

SSIM reproduces scikit-image's ``structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, channel_axis=-1, data_range=1)``: an 11x11 Gaussian window with
sigma 1.5, K1 = 0.01, K2 = 0.03, population covariance, computed per channel, the SSIM map
averaged after cropping the 5-pixel border where the window reaches outside the image.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import imaging

SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)  # scipy's truncate=3.5 rule, as skimage uses: 5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def psnr(image: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None,
         data_range: float = 1.0) -> float | list[float]:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE).

    With a mask the MSE is taken over the masked pixels (all channels). Identical images (MSE 0)
    give ``math.inf``.
    """
    return _per_image(_psnr_single, image, reference, mask, data_range)


def ssim(image: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None,
         data_range: float = 1.0) -> float | list[float]:
    """Structural similarity (Wang et al. 2004), channel mean, matching scikit-image.

    With a mask, the SSIM map is averaged over the masked pixels that lie in the cropped
    interior. If the mask lies entirely in the 5-pixel border, the average is taken over the
    masked pixels of the whole map instead (border values computed with the same symmetric
    padding scikit-image uses for its ``full=True`` map), so small holes at edges still score.
    Images must be at least 11x11.
    """
    return _per_image(_ssim_single, image, reference, mask, data_range)


def ssim_map(image: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM of one image pair, [3, H, W] float64; equals skimage's ``full=True`` map."""
    _check_image(image, "image")
    _check_image(reference, "reference")
    _check_values(image, reference, None, data_range)
    if image.shape != reference.shape:
        raise ValueError(f"image {tuple(image.shape)} and reference {tuple(reference.shape)} "
                         "must have the same shape")
    height, width = image.shape[-2:]
    window = 2 * SSIM_RADIUS + 1
    if min(height, width) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window}, got {height}x{width}")

    x = image.detach().to(torch.float64)
    y = reference.detach().to(torch.float64)

    local_mean = _gaussian_blur_symmetric
    mean_x, mean_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mean_x * mean_x
    var_y = local_mean(y * y) - mean_y * mean_y
    cov_xy = local_mean(x * y) - mean_x * mean_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    return ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
            / ((mean_x ** 2 + mean_y ** 2 + c1) * (var_x + var_y + c2)))


@dataclass(frozen=True)
class MetricReport:
    """PSNR (dB) and SSIM of a result against the ground truth, whole image and in the hole."""

    psnr: float
    ssim: float
    psnr_hole: float | None = None
    ssim_hole: float | None = None

    def one_line(self) -> str:
        text = f"PSNR {_format_db(self.psnr)}, SSIM {self.ssim:.4f}"
        if self.psnr_hole is not None:
            text += f" | hole: PSNR {_format_db(self.psnr_hole)}, SSIM {self.ssim_hole:.4f}"
        return text

    def multi_line(self) -> str:
        lines = [f"whole image: PSNR {_format_db(self.psnr)}, SSIM {self.ssim:.4f}"]
        if self.psnr_hole is not None:
            lines.append(f"hole only:   PSNR {_format_db(self.psnr_hole)}, SSIM {self.ssim_hole:.4f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.one_line()


def measure(result: torch.Tensor, ground_truth: torch.Tensor, hole_mask: torch.Tensor | None = None,
            data_range: float = 1.0) -> MetricReport:
    """Score one [3, H, W] result; the in-hole scores are filled only when a hole mask is given."""
    if result.dim() != 3:
        raise ValueError(f"measure takes one image [3, H, W], got shape {tuple(result.shape)}")
    whole_psnr = psnr(result, ground_truth, data_range=data_range)
    whole_ssim = ssim(result, ground_truth, data_range=data_range)
    if hole_mask is None:
        return MetricReport(whole_psnr, whole_ssim)
    return MetricReport(whole_psnr, whole_ssim,
                        psnr(result, ground_truth, hole_mask, data_range),
                        ssim(result, ground_truth, hole_mask, data_range))


def _format_db(value: float) -> str:
    return "inf dB" if math.isinf(value) else f"{value:.2f} dB"


def _psnr_single(image: torch.Tensor, reference: torch.Tensor, region: torch.Tensor | None,
                 data_range: float) -> float:
    squared_error = (image.detach().to(torch.float64) - reference.detach().to(torch.float64)) ** 2
    if region is not None:
        squared_error = squared_error[:, region]
    mse = squared_error.mean().item()
    if mse == 0:
        return math.inf
    return 10 * math.log10(data_range ** 2 / mse)


def _ssim_single(image: torch.Tensor, reference: torch.Tensor, region: torch.Tensor | None,
                 data_range: float) -> float:
    similarity = ssim_map(image, reference, data_range).mean(dim=0)
    interior = torch.zeros_like(similarity, dtype=torch.bool)
    interior[SSIM_RADIUS:-SSIM_RADIUS, SSIM_RADIUS:-SSIM_RADIUS] = True
    if region is None:
        return similarity[interior].mean().item()
    region_interior = region & interior
    chosen = region_interior if region_interior.any() else region
    return similarity[chosen].mean().item()


def _per_image(metric, image: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None,
               data_range: float) -> float | list[float]:
    _check_values(image, reference, mask, data_range)
    if image.shape != reference.shape:
        raise ValueError(f"image {tuple(image.shape)} and reference {tuple(reference.shape)} "
                         "must have the same shape")
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError("expected an image [3, H, W] or a batch [B, 3, H, W], "
                         f"got shape {tuple(image.shape)}")
    if image.dim() == 3:
        return metric(image, reference, _region(mask, image.shape[-2:]), data_range)
    batch = image.shape[0]
    if mask is not None and mask.dim() == 2:
        mask = mask.expand(batch, *mask.shape)
    if mask is not None and (mask.dim() != 3 or mask.shape[0] != batch):
        raise ValueError(f"a batch of {batch} images takes a mask [H, W] or [{batch}, H, W], "
                         f"got shape {tuple(mask.shape)}")
    return [metric(image[i], reference[i],
                   None if mask is None else _region(mask[i], image.shape[-2:]), data_range)
            for i in range(batch)]


def _check_values(image: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None,
                  data_range: float) -> None:
    """Scores of integer, NaN or out-of-range images would be numbers, just wrong ones (uint8
    differences wrap around, a NaN pixel makes PSNR NaN): refuse them, naming what is accepted."""
    if (isinstance(data_range, bool) or not isinstance(data_range, numbers.Real)
            or not math.isfinite(data_range) or data_range <= 0):
        raise ValueError(f"data_range must be a finite number > 0, got {data_range!r}")
    imaging.check_image_values(image, "image", data_range)
    imaging.check_image_values(reference, "reference", data_range)
    if mask is not None:
        imaging.check_mask_values(mask, "mask")


def _region(mask: torch.Tensor | None, size: torch.Size) -> torch.Tensor | None:
    if mask is None:
        return None
    if tuple(mask.shape) != tuple(size):
        raise ValueError(f"mask must be [H, W] = {tuple(size)} like the image, got {tuple(mask.shape)}")
    region = imaging.hole_pixels(mask.detach())
    if not region.any():
        raise ValueError(f"mask selects no pixels (no value >= {imaging.HOLE_THRESHOLD}): nothing to measure")
    return region


def _check_image(image: torch.Tensor, name: str) -> None:
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"{name} must be [3, H, W], got shape {tuple(image.shape)}")


def _gaussian_blur_symmetric(values: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of [C, H, W] with scipy's 'reflect' (edge-repeating) padding."""
    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    kernel = kernel / kernel.sum()
    channels = values.shape[0]
    padded = _pad_symmetric(values[None], SSIM_RADIUS)
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    blurred = F.conv2d(F.conv2d(padded, horizontal, groups=channels), vertical, groups=channels)
    return blurred[0]


def _pad_symmetric(batch: torch.Tensor, pad: int) -> torch.Tensor:
    # torch's "reflect" mirrors about the edge pixel (c b | a b c); scipy's repeats it (b a | a b c).
    batch = torch.cat([batch[..., :pad].flip(-1), batch, batch[..., -pad:].flip(-1)], dim=-1)
    return torch.cat([batch[..., :pad, :].flip(-2), batch, batch[..., -pad:, :].flip(-2)], dim=-2)
