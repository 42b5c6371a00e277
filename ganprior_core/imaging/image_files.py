"""Reading and writing image and mask files: any bit depth and mode in, 8-bit RGB out, bounded
sizes, atomic writes."""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..files import UserFileError, check_output_file, require_regular_file, write_atomically
from .checks import HOLE_THRESHOLD, check_image, check_mask

# A bound on what one file may decode to: 8192x8192 is 805 MB as a float32 RGB tensor. Files
# claiming more are refused from their header, before any pixel is decoded (a decompression bomb
# is a few kilobytes that claim gigapixels).
MAX_IMAGE_PIXELS = 8192 * 8192
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
    check_image(image, "image")
    pixels = _to_uint8(image.permute(1, 2, 0))
    _save(Image.fromarray(pixels), path)


def save_mask(hole_mask: torch.Tensor, path: str | Path) -> None:
    """Write a hole mask [H, W] as an 8-bit grayscale image, white = hole, the format load_mask reads."""
    check_mask(hole_mask)
    _save(Image.fromarray(_to_uint8(hole_mask)), path)


# The largest side each format's writer can store; the others (PNG, TIFF, BMP) go far beyond
# MAX_IMAGE_PIXELS on any side.
FORMAT_MAX_SIDE = {"JPEG": 65_535, "WEBP": 16_383}


def check_output_image_path(path: str | Path, what: str = "output image",
                            size: tuple[int, int] | None = None) -> Path:
    """Refuse, before any work, an image path save_image could not write (see
    files.check_output_file), and with `size` (height, width) an image too large for the
    format the suffix picks (JPEG 65535, WebP 16383 pixels a side)."""
    path = check_output_file(path, IMAGE_SUFFIXES, what)
    if size is not None:
        image_format = Image.registered_extensions()[path.suffix.lower()]
        limit = FORMAT_MAX_SIDE.get(image_format)
        if limit is not None and max(size) > limit:
            raise UserFileError(path, f"{what} would be {size[1]}x{size[0]} pixels, but "
                                      f"{image_format} holds at most {limit} pixels a side; "
                                      "write a .png instead")
    return path


def _to_uint8(values: torch.Tensor) -> np.ndarray:
    return (values.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def _save(picture: Image.Image, path: str | Path) -> None:
    path = check_output_image_path(path, size=(picture.height, picture.width))
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
        raise UserFileError(path, "not an image file that can be read (accepted: PNG, JPEG, "
                                  "WebP, TIFF, BMP, GIF and the other formats PIL reads)") from None
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
