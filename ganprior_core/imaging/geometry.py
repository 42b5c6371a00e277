"""Bringing an image and its mask to the prior's square resolution and back, and compositing the
result with the known pixels."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .checks import MIN_IMAGE_SIDE, check_holds_values, check_image, check_mask, check_same_device, hole_pixels

FIT_MODES = ("resize", "pad")


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
    check_mask(hole_mask)
    binary = hole_pixels(hole_mask).float()
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
    - ``pad``: resize keeping the aspect ratio so the long side is ``resolution``, then extend
      the short side symmetrically to a square by repeating edge pixels. The added border is
      marked as hole in ``mask_r``, so the generator is free to invent it instead of being fitted
      to repeated-pixel streaks; restore crops it away. Resizing before padding keeps a thin
      image's own hole/known structure (padding first would put border holes into every pooled
      pixel of a 10000x10 image) and never builds a huge padded square.

    A mask whose size differs from the image is first resized to the image (see resize_mask).
    Images under MIN_IMAGE_SIDE pixels on a side are refused, and so is a mask whose known
    pixels are all too thin to survive at ``resolution`` (the fit would have nothing to match).
    """
    check_image(image, "image")
    check_mask(hole_mask)
    if mode not in FIT_MODES:
        raise ValueError(f"unknown fit mode {mode!r}; accepted modes: {', '.join(FIT_MODES)}")
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    height, width = image.shape[1:]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(f"the image is {width}x{height} pixels (width x height), too small to "
                         f"inpaint: at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} are needed")
    hole_mask = resize_mask(hole_mask, (height, width))
    square = (resolution, resolution)

    if mode == "resize":
        def restore(result: torch.Tensor) -> torch.Tensor:
            _check_result(result, resolution)
            return resize_image(result, (height, width))

        fitted = resize_image(image, square), resize_mask(hole_mask, square), restore
    else:
        scale = resolution / max(height, width)
        inner = (max(1, round(height * scale)), max(1, round(width * scale)))
        top, left = (resolution - inner[0]) // 2, (resolution - inner[1]) // 2
        padding = (left, resolution - inner[1] - left, top, resolution - inner[0] - top)
        padded_image = F.pad(resize_image(image, inner)[None], padding, mode="replicate")[0]
        padded_mask = F.pad(resize_mask(hole_mask, inner), padding, value=1.0)

        def restore(result: torch.Tensor) -> torch.Tensor:
            _check_result(result, resolution)
            return resize_image(result[:, top:top + inner[0], left:left + inner[1]], (height, width))

        fitted = padded_image, padded_mask, restore
    if bool((hole_mask == 0).any()) and bool(fitted[1].all()):
        raise ValueError(f"at the prior's {resolution}x{resolution} resolution no known pixel of "
                         f"this {width}x{height} image survives (a hole grows by up to one pixel "
                         "there, and every known area is thinner than that): use a smaller hole, "
                         "or crop the image around it")
    return fitted


def composite(original: torch.Tensor, result: torch.Tensor, hole_mask: torch.Tensor) -> torch.Tensor:
    """original * (1 - m) + result * m, with m the hole mask (soft values blend).

    Where m == 0 the output is the original bit for bit, whatever the result holds there. The
    three tensors must hold values (checks.check_holds_values), on one device. Besides the
    inputs it holds the returned image and one image-sized temporary.
    """
    check_image(original, "original")
    check_mask(hole_mask)
    if not isinstance(result, torch.Tensor):
        raise ValueError(f"result must be a torch tensor [3, H, W], got {type(result).__name__}")
    check_holds_values(result, "result")
    check_same_device({"original": original, "result": result, "hole mask": hole_mask})
    if result.shape != original.shape:
        raise ValueError(f"result {tuple(result.shape)} must have the original's shape "
                         f"{tuple(original.shape)}; restore it to the original size first")
    if tuple(hole_mask.shape) != tuple(original.shape[1:]):
        raise ValueError(f"hole mask {hole_mask.shape[-1]}x{hole_mask.shape[-2]} must match the "
                         f"image size {original.shape[-1]}x{original.shape[-2]} (width x height)")
    m = hole_mask.to(original.dtype)
    # original * (1 - m) + result * m, summed in place (the same additions, one image-sized
    # temporary fewer: at 12000x12000 each is 1.7 GB).
    blended = original * (1 - m)
    blended += result * m
    # Arithmetic alone would keep known pixels only while result is finite (0 * inf is nan).
    return torch.where(m > 0, blended, original, out=blended)


def _check_result(result: torch.Tensor, resolution: int) -> None:
    if tuple(result.shape) != (3, resolution, resolution):
        raise ValueError(f"restore expects a result [3, {resolution}, {resolution}], "
                         f"got {tuple(result.shape)}")
