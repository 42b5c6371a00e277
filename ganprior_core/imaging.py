"""Image and mask I/O, resizing to the generator's resolution, compositing and figure strips.

Images are float32 tensors [3, H, W] in [0, 1]; hole masks are float32 [H, W] with 1 = hole.
Masks coming from outside may be soft (e.g. feathered ComfyUI masks): wherever a binary mask is
needed, pixels >= 0.5 count as hole.

Tensors from callers are checked, not trusted: an image must be floating point, finite and in
[0, 1] (a uint8, [0, 255] or [-1, 1] image is refused with a message saying so, instead of being
optimised into nonsense); a mask must be finite and in [0, 1] (bool masks are fine). Overshoot of
up to RANGE_TOLERANCE, which bicubic resampling leaves at sharp edges, is accepted.
"""
from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from .files import UserFileError, check_output_file, require_regular_file, write_atomically

FIT_MODES = ("resize", "pad")
HOLE_THRESHOLD = 0.5
# A bound on what one file may decode to: 8192x8192 is 805 MB as a float32 RGB tensor. Files
# claiming more are refused from their header, before any pixel is decoded (a decompression bomb
# is a few kilobytes that claim gigapixels).
MAX_IMAGE_PIXELS = 8192 * 8192
# Below this many pixels on a side there is no structure for the prior to match: a 1x1 "image"
# would still run a whole optimisation, so it is refused instead.
MIN_IMAGE_SIDE = 8
# Values up to this far outside [0, 1] are resampling overshoot (bicubic rings by ~0.1 at hard
# edges) and are clamped; anything further is an image in another range ([0, 255], [-1, 1]).
RANGE_TOLERANCE = 0.25
# Formats save_image writes as 8-bit RGB (PIL's other writers need other modes or extra tools),
# less any this Pillow was built without (WebP is optional).
IMAGE_SUFFIXES = tuple(suffix for suffix in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
                       if Image.registered_extensions().get(suffix) in Image.SAVE)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file as RGB [3, H, W] in [0, 1]; an alpha channel is dropped, not composited.

    Pixels are scaled by the file's bit depth (8-bit by 255, 16-bit by 65535); gray and palette
    images become RGB; floating-point TIFFs must already hold values in [0, 1]. The EXIF
    orientation is applied, so the pixels match what image viewers show (and what a mask was
    painted on). Anything unreadable raises a UserFileError (a ValueError) naming the file.
    """
    values, _ = _read_pixels(path, "image")
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return torch.from_numpy(values).permute(2, 0, 1).contiguous()


def load_mask(path: str | Path) -> torch.Tensor:
    """Read a hole mask [H, W] from an image file: white = hole, black = known.

    Pixels >= 0.5 of full scale (at the file's bit depth) become holes, so anti-aliased edges are
    split at half intensity. A file with transparency is read as ComfyUI reads a mask from
    LoadImage: transparent = hole (alpha at most half), whatever the colour; a fully opaque
    alpha channel is ignored.
    """
    values, alpha = _read_pixels(path, "mask")
    if alpha is not None and alpha.min() < 1:
        hole = 1 - alpha
    elif values.shape[2] == 3:  # ITU-R 601 luma, as PIL's convert("L")
        hole = values @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    else:
        hole = values[..., 0]
    return torch.from_numpy(hole >= HOLE_THRESHOLD).float()


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """Write [3, H, W] in [0, 1] as an 8-bit image (format from the suffix, IMAGE_SUFFIXES).

    Written atomically: an existing file is replaced only by a complete new one.
    """
    _check_image(image, "image")
    pixels = _to_uint8(image.permute(1, 2, 0))
    _save(Image.fromarray(pixels), path)


def save_mask(hole_mask: torch.Tensor, path: str | Path) -> None:
    """Write a hole mask [H, W] as an 8-bit grayscale image, white = hole, the format load_mask reads."""
    _check_mask(hole_mask)
    _save(Image.fromarray(_to_uint8(hole_mask)), path)


def check_output_image_path(path: str | Path, what: str = "output image") -> Path:
    """Refuse, before any work, an image path save_image could not write (see files.check_output_file)."""
    return check_output_file(path, IMAGE_SUFFIXES, what)


def check_image_values(values: torch.Tensor, name: str, data_range: float = 1.0) -> None:
    """Refuse pixel values that are not floating point, not finite or not in [0, data_range].

    Any shape; overshoot within RANGE_TOLERANCE * data_range is accepted (see the module doc).
    """
    if not isinstance(values, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(values).__name__}")
    if not values.dtype.is_floating_point:
        hint = " (divide a uint8 image by 255: image.float() / 255)" if values.dtype == torch.uint8 else ""
        raise ValueError(f"{name} must be a floating-point tensor with values in [0, {data_range:g}], "
                         f"got dtype {values.dtype}{hint}")
    _check_finite_in_range(values, name, data_range, "pixel")


def _check_finite_in_range(values: torch.Tensor, name: str, upper: float, unit: str) -> None:
    if values.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(values.shape)})")
    finite = torch.isfinite(values)
    if not finite.all():
        raise ValueError(f"{name} contains {int((~finite).sum())} NaN or infinite {unit} value(s); "
                         f"every value must be a finite number in [0, {upper:g}]")
    low, high = float(values.min()), float(values.max())
    slack = RANGE_TOLERANCE * upper
    if low < -slack or high > upper + slack:
        guess = None if upper != 1 else "[0, 255]" if high > 2 else "[-1, 1]" if low < 0 else None
        hint = f" (looks like {guess}: convert it to [0, 1] first)" if guess else ""
        raise ValueError(f"{name} values must be in [0, {upper:g}], got {low:.4g} ... {high:.4g}{hint}")


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
    _check_mask(hole_mask)
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
    _check_image(image, "image")
    _check_mask(hole_mask)
    if mode not in FIT_MODES:
        raise ValueError(f"unknown fit mode {mode!r}; accepted modes: {', '.join(FIT_MODES)}")
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    height, width = image.shape[1:]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(f"the image is {height}x{width} pixels, too small to inpaint: at least "
                         f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} are needed")
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
                         f"this {height}x{width} image survives (a hole grows by up to one pixel "
                         "there, and every known area is thinner than that): use a smaller hole, "
                         "or crop the image around it")
    return fitted


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
        hint = ""
        if isinstance(image, torch.Tensor) and image.dim() == 3 and image.shape[-1] == 3:
            hint = " (channels-last? use image.permute(2, 0, 1))"
        elif isinstance(image, torch.Tensor) and image.dim() == 4 and image.shape[:2] == (1, 3):
            hint = " (a batch of one? pass image[0])"
        raise ValueError(f"{name} must be an RGB tensor [3, H, W] with values in [0, 1], "
                         f"got {shape}{hint}")
    check_image_values(image, name)


def _check_mask(hole_mask: torch.Tensor) -> None:
    if not isinstance(hole_mask, torch.Tensor) or hole_mask.dim() != 2:
        shape = tuple(hole_mask.shape) if isinstance(hole_mask, torch.Tensor) else type(hole_mask).__name__
        raise ValueError(f"hole mask must be a tensor [H, W] (1 = hole), got {shape}")
    check_mask_values(hole_mask, "hole mask")


def check_mask_values(hole_mask: torch.Tensor, name: str) -> None:
    """Refuse mask values that are not finite or not in [0, 1] (1 = hole); bool masks pass.

    A NaN would count as known everywhere it appears (NaN >= 0.5 is false) and a [0, 255] mask
    would turn every soft edge into hole, so both are errors rather than guesses.
    """
    if not isinstance(hole_mask, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(hole_mask).__name__}")
    if hole_mask.dtype == torch.bool:
        return
    _check_finite_in_range(hole_mask.float(), name, 1.0, "mask")


def _check_result(result: torch.Tensor, resolution: int) -> None:
    if tuple(result.shape) != (3, resolution, resolution):
        raise ValueError(f"restore expects a result [3, {resolution}, {resolution}], "
                         f"got {tuple(result.shape)}")


def _to_uint8(values: torch.Tensor) -> np.ndarray:
    return (values.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def _save(picture: Image.Image, path: str | Path) -> None:
    path = check_output_image_path(path)
    image_format = Image.registered_extensions()[path.suffix.lower()]
    write_atomically(path, lambda file: picture.save(file, format=image_format))


def _read_pixels(path: str | Path, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode an image file to float32 [H, W, C] in [0, 1] (C = 1 or 3) and its alpha [H, W] or None.

    The file must be a regular file (a FIFO would block forever in open). Its header is read
    with PIL's decompression-bomb warning raised as an error and checked against
    MAX_IMAGE_PIXELS before any pixel is decoded; corrupt or truncated data fails here, naming
    the file, rather than anywhere later.
    """
    path = require_regular_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                width, height = picture.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise UserFileError(path, f"the {what} is {width}x{height} pixels, more than "
                                              f"the {MAX_IMAGE_PIXELS:,} accepted")
                picture.load()
                return _decode(ImageOps.exif_transpose(picture), path, what)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserFileError(path, f"refused as a possible decompression bomb (its header claims "
                                  f"more than {MAX_IMAGE_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise UserFileError(path, f"not an image file that can be read (accepted: PNG, JPEG, "
                                  f"WebP, TIFF, BMP, GIF and the other formats PIL reads)") from None
    except UserFileError:
        raise
    # What PIL's parsers raise on corrupt or truncated data (and on unreadable files).
    except (OSError, SyntaxError, EOFError, ValueError, struct.error) as error:
        raise UserFileError(path, f"the {what} file is corrupt, truncated or unreadable "
                                  f"({error})") from None


def _decode(picture: Image.Image, path: Path, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    mode = picture.mode
    if mode in _SIXTEEN_BIT_MODES:
        return (np.asarray(picture).astype(np.float32) / 65535)[..., None], None
    if mode == "I":  # 32-bit integers: how PIL has returned 16-bit gray PNGs
        values = np.asarray(picture)
        if values.min() < 0 or values.max() > 65535:
            raise UserFileError(path, f"32-bit integer {what} with values {values.min()} ... "
                                      f"{values.max()}: only 0 ... 65535 (16-bit) are accepted")
        return (values.astype(np.float32) / 65535)[..., None], None
    if mode == "F":
        values = np.asarray(picture, dtype=np.float32)
        if not np.isfinite(values).all():
            raise UserFileError(path, f"the floating-point {what} contains NaN or infinite pixels")
        if values.min() < 0 or values.max() > 1:
            raise UserFileError(path, f"floating-point {what} values must be in [0, 1], got "
                                      f"{values.min():.4g} ... {values.max():.4g}")
        return values[..., None], None
    # Image.has_transparency_data spelled out: it needs Pillow 10.1, and ComfyUI installs vary.
    if mode in _ALPHA_MODES or "transparency" in picture.info:
        rgba = np.asarray(picture.convert("RGBA"), dtype=np.float32) / 255
        return rgba[..., :3], rgba[..., 3]
    return np.asarray(picture.convert("RGB"), dtype=np.float32) / 255, None


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
