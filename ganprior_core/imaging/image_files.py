"""Reading and writing image and mask files: any bit depth and mode in, 8-bit RGB out (16-bit
and an alpha channel where the caller asks and the format holds them), bounded sizes, atomic
writes. `read_image` says what a file held beyond the RGB pixels (`LoadedImage`: its alpha, its
bit depth, what reading could not keep); `save_image` says what writing could not keep."""
from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..files import UserFileError, check_output_file, require_regular_file, write_atomically
from .checks import HOLE_THRESHOLD, check_image, check_mask, check_mask_values, hole_pixels

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
# Pillow reads 16-bit colour PNGs at 8 bits (it has no 16-bit colour mode): these raw modes hold
# the samples' high bytes; the same data read with the "...;16L" raw mode gives their low bytes
# (the PNG filters see the same pixel size), and both together the 16-bit samples.
_SIXTEEN_BIT_COLOUR_PNG = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}
# Formats save_image writes with an alpha channel (the others hold none, or PIL drops it).
ALPHA_FORMATS = ("PNG", "TIFF", "WEBP")


@dataclass(frozen=True)
class LoadedImage:
    """An image file as read: the RGB pixels every entry point uses, and what else it held.

    pixels: [3, H, W] float32 in [0, 1]. alpha: [H, W] float32 in [0, 1] (1 = opaque) where the
    file has transparency data, else None. bits: bits per sample of the pixels as read (8; 16
    for 16-bit PNGs and TIFFs; 32 for floating-point TIFFs). notes: what reading could not keep
    (empty when nothing was lost).
    """

    pixels: torch.Tensor
    alpha: torch.Tensor | None
    bits: int
    notes: tuple[str, ...] = field(default=())

    @property
    def transparent_pixels(self) -> int:
        """How many pixels are transparent or partly transparent (alpha below 1)."""
        return 0 if self.alpha is None else int((self.alpha < 1).sum())

    def alpha_hole(self) -> torch.Tensor | None:
        """The hole [H, W] the transparency marks, read as load_mask reads a mask file with
        transparency (and ComfyUI's Load Image its MASK): 1 where alpha is at most half; None
        where nothing is transparent."""
        if not self.transparent_pixels:
            return None
        return hole_pixels(1 - self.alpha).float()


def read_image(path: str | Path) -> LoadedImage:
    """Read an image file: its RGB pixels [3, H, W] in [0, 1], and its alpha channel and bit
    depth, which the pixels alone do not carry (see LoadedImage).

    Pixels are scaled by the file's bit depth (8-bit by 255, 16-bit by 65535, also for 16-bit
    colour PNGs, which Pillow alone reads at 8 bits); gray and palette images become RGB;
    floating-point TIFFs must already hold values in [0, 1]. The EXIF orientation is applied, so
    the pixels match what image viewers show (and what a mask was painted on). Anything
    unreadable raises a UserFileError (a ValueError) naming the file.
    """
    decoded = _read_pixels(path, "image")
    values = decoded.values
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    pixels = torch.from_numpy(values).permute(2, 0, 1).contiguous()
    alpha = None if decoded.alpha is None else torch.from_numpy(decoded.alpha).contiguous()
    return LoadedImage(pixels, alpha, decoded.bits, tuple(decoded.notes))


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file as RGB [3, H, W] in [0, 1]: `read_image(path).pixels`. An alpha channel
    is dropped, not composited; read_image returns it (and the bit depth) where a caller needs
    to keep it or say what happened to it."""
    return read_image(path).pixels


def load_mask(path: str | Path) -> torch.Tensor:
    """Read a hole mask [H, W] from an image file: white = hole, black = known.

    Pixels >= 0.5 of full scale (at the file's bit depth) become holes, so anti-aliased edges are
    split at half intensity. A file with transparency is read as ComfyUI reads a mask from
    LoadImage: transparent = hole (alpha at most half), whatever the colour; a fully opaque
    alpha channel is ignored.
    """
    decoded = _read_pixels(path, "mask")
    values, alpha = decoded.values, decoded.alpha
    if alpha is not None and alpha.min() < 1:
        hole = 1 - alpha
    elif values.shape[2] == 3:  # ITU-R 601 luma, as PIL's convert("L")
        hole = values @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    else:
        hole = values[..., 0]
    return torch.from_numpy(hole >= HOLE_THRESHOLD).float()


def save_image(image: torch.Tensor, path: str | Path, alpha: torch.Tensor | None = None,
               bits: int = 8) -> list[str]:
    """Write [3, H, W] in [0, 1] as an image (format from the suffix, IMAGE_SUFFIXES), 8 bits per
    channel unless `bits` is 16, with `alpha` ([H, W] in [0, 1], 1 = opaque) as its alpha
    channel when given. Returns notes on what the format could not keep (empty when it kept
    everything): 16 bits are written to PNG only, an alpha channel to PNG, TIFF and WebP.

    Written atomically: an existing file is replaced only by a complete new one.
    """
    check_image(image, "image")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    if alpha is not None:
        check_mask_values(alpha, "alpha")
        if tuple(alpha.shape) != tuple(image.shape[1:]):
            raise ValueError(f"alpha must be [H, W] = {list(image.shape[1:])} like the image, "
                             f"got {list(alpha.shape)}")
    path = check_output_image_path(path, size=tuple(image.shape[1:]))
    image_format = Image.registered_extensions()[path.suffix.lower()]
    notes = []
    if alpha is not None and image_format not in ALPHA_FORMATS:
        notes.append(f"{path.name}: the alpha channel is not written ({image_format} holds none "
                     "here; .png keeps it)")
        alpha = None
    if bits == 16 and image_format != "PNG":
        notes.append(f"{path.name}: written at 8 bits per channel ({image_format} is written at "
                     "8 bits here; .png keeps 16)")
        bits = 8
    channels = image if alpha is None else torch.cat([image, alpha.to(image)[None]])
    if bits == 16:
        png = _png16(_to_uint16(channels.permute(1, 2, 0)))
        write_atomically(path, png)
    else:
        _save(Image.fromarray(_to_uint8(channels.permute(1, 2, 0))), path)
    return notes


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
    # round(clamp(x) * 255), scaled and rounded in place: one float temporary, not three
    scaled = values.detach().float().clamp(0, 1).mul_(255).round_()
    return scaled.to(torch.uint8).cpu().numpy()


def _to_uint16(values: torch.Tensor) -> np.ndarray:
    """[H, W, C] in [0, 1] -> big-endian 16-bit samples, as PNG stores them."""
    scaled = values.detach().float().clamp(0, 1).mul_(65535).round_().to(torch.int32).cpu().numpy()
    return np.ascontiguousarray(scaled.astype(">u2"))


def _png16(samples: np.ndarray) -> bytes:
    """A 16-bit RGB or RGBA PNG of big-endian samples [H, W, 3 or 4] (Pillow writes 16 bits for
    gray images only). Each row uses the Sub filter, computed by numpy a band of rows at a time
    and compressed as it goes (no filtered copy of the whole image)."""
    height, width, channels = samples.shape
    rows = samples.view(np.uint8).reshape(height, width * channels * 2)
    pixel = channels * 2
    compressor = zlib.compressobj(6)
    parts = []
    band = max(1, (4 << 20) // rows.shape[1])
    for top in range(0, height, band):
        block = rows[top:top + band]
        filtered = np.empty((len(block), block.shape[1] + 1), np.uint8)
        filtered[:, 0] = 1  # filter type Sub: each byte minus the one a pixel to its left
        filtered[:, 1:pixel + 1] = block[:, :pixel]
        np.subtract(block[:, pixel:], block[:, :-pixel], out=filtered[:, pixel + 1:])
        parts.append(compressor.compress(filtered.tobytes()))
    parts.append(compressor.flush())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, 2 if channels == 3 else 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
            + chunk(b"IEND", b""))


def _save(picture: Image.Image, path: str | Path) -> None:
    path = check_output_image_path(path, size=(picture.height, picture.width))
    image_format = Image.registered_extensions()[path.suffix.lower()]
    write_atomically(path, lambda file: picture.save(file, format=image_format))


@dataclass
class _Decoded:
    values: np.ndarray  # float32 [H, W, C] in [0, 1], C = 1 or 3
    alpha: np.ndarray | None  # float32 [H, W] in [0, 1], or None
    bits: int = 8
    notes: list[str] = field(default_factory=list)


def _read_pixels(path: str | Path, what: str) -> _Decoded:
    """Decode an image file to float32 [H, W, C] in [0, 1] (C = 1 or 3) and its alpha [H, W] or None.

    The file must be a regular file (a FIFO would block forever in open). Its header is read
    with PIL's decompression-bomb warning raised as an error and checked against
    MAX_IMAGE_PIXELS before any pixel is decoded; corrupt or truncated data fails here, naming
    the file, rather than anywhere later.
    """
    def decode(picture: Image.Image, path: Path) -> _Decoded:
        low_rawmode, lost = _sixteen_bit_colour(picture)
        picture.load()
        if low_rawmode is not None and "transparency" not in picture.info:
            decoded, lost = _sixteen_bit_pixels(picture, low_rawmode, path)
            if decoded is not None:
                return decoded
        decoded = _decode(ImageOps.exif_transpose(picture), path, what)
        if lost is not None:
            decoded.notes.append(f"{path.name}: {lost}")
        return decoded

    return _with_picture(path, what, decode)


def image_size(path: str | Path, what: str = "image") -> tuple[int, int]:
    """(height, width) of an image file as read_image returns it (after the EXIF orientation),
    from its header alone: no pixel is decoded, so a caller can size what it will allocate
    first. Refused as read_image refuses: not a regular file, not an image, too many pixels."""
    def size(picture: Image.Image, path: Path) -> tuple[int, int]:
        width, height = picture.size
        orientation = picture.getexif().get(0x0112, 1)
        return (width, height) if orientation in (5, 6, 7, 8) else (height, width)

    return _with_picture(path, what, size)


def _with_picture(path: str | Path, what: str, action):
    """`action(picture, path)` on the opened file, its size checked against MAX_IMAGE_PIXELS
    first; PIL's errors become one UserFileError naming the file."""
    path = require_regular_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                width, height = picture.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise UserFileError(path, f"the {what} is {width}x{height} pixels, more than "
                                              f"the {MAX_IMAGE_PIXELS:,} accepted")
                return action(picture, path)
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


def _decode(picture: Image.Image, path: Path, what: str) -> _Decoded:
    mode = picture.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _Decoded((np.asarray(picture).astype(np.float32) / 65535)[..., None], None, 16)
    if mode == "I":  # 32-bit integers: how PIL has returned 16-bit gray PNGs
        values = np.asarray(picture)
        if values.min() < 0 or values.max() > 65535:
            raise UserFileError(path, f"32-bit integer {what} with values {values.min()} ... "
                                      f"{values.max()}: only 0 ... 65535 (16-bit) are accepted")
        return _Decoded((values.astype(np.float32) / 65535)[..., None], None, 16)
    if mode == "F":
        values = np.asarray(picture, dtype=np.float32)
        if not np.isfinite(values).all():
            raise UserFileError(path, f"the floating-point {what} contains NaN or infinite pixels")
        if values.min() < 0 or values.max() > 1:
            raise UserFileError(path, f"floating-point {what} values must be in [0, 1], got "
                                      f"{values.min():.4g} ... {values.max():.4g}")
        return _Decoded(values[..., None], None, 32)
    notes = []
    if mode == "CMYK":
        notes.append(f"{path.name}: CMYK converted to RGB by Pillow's naive formula (no colour "
                     "profile is applied)")
    # Image.has_transparency_data spelled out: it needs Pillow 10.1, and ComfyUI installs vary.
    if mode in _ALPHA_MODES or "transparency" in picture.info:
        rgba = _unit_floats(picture.convert("RGBA"))
        return _Decoded(rgba[..., :3], rgba[..., 3], 8, notes)
    return _Decoded(_unit_floats(picture.convert("RGB")), None, 8, notes)


def _unit_floats(picture: Image.Image) -> np.ndarray:
    """8-bit pixels / 255 as float32, divided in place (one float copy of the image, not two)."""
    values = np.array(picture, dtype=np.float32)
    values /= 255
    return values


def _sixteen_bit_colour(picture: Image.Image) -> tuple[str | None, str | None]:
    """For a 16-bit colour PNG (which Pillow reads at 8 bits): the raw mode that reads its
    samples' low bytes, or, for a 16-bit PNG this cannot read at 16 bits (interlaced, gray with
    alpha), a note that it is read at 8. (None, None) for any other file."""
    if picture.format != "PNG" or len(picture.tile) != 1:
        return None, None
    rawmode = picture.tile[0].args if isinstance(picture.tile[0].args, str) else None
    if rawmode is None or ";16" not in rawmode or rawmode.startswith("I;16"):
        return None, None
    if rawmode in _SIXTEEN_BIT_COLOUR_PNG and not picture.info.get("interlace"):
        return _SIXTEEN_BIT_COLOUR_PNG[rawmode], None
    kind = "interlaced " if picture.info.get("interlace") else ""
    return None, (f"{kind}16-bit PNG ({rawmode.split(';')[0]}) read at 8 bits per channel "
                  "(Pillow reads it so)")


def _sixteen_bit_pixels(picture: Image.Image, low_rawmode: str, path: Path
                        ) -> tuple[_Decoded | None, str | None]:
    """A 16-bit colour PNG's pixels: the 8-bit ones Pillow read (the samples' high bytes) with
    their low bytes, read again from the file with `low_rawmode`; (None, why) where that cannot
    be done (the caller then reads it at 8 bits and says so)."""
    try:
        with Image.open(path) as again:
            again.tile = [again.tile[0]._replace(args=low_rawmode)]
            again.load()
            low = np.asarray(ImageOps.exif_transpose(again))
        high = np.asarray(ImageOps.exif_transpose(picture))
    except Exception as error:  # noqa: BLE001 - a Pillow without the raw mode: 8 bits, noted
        return None, f"16-bit PNG read at 8 bits per channel ({error})"
    samples = ((high.astype(np.uint16) << 8) | low).astype(np.float32)
    del high, low
    samples /= 65535
    alpha = samples[..., 3] if samples.shape[2] == 4 else None
    return _Decoded(samples[..., :3], alpha, 16), None
