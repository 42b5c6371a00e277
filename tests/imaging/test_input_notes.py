"""What an image file holds beyond RGB pixels is kept or said (read_image, save_image), tensors
that hold no values are refused in one line by every imaging entry point, and the node's own
conversions note what they do not keep."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from ganprior_core import imaging, metrics
from ganprior_core.imaging import LoadedImage, image_size, read_image, save_image


def png16(samples: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG of uint16 samples [H, W, C], written the slow way with every PNG filter in
    turn (None, Sub, Up, Average, Paeth), as encoders pick them row by row."""
    height, width, channels = samples.shape
    rows = samples.astype(">u2").view(np.uint8).reshape(height, width * channels * 2).astype(np.int32)
    pixel = channels * 2
    data = bytearray()
    for y in range(height):
        kind = y % 5
        row, above = rows[y], rows[y - 1] if y else np.zeros_like(rows[y])
        out = []
        for x in range(len(row)):
            left = row[x - pixel] if x >= pixel else 0
            corner = above[x - pixel] if x >= pixel else 0
            if kind == 0:
                predictor = 0
            elif kind == 1:
                predictor = left
            elif kind == 2:
                predictor = above[x]
            elif kind == 3:
                predictor = (left + above[x]) // 2
            else:
                estimate = left + above[x] - corner
                distances = [abs(estimate - left), abs(estimate - above[x]), abs(estimate - corner)]
                predictor = (left, above[x], corner)[distances.index(min(distances))]
            out.append((row[x] - predictor) % 256)
        data += bytes([kind]) + bytes(out)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(data)))
            + chunk(b"IEND", b""))


def samples16(height, width, channels, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, (height, width, channels)).astype(np.uint16)


# ---------------------------------------------------------------------------------------------
# Reading

def test_an_8_bit_rgb_file_reads_with_nothing_to_say(tmp_path):
    Image.new("RGB", (5, 4), (10, 20, 30)).save(tmp_path / "plain.png")
    loaded = read_image(tmp_path / "plain.png")
    assert isinstance(loaded, LoadedImage)
    assert loaded.bits == 8 and loaded.alpha is None and loaded.notes == ()
    assert loaded.transparent_pixels == 0 and loaded.alpha_hole() is None
    assert torch.equal(loaded.pixels, imaging.load_image(tmp_path / "plain.png"))


def test_transparency_is_kept_as_alpha_and_read_as_a_hole_as_load_mask_reads_it(tmp_path):
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 255
    rgba[1:3, 2:5, 3] = 0  # transparent: a hole
    rgba[4, 6, 3] = 200  # partly transparent, more than half opaque: not a hole
    Image.fromarray(rgba, "RGBA").save(tmp_path / "holed.png")
    loaded = read_image(tmp_path / "holed.png")
    assert loaded.transparent_pixels == 7
    assert torch.equal(loaded.alpha_hole(), imaging.load_mask(tmp_path / "holed.png"))
    assert int(loaded.alpha_hole().sum()) == 6
    assert torch.equal(loaded.pixels, torch.full((3, 6, 8), 200 / 255))  # the stored colour


@pytest.mark.parametrize("channels,color_type", [(3, 2), (4, 6)])
def test_16_bit_colour_pngs_are_read_at_16_bits_through_every_png_filter(tmp_path, channels, color_type):
    samples = samples16(7, 9, channels)
    (tmp_path / "deep.png").write_bytes(png16(samples, color_type))
    loaded = read_image(tmp_path / "deep.png")
    assert loaded.bits == 16 and loaded.notes == ()
    expected = torch.from_numpy(samples.astype(np.float32) / 65535)
    assert torch.equal(loaded.pixels, expected[..., :3].permute(2, 0, 1))
    if channels == 4:
        assert torch.equal(loaded.alpha, expected[..., 3])


def test_a_16_bit_png_pillow_reads_at_8_bits_says_so(tmp_path):
    (tmp_path / "gray_alpha.png").write_bytes(png16(samples16(4, 5, 2), 4))  # gray + alpha
    loaded = read_image(tmp_path / "gray_alpha.png")
    assert loaded.bits == 8
    assert loaded.notes == ("gray_alpha.png: 16-bit PNG (LA) read at 8 bits per channel (Pillow "
                            "reads it so)",)


def test_gray_16_bit_and_float_files_report_their_depth(tmp_path):
    Image.fromarray(np.full((4, 5), 40000, np.uint16)).save(tmp_path / "gray16.png")
    Image.fromarray(np.full((4, 5), 0.25, np.float32), "F").save(tmp_path / "float.tif")
    assert read_image(tmp_path / "gray16.png").bits == 16
    assert read_image(tmp_path / "float.tif").bits == 32


def test_image_size_reads_the_header_only_and_applies_the_exif_rotation(tmp_path):
    picture = Image.new("RGB", (30, 20))
    exif = picture.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: viewers show it 20 wide, 30 high
    picture.save(tmp_path / "rotated.jpg", exif=exif)
    assert image_size(tmp_path / "rotated.jpg") == (30, 20)
    assert tuple(read_image(tmp_path / "rotated.jpg").pixels.shape[1:]) == (30, 20)


# ---------------------------------------------------------------------------------------------
# Writing

def test_16_bits_and_alpha_round_trip_through_png(tmp_path):
    image = torch.rand(3, 11, 13, generator=torch.Generator().manual_seed(0))
    alpha = torch.rand(11, 13, generator=torch.Generator().manual_seed(1))
    assert save_image(image, tmp_path / "deep.png", alpha=alpha, bits=16) == []
    loaded = read_image(tmp_path / "deep.png")
    assert loaded.bits == 16
    assert torch.equal(loaded.pixels, (image * 65535).round() / 65535)
    assert torch.equal(loaded.alpha, (alpha * 65535).round() / 65535)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
def test_alpha_is_written_where_the_format_holds_it(tmp_path, suffix):
    image = torch.full((3, 4, 4), 0.5)
    alpha = torch.zeros(4, 4)
    alpha[:2] = 1
    assert save_image(image, tmp_path / f"a{suffix}", alpha=alpha) == []
    loaded = read_image(tmp_path / f"a{suffix}")
    assert torch.equal(loaded.alpha, alpha)


def test_what_a_format_cannot_hold_is_said(tmp_path):
    image, alpha = torch.full((3, 4, 4), 0.5), torch.ones(4, 4)
    notes = save_image(image, tmp_path / "flat.jpg", alpha=alpha, bits=16)
    assert notes == ["flat.jpg: the alpha channel is not written (JPEG holds none here; .png keeps it)",
                     "flat.jpg: written at 8 bits per channel (JPEG is written at 8 bits here; .png "
                     "keeps 16)"]
    assert read_image(tmp_path / "flat.jpg").bits == 8
    assert save_image(image, tmp_path / "flat.tif", bits=16) == [
        "flat.tif: written at 8 bits per channel (TIFF is written at 8 bits here; .png keeps 16)"]


def test_save_image_writes_8_bits_as_before_by_default(tmp_path):
    image = torch.rand(3, 5, 6, generator=torch.Generator().manual_seed(2))
    assert save_image(image, tmp_path / "plain.png") == []
    with Image.open(tmp_path / "plain.png") as picture:
        assert picture.mode == "RGB"


# ---------------------------------------------------------------------------------------------
# Tensors that hold no values: one line from every entry point

META = "is on the meta device: it holds no values; pass a tensor with data"


@pytest.mark.parametrize("call", [
    lambda t: imaging.check_image_values(t, "image"),
    lambda t: imaging.check_mask_values(t[0], "mask"),
    lambda t: imaging.composite(t, torch.zeros(3, 8, 8), torch.zeros(8, 8)),
    lambda t: imaging.composite(torch.zeros(3, 8, 8), t, torch.zeros(8, 8)),
    lambda t: imaging.composite(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8), t[0]),
    lambda t: imaging.fit_to_resolution(t, torch.zeros(8, 8), 16),
    lambda t: imaging.resize_mask(t[0], (4, 4)),
    lambda t: imaging.save_image(t, "never-written.png"),
    lambda t: metrics.measure(t, torch.zeros(3, 8, 8)),
    lambda t: metrics.measure(torch.zeros(3, 8, 8), t),
    lambda t: metrics.psnr(t, torch.zeros(3, 8, 8)),
], ids=["check_image_values", "check_mask_values", "composite-original", "composite-result",
        "composite-mask", "fit_to_resolution", "resize_mask", "save_image", "measure-image",
        "measure-reference", "psnr"])
def test_tensors_on_the_meta_device_are_refused_in_one_line(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=META) as error:
        call(torch.zeros(3, 8, 8, device="meta"))
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_sparse_tensors_and_mixed_devices_are_refused_in_one_line():
    with pytest.raises(ValueError, match="image is a sparse_coo tensor; pass a dense one"):
        imaging.check_image_values(torch.zeros(3, 8, 8).to_sparse(), "image")
    with pytest.raises(ValueError, match="result must be a torch tensor"):
        imaging.composite(torch.zeros(3, 8, 8), np.zeros((3, 8, 8)), torch.zeros(8, 8))


def test_composite_holds_fewer_copies_and_gives_the_same_bits_as_the_formula():
    generator = torch.Generator().manual_seed(0)
    original = torch.rand(3, 40, 50, generator=generator)
    result = torch.rand(3, 40, 50, generator=generator) * 3 - 1
    mask = (torch.rand(40, 50, generator=generator) * 2 - 0.5).clamp(0, 1)
    result[0, 0, 0], result[1, 5, 5], mask[0, 0] = float("inf"), float("nan"), 0
    expected = torch.where(mask > 0, original * (1 - mask) + result * mask, original)
    assert torch.equal(imaging.composite(original, result, mask).nan_to_num(), expected.nan_to_num())
    assert torch.equal(imaging.composite(original, result, mask).isnan(), expected.isnan())


# ---------------------------------------------------------------------------------------------
# The node's own conversions (nodes/tensors.py)

def test_the_node_notes_the_alpha_channel_float64_and_a_resized_mask():
    from tests.pack_under_test import pack_module
    tensors = pack_module("nodes.tensors")
    rgba = torch.rand(1, 12, 10, 4)
    assert tensors.input_notes(rgba, torch.zeros(1, 12, 10)) == [
        "IMAGE has a 4th (alpha) channel: it is dropped (MASK says what to fill) and the outputs are RGB"]
    assert tensors.input_notes(torch.rand(1, 12, 10, 3, dtype=torch.float64), torch.zeros(6, 5)) == [
        "IMAGE is float64: computed and returned in float32", "MASK 5x6 resized to the image's 10x12 (bilinear)"]
    assert tensors.input_notes(torch.rand(2, 12, 10, 3), torch.zeros(12, 10)) == []


def test_the_inpaint_nodes_info_carries_the_input_notes():
    from tests.nodes.node_runs import build, fast_optimizer, inpaint
    from tests.pack_under_test import pack_module
    network = pack_module("ganprior_core.networks.pggan")
    torch.manual_seed(0)
    prior = network.PGGANGenerator(network.PGGANConfig(16, (32, 32, 16), latent_dim=32)).eval()
    image = torch.rand(1, 16, 16, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 8, 8)
    mask[:, 2:5, 2:5] = 1
    *_, info = inpaint(build(prior), image, mask, optimizer=fast_optimizer(steps=2))
    assert info.startswith("image 1: ")
    assert "IMAGE has a 4th (alpha) channel: it is dropped" in info
    assert "MASK 8x8 resized to the image's 16x16 (bilinear)" in info
