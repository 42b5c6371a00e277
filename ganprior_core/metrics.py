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
Images under 11x11 (width x height) need ``shrink_window=True`` (what ``measure``, and so the
ComfyUI node, uses): the window becomes the largest odd size that fits the smaller side, with
sigma scaled by the same factor, so every image the inpainting accepts (imaging.MIN_IMAGE_SIDE)
can be scored; ``ssim_window`` says which window an image gets and the report notes it.

Memory stays bounded at any size: the SSIM map and the squared error are computed TILE_ROWS
rows at a time (float64, as before, so values do not change) and only their sums are kept; the
whole-image and the in-mask scores come from one pass. Two 8192x8192 images are scored in
about the memory of the images themselves plus a few hundred MB.
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
TILE_ROWS = 64  # rows of the SSIM map / squared error held at once (memory bound, not values)


@dataclass(frozen=True)
class SSIMWindow:
    """The Gaussian window SSIM uses: radius (size 2r + 1) and sigma."""

    radius: int
    sigma: float

    @property
    def size(self) -> int:
        return 2 * self.radius + 1

    @property
    def shrunk(self) -> bool:
        return self.radius < SSIM_RADIUS

    def describe(self) -> str:
        return (f"SSIM window {self.size}x{self.size}, sigma {self.sigma:.2f} (the standard 11x11, "
                f"sigma 1.5, does not fit the image)")


def ssim_window(height: int, width: int, shrink_window: bool = False) -> SSIMWindow:
    """The window for an image of this size: the standard one (11x11, sigma 1.5) where it fits;
    else, with shrink_window, the largest odd window that fits the smaller side, sigma scaled by
    the same factor (a 7x7 window with sigma 0.9 for an 8x8 image); else a ValueError."""
    standard = 2 * SSIM_RADIUS + 1
    if min(height, width) >= standard:
        return SSIMWindow(SSIM_RADIUS, SSIM_SIGMA)
    if not shrink_window:
        raise ValueError(f"SSIM needs images of at least {standard}x{standard}, got {width}x{height} "
                         f"(width x height); shrink_window=True scores smaller images with a "
                         f"smaller window")
    if min(height, width) < 1:
        raise ValueError(f"SSIM of an empty image ({width}x{height}, width x height)")
    radius = (min(height, width) - 1) // 2
    return SSIMWindow(radius, SSIM_SIGMA * radius / SSIM_RADIUS)


def psnr(image: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None,
         data_range: float = 1.0) -> float | list[float]:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE).

    With a mask the MSE is taken over the masked pixels (all channels). Identical images (MSE 0)
    give ``math.inf``.
    """
    return _per_image(_psnr_single, image, reference, mask, data_range)


def ssim(image: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None,
         data_range: float = 1.0, shrink_window: bool = False) -> float | list[float]:
    """Structural similarity (Wang et al. 2004), channel mean, matching scikit-image.

    With a mask, the SSIM map is averaged over the masked pixels that lie in the cropped
    interior. If the mask lies entirely in the 5-pixel border, the average is taken over the
    masked pixels of the whole map instead (border values computed with the same symmetric
    padding scikit-image uses for its ``full=True`` map), so small holes at edges still score.
    Images must be at least 11x11, or any size with ``shrink_window`` (see ``ssim_window``).
    """
    def single(image, reference, region, data_range):
        return _ssim_single(image, reference, region, data_range, shrink_window)
    return _per_image(single, image, reference, mask, data_range)


def ssim_map(image: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0,
             shrink_window: bool = False) -> torch.Tensor:
    """Per-pixel SSIM of one image pair, [3, H, W] float64; equals skimage's ``full=True`` map.

    The whole map is 24 bytes per pixel: for large images score with ``ssim``/``measure``, which
    never hold it."""
    _check_pair(image, reference, data_range)
    window = ssim_window(*image.shape[-2:], shrink_window)
    return torch.cat([tile for _, tile in _ssim_tiles(image, reference, window, data_range)], dim=1)


@dataclass(frozen=True)
class MetricReport:
    """PSNR (dB) and SSIM of a result against the ground truth, whole image and in the hole."""

    psnr: float
    ssim: float
    psnr_hole: float | None = None
    ssim_hole: float | None = None
    notes: tuple[str, ...] = ()  # e.g. a smaller SSIM window for an image under 11x11

    def one_line(self) -> str:
        text = f"PSNR {_format_db(self.psnr)}, SSIM {self.ssim:.4f}"
        if self.psnr_hole is not None:
            text += f" | hole: PSNR {_format_db(self.psnr_hole)}, SSIM {self.ssim_hole:.4f}"
        return "; ".join([text, *self.notes])

    def multi_line(self) -> str:
        lines = [f"whole image: PSNR {_format_db(self.psnr)}, SSIM {self.ssim:.4f}"]
        if self.psnr_hole is not None:
            lines.append(f"hole only:   PSNR {_format_db(self.psnr_hole)}, SSIM {self.ssim_hole:.4f}")
        return "\n".join(lines + [f"note: {note}" for note in self.notes])

    def __str__(self) -> str:
        return self.one_line()


def measure(result: torch.Tensor, ground_truth: torch.Tensor, hole_mask: torch.Tensor | None = None,
            data_range: float = 1.0) -> MetricReport:
    """Score one [3, H, W] result; the in-hole scores are filled only when a hole mask is given.

    One pass over the image for all four scores. Images under 11x11 get a smaller SSIM window
    (``ssim_window``), which the report's notes say."""
    if result.dim() != 3:
        raise ValueError(f"measure takes one image [3, H, W], got shape {tuple(result.shape)}")
    _check_inputs(result, ground_truth, hole_mask, data_range)
    region = _region(hole_mask, result.shape[-2:])
    window = ssim_window(*result.shape[-2:], shrink_window=True)
    whole_psnr, hole_psnr = _psnr_scores(result, ground_truth, region, data_range)
    whole_ssim, hole_ssim = _ssim_scores(result, ground_truth, region, window, data_range)
    notes = (window.describe(),) if window.shrunk else ()
    if hole_mask is None:
        return MetricReport(whole_psnr, whole_ssim, notes=notes)
    return MetricReport(whole_psnr, whole_ssim, hole_psnr, hole_ssim, notes=notes)


def _format_db(value: float) -> str:
    return "inf dB" if math.isinf(value) else f"{value:.2f} dB"


def _psnr_single(image: torch.Tensor, reference: torch.Tensor, region: torch.Tensor | None,
                 data_range: float) -> float:
    whole, inside = _psnr_scores(image, reference, region, data_range)
    return whole if region is None else inside


def _ssim_single(image: torch.Tensor, reference: torch.Tensor, region: torch.Tensor | None,
                 data_range: float, shrink_window: bool = False) -> float:
    window = ssim_window(*image.shape[-2:], shrink_window)
    whole, inside = _ssim_scores(image, reference, region, window, data_range)
    return whole if region is None else inside


def _row_tiles(height: int):
    for start in range(0, height, TILE_ROWS):
        yield start, min(start + TILE_ROWS, height)


def _to_db(mse: float, data_range: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(data_range ** 2 / mse)


def _psnr_scores(image: torch.Tensor, reference: torch.Tensor, region: torch.Tensor | None,
                 data_range: float) -> tuple[float, float | None]:
    """(whole-image PSNR, PSNR over `region` or None), from float64 squared errors a tile of
    rows at a time."""
    whole_sum, inside_sum, inside_count = 0.0, 0.0, 0
    for start, stop in _row_tiles(image.shape[-2]):
        error = (image[:, start:stop].detach().to(torch.float64)
                 - reference[:, start:stop].detach().to(torch.float64)) ** 2
        whole_sum += error.sum().item()
        if region is not None:
            chosen = region[start:stop]
            inside_sum += error[:, chosen].sum().item()
            inside_count += int(chosen.sum()) * error.shape[0]
    whole = _to_db(whole_sum / image.numel(), data_range)
    return whole, None if region is None else _to_db(inside_sum / inside_count, data_range)


def _ssim_scores(image: torch.Tensor, reference: torch.Tensor, region: torch.Tensor | None,
                 window: SSIMWindow, data_range: float) -> tuple[float, float | None]:
    """(whole-image SSIM, SSIM over `region` or None) in one pass over the map's row tiles.

    Whole image: the map's mean over the interior (the border of `window.radius` pixels
    cropped). Region: its mean over region & interior, or over the region in the whole map
    when none of the region lies in the interior."""
    height, width = image.shape[-2:]
    r = window.radius
    sums = {"interior": 0.0, "region_interior": 0.0, "region": 0.0}
    counts = dict.fromkeys(sums, 0)
    columns = slice(r, width - r)
    for start, tile in _ssim_tiles(image, reference, window, data_range):
        similarity = tile.mean(dim=0)  # [rows, W]
        rows = torch.arange(start, start + similarity.shape[0])
        interior_rows = (rows >= r) & (rows < height - r)
        interior = similarity[interior_rows][:, columns]
        sums["interior"] += interior.sum().item()
        counts["interior"] += interior.numel()
        if region is not None:
            chosen = region[start:start + similarity.shape[0]]
            sums["region"] += similarity[chosen].sum().item()
            counts["region"] += int(chosen.sum())
            chosen_interior = chosen[interior_rows][:, columns]
            sums["region_interior"] += interior[chosen_interior].sum().item()
            counts["region_interior"] += int(chosen_interior.sum())
    whole = sums["interior"] / counts["interior"]
    if region is None:
        return whole, None
    key = "region_interior" if counts["region_interior"] else "region"
    return whole, sums[key] / counts[key]


def _ssim_tiles(image: torch.Tensor, reference: torch.Tensor, window: SSIMWindow,
                data_range: float):
    """(first row, SSIM map rows [3, rows, W] float64) for each tile of TILE_ROWS rows: each tile
    reads its rows plus `radius` rows either side (mirrored at the image's edges, scipy's
    'reflect'), so tiles give exactly the whole map's values."""
    height = image.shape[-2]
    r = window.radius
    kernel = _gaussian_kernel(window)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    for start, stop in _row_tiles(height):
        rows = torch.arange(start - r, stop + r)
        rows = torch.where(rows < 0, -rows - 1, rows)  # symmetric: b a | a b c
        rows = torch.where(rows >= height, 2 * height - rows - 1, rows)
        x = _pad_columns(image.detach()[:, rows].to(torch.float64), r)
        y = _pad_columns(reference.detach()[:, rows].to(torch.float64), r)

        def local_mean(values):
            return _gaussian_blur_valid(values, kernel)

        mean_x, mean_y = local_mean(x), local_mean(y)
        var_x = local_mean(x * x) - mean_x * mean_x
        var_y = local_mean(y * y) - mean_y * mean_y
        cov_xy = local_mean(x * y) - mean_x * mean_y
        yield start, ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
                      / ((mean_x ** 2 + mean_y ** 2 + c1) * (var_x + var_y + c2)))


def _check_inputs(image: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None,
                  data_range: float) -> None:
    _check_values(image, reference, mask, data_range)
    if image.shape != reference.shape:
        raise ValueError(f"image {_size(image)} and reference {_size(reference)} (width x height; "
                         f"shapes {tuple(image.shape)}, {tuple(reference.shape)}) must have the "
                         "same shape")
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError("expected an image [3, H, W] or a batch [B, 3, H, W], "
                         f"got shape {tuple(image.shape)}")


def _per_image(metric, image: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None,
               data_range: float) -> float | list[float]:
    _check_inputs(image, reference, mask, data_range)
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
        got = f"{mask.shape[-1]}x{mask.shape[-2]}" if mask.dim() == 2 else f"shape {tuple(mask.shape)}"
        raise ValueError(f"mask must be {size[-1]}x{size[-2]} (width x height) like the image, "
                         f"got {got}")
    region = imaging.hole_pixels(mask.detach())
    if not region.any():
        raise ValueError(f"mask selects no pixels (no value >= {imaging.HOLE_THRESHOLD}): nothing to measure")
    return region


def _check_image(image: torch.Tensor, name: str) -> None:
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"{name} must be [3, H, W], got shape {tuple(image.shape)}")


def _check_pair(image: torch.Tensor, reference: torch.Tensor, data_range: float) -> None:
    _check_image(image, "image")
    _check_image(reference, "reference")
    _check_values(image, reference, None, data_range)
    if image.shape != reference.shape:
        raise ValueError(f"image {_size(image)} and reference {_size(reference)} (width x height) "
                         "must be the same size")


def _size(image: torch.Tensor) -> str:
    return f"{image.shape[-1]}x{image.shape[-2]}" if image.dim() >= 2 else str(tuple(image.shape))


def _gaussian_kernel(window: SSIMWindow) -> torch.Tensor:
    if window.radius == 0:
        return torch.ones(1, dtype=torch.float64)
    offsets = torch.arange(-window.radius, window.radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / window.sigma) ** 2)
    return kernel / kernel.sum()


def _gaussian_blur_valid(values: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable blur of an already padded [C, h + 2r, w + 2r] to [C, h, w]."""
    channels = values.shape[0]
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    return F.conv2d(F.conv2d(values[None], horizontal, groups=channels), vertical,
                    groups=channels)[0]


def _pad_columns(values: torch.Tensor, pad: int) -> torch.Tensor:
    # torch's "reflect" mirrors about the edge pixel (c b | a b c); scipy's repeats it (b a | a b c).
    if pad == 0:
        return values
    return torch.cat([values[..., :pad].flip(-1), values, values[..., -pad:].flip(-1)], dim=-1)
