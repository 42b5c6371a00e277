"""Image and mask I/O, resizing to the generator's resolution, compositing and figure strips.

Images are float32 tensors [3, H, W] in [0, 1]; hole masks are float32 [H, W] with 1 = hole.
Masks coming from outside may be soft (e.g. feathered ComfyUI masks): wherever a binary mask is
needed, pixels >= 0.5 count as hole.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

FIT_MODES = ("resize", "pad")
HOLE_THRESHOLD = 0.5


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file as RGB [3, H, W] in [0, 1]; an alpha channel is dropped, not composited."""
    with Image.open(path) as picture:
        rgb = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def load_mask(path: str | Path) -> torch.Tensor:
    """Read a hole mask [H, W] from an image file: white = hole, black = known.

    The file is converted to grayscale (any alpha channel is ignored) and pixels >= 0.5 of full
    scale become holes, so anti-aliased mask edges are split at half intensity.
    """
    with Image.open(path) as picture:
        gray = np.asarray(picture.convert("L"), dtype=np.float32) / 255
    return torch.from_numpy(gray >= HOLE_THRESHOLD).float()


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """Write [3, H, W] in [0, 1] as an 8-bit image (format from the suffix; values are clamped)."""
    _check_image(image, "image")
    pixels = _to_uint8(image.permute(1, 2, 0))
    _save(Image.fromarray(pixels), path)


def save_mask(hole_mask: torch.Tensor, path: str | Path) -> None:
    """Write a hole mask [H, W] as an 8-bit grayscale image, white = hole, the format load_mask reads."""
    _check_mask(hole_mask)
    _save(Image.fromarray(_to_uint8(hole_mask)), path)


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


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [3, H, W] to (height, width), antialiased so downscaling does not alias.

    The antialiased bilinear filter has non-negative weights, so values stay within [0, 1].
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True,
                         align_corners=False)[0]


def resize_mask(hole_mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a hole mask [H, W] to (height, width), keeping it binary and never losing a hole.

    An output pixel is a hole if its footprint in the input touches any hole pixel (adaptive max
    pooling, for both down- and upscaling). Holes therefore grow by up to one output pixel rather
    than shrink: a thin hole survives downscaling and known pixels are never invented.
    """
    binary = (hole_mask >= HOLE_THRESHOLD).float()
    if tuple(binary.shape) == tuple(size):
        return binary
    return F.adaptive_max_pool2d(binary[None, None], size)[0, 0]


def fit_to_resolution(image: torch.Tensor, hole_mask: torch.Tensor, resolution: int,
                      mode: str = "resize"
                      ) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Bring an image and its hole mask to the generator's square ``resolution``.

    Returns ``(image_r, mask_r, restore)``; ``restore(result_r)`` maps a [3, resolution,
    resolution] result back to the original [3, H, W]. Restoring resamples the whole result, so
    composite it with the original afterwards to keep the known pixels exact.

    Modes:
    - ``resize``: stretch to square (the aspect ratio is not kept).
    - ``pad``: extend the short side symmetrically to a square by repeating edge pixels, then
      resize. The added border is marked as hole in ``mask_r``, so the generator is free to
      invent it instead of being fitted to repeated-pixel streaks; restore crops it away.

    A mask whose size differs from the image is first resized to the image (see resize_mask).
    """
    _check_image(image, "image")
    _check_mask(hole_mask)
    if mode not in FIT_MODES:
        raise ValueError(f"unknown fit mode {mode!r}; accepted modes: {', '.join(FIT_MODES)}")
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    height, width = image.shape[1:]
    hole_mask = resize_mask(hole_mask, (height, width))
    square = (resolution, resolution)

    if mode == "resize":
        def restore(result: torch.Tensor) -> torch.Tensor:
            _check_result(result, resolution)
            return resize_image(result, (height, width))

        return resize_image(image, square), resize_mask(hole_mask, square), restore

    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    padding = (left, side - width - left, top, side - height - top)
    padded_image = F.pad(image[None], padding, mode="replicate")[0]
    padded_mask = F.pad(hole_mask, padding, value=1.0)

    def restore(result: torch.Tensor) -> torch.Tensor:
        _check_result(result, resolution)
        return resize_image(result, (side, side))[:, top:top + height, left:left + width]

    return resize_image(padded_image, square), resize_mask(padded_mask, square), restore


def composite(original: torch.Tensor, result: torch.Tensor, hole_mask: torch.Tensor) -> torch.Tensor:
    """original * (1 - m) + result * m, with m the hole mask (soft values blend).

    Where m == 0 the output is the original bit for bit, whatever the result holds there.
    """
    _check_image(original, "original")
    _check_mask(hole_mask)
    if result.shape != original.shape:
        raise ValueError(f"result {tuple(result.shape)} must have the original's shape "
                         f"{tuple(original.shape)}; restore it to the original size first")
    if tuple(hole_mask.shape) != tuple(original.shape[1:]):
        raise ValueError(f"hole mask {tuple(hole_mask.shape)} must match the image size "
                         f"{tuple(original.shape[1:])}")
    m = hole_mask.to(original.dtype)
    blended = original * (1 - m) + result * m
    # Arithmetic alone would keep known pixels only while result is finite (0 * inf is nan).
    return torch.where(m > 0, blended, original)


def _check_image(image: torch.Tensor, name: str) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{name} must be an RGB tensor [3, H, W], got {shape}")


def _check_mask(hole_mask: torch.Tensor) -> None:
    if not isinstance(hole_mask, torch.Tensor) or hole_mask.dim() != 2:
        shape = tuple(hole_mask.shape) if isinstance(hole_mask, torch.Tensor) else type(hole_mask).__name__
        raise ValueError(f"hole mask must be a tensor [H, W] (1 = hole), got {shape}")


def _check_result(result: torch.Tensor, resolution: int) -> None:
    if tuple(result.shape) != (3, resolution, resolution):
        raise ValueError(f"restore expects a result [3, {resolution}, {resolution}], "
                         f"got {tuple(result.shape)}")


def _to_uint8(values: torch.Tensor) -> np.ndarray:
    return (values.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def _save(picture: Image.Image, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def _as_rgb(entry: torch.Tensor) -> torch.Tensor:
    if entry.dim() == 2:
        return entry.detach().float().clamp(0, 1).expand(3, *entry.shape)
    _check_image(entry, "side_by_side entry")
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
