"""Hostile and careless input: every mistake gets a clear answer, nothing crashes or hangs.

CLI: exit code 2, one `error:` line naming the problem, no traceback, nothing written and no
input changed. Library: a ValueError saying what is accepted, before any optimisation.
Validation runs before the optimisation, so most cases cost milliseconds; the few that must
optimise use 2 steps of a tiny generator."""
from __future__ import annotations

import os
import struct
import threading
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_builders import write_good_inputs
from PIL import Image

from ganprior_core import imaging, metrics, optimize
from ganprior_core.cli import main
from ganprior_core.files import write_atomically
from ganprior_core.sampling import generate, sample_latents

FAST = ["--steps", "2", "--codes", "2", "--precision", "fp32", "--preset", "mganprior"]


pytestmark = pytest.mark.usefixtures("one_thread")


def png_header_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes that claim width x height pixels: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture
def workspace(tmp_path, tiny_generator):
    """Inputs in in/, outputs go to out/: a good image, mask, checkpoint and latents, and the
    bad files every input option is tried with."""
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    write_good_inputs(inputs, tiny_generator)
    good_png = (inputs / "image.png").read_bytes()
    bad = {
        "missing": inputs / "missing.png",
        "directory": inputs,
        "empty": inputs / "empty.png",
        "text": inputs / "text.png",
        "truncated": inputs / "truncated.png",
        "bomb": inputs / "bomb.png",
        "over_cap": inputs / "big.png",
        "fifo": inputs / "pipe.png",
        "nan_tiff": inputs / "nan.tif",
    }
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("not an image\n")
    bad["truncated"].write_bytes(good_png[: len(good_png) // 2])
    bad["bomb"].write_bytes(png_header_claiming(40000, 40000))
    bad["over_cap"].write_bytes(png_header_claiming(9000, 9000))
    os.mkfifo(bad["fifo"])
    nan_pixels = np.full((20, 28), 0.25, np.float32)
    nan_pixels[3, 3] = np.nan
    Image.fromarray(nan_pixels, "F").save(bad["nan_tiff"])
    return {"in": inputs, "out": outputs, "bad": bad, "checkpoint": inputs / "tiny.safetensors"}


def files_under(folder: Path) -> dict[Path, bytes | None]:
    return {path: None if not path.is_file() else path.read_bytes()
            for path in sorted(folder.rglob("*")) if not path.is_fifo()}


def refused(argv, workspace, capsys, *expected: str) -> str:
    """Run the CLI; assert exit 2, one error line naming the problem, nothing written or changed."""
    before = files_under(workspace["in"].parent)
    code = main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0], lines[0]
    assert files_under(workspace["in"].parent) == before, "something was written or changed"
    return lines[0]


def inpaint_args(workspace, **overrides):
    options = {"--checkpoint": workspace["checkpoint"], "--image": workspace["in"] / "image.png",
               "--mask": workspace["in"] / "mask.png", "--out": workspace["out"] / "result.png"}
    options.update(overrides)
    argv = ["inpaint", *FAST]
    for option, value in options.items():
        if value is not None:
            argv += [option, value]
    return argv


# --- 5: image and mask files ----------------------------------------------------------------

BAD_FILE_MESSAGES = {
    "missing": "no such",
    "directory": "is a directory",
    "empty": "not an image file",
    "text": "not an image file",
    "truncated": "corrupt, truncated",
    "bomb": "decompression bomb",
    "over_cap": "more than the",
    "fifo": "not a regular file",
    "nan_tiff": "NaN",
}


@pytest.mark.parametrize("option", ["--image", "--mask"])
@pytest.mark.parametrize("kind", sorted(BAD_FILE_MESSAGES))
def test_inpaint_refuses_a_bad_image_or_mask_file_naming_it(workspace, capsys, option, kind):
    bad_file = workspace["bad"][kind]
    line = refused(inpaint_args(workspace, **{option: bad_file}), workspace, capsys,
                   BAD_FILE_MESSAGES[kind])
    assert str(bad_file) in line


@pytest.mark.parametrize("option", ["--checkpoint", "--vgg"])
def test_inpaint_refuses_a_model_file_that_is_a_pipe(workspace, capsys, option):
    refused([*inpaint_args(workspace, **{option: workspace["bad"]["fifo"]})], workspace, capsys,
            "not a regular file")


@pytest.mark.parametrize("kind", ["fifo", "text", "bomb"])
def test_metrics_refuses_a_bad_file(workspace, capsys, kind):
    refused(["metrics", workspace["bad"][kind], workspace["in"] / "image.png"], workspace, capsys,
            BAD_FILE_MESSAGES[kind])


def test_reading_a_fifo_fails_at_once_instead_of_blocking(workspace):
    outcome = {}

    def read():
        try:
            imaging.load_image(workspace["bad"]["fifo"])
        except ValueError as error:
            outcome["error"] = str(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "load_image blocked on a named pipe"
    assert "not a regular file" in outcome["error"]


def test_decompression_bomb_is_refused_from_its_header(workspace):
    with pytest.raises(ValueError, match="decompression bomb"):
        imaging.load_mask(workspace["bad"]["bomb"])


def test_16_bit_png_is_scaled_by_its_bit_depth(tmp_path):
    Image.fromarray(np.full((12, 12), 32768, np.uint16)).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    image = imaging.load_image(tmp_path / "grey16.png")
    assert torch.allclose(image, torch.full((3, 12, 12), 32768 / 65535))
    assert imaging.load_mask(tmp_path / "grey16.png").eq(1).all()  # 0.50001 >= 0.5: hole


def test_identical_16_bit_images_score_infinite_psnr(tmp_path, capsys):
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(tmp_path / name)
    assert main(["metrics", str(tmp_path / "a.png"), str(tmp_path / "b.png")]) == 0
    assert "PSNR inf dB" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["P", "LA", "1", "CMYK", "F"])
def test_other_pixel_modes_load_as_rgb_in_range(tmp_path, mode):
    gray = np.linspace(0, 255, 12 * 12, dtype=np.float32).reshape(12, 12)
    picture = {"P": lambda: Image.fromarray(gray.astype(np.uint8)).convert("RGB").convert("P"),
               "LA": lambda: Image.fromarray(gray.astype(np.uint8)).convert("LA"),
               "1": lambda: Image.fromarray(gray.astype(np.uint8)).convert("1"),
               "CMYK": lambda: Image.fromarray(gray.astype(np.uint8)).convert("CMYK"),
               "F": lambda: Image.fromarray(gray / 255, "F")}[mode]()
    path = tmp_path / ("image.tif" if mode in ("F", "CMYK") else "image.png")
    picture.save(path)
    image = imaging.load_image(path)
    assert image.shape == (3, 12, 12) and image.min() >= 0 and image.max() <= 1
    if mode in ("LA", "F"):  # exact gray levels survive
        assert torch.allclose(image[0], torch.from_numpy(gray / 255), atol=1 / 255)


def test_exif_orientation_is_applied_to_images_and_masks_alike(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", what phones write
    Image.new("RGB", (20, 10), "white").save(tmp_path / "photo.jpg", exif=exif)
    Image.new("L", (20, 10), 255).save(tmp_path / "mask.png", exif=exif)
    assert imaging.load_image(tmp_path / "photo.jpg").shape == (3, 20, 10)
    assert imaging.load_mask(tmp_path / "mask.png").shape == (20, 10)


def test_mask_transparency_means_hole_as_in_comfyui(tmp_path):
    hole = np.zeros((10, 12), bool)
    hole[2:6, 3:9] = True
    alpha = np.where(hole, 0, 255).astype(np.uint8)
    black = np.zeros((10, 12), np.uint8)
    Image.fromarray(np.dstack([black, black, black, alpha]), "RGBA").save(tmp_path / "alpha.png")
    assert torch.equal(imaging.load_mask(tmp_path / "alpha.png"), torch.from_numpy(hole).float())
    # Fully opaque alpha carries nothing: the colour decides, white = hole.
    white_hole = np.where(hole, 255, 0).astype(np.uint8)
    opaque = np.full((10, 12), 255, np.uint8)
    Image.fromarray(np.dstack([white_hole] * 3 + [opaque]), "RGBA").save(tmp_path / "opaque.png")
    assert torch.equal(imaging.load_mask(tmp_path / "opaque.png"), torch.from_numpy(hole).float())


def test_pad_keeps_a_thin_images_hole_and_known_pixels():
    image = torch.rand(3, 10, 10000)
    hole = torch.zeros(10, 10000)
    hole[2:8, 4000:6000] = 1
    fitted, fitted_hole, restore = imaging.fit_to_resolution(image, hole, 64, "pad")
    assert fitted.shape == (3, 64, 64)
    image_rows = [row for row in range(64) if not fitted_hole[row].all()]
    assert len(image_rows) == 1  # the 10-pixel height becomes one row; the rest is padding
    strip = fitted_hole[image_rows[0]]
    assert strip[:24].eq(0).all() and strip[40:].eq(0).all()  # known stays known
    assert strip[27:37].eq(1).all()  # the hole stays a hole
    assert restore(fitted).shape == (3, 10, 10000)


def test_fit_refuses_a_mask_whose_known_pixels_cannot_survive():
    hole = torch.ones(640, 640)
    hole[::20, ::20] = 0  # known single pixels, 20 apart: none survives at 16x16
    with pytest.raises(ValueError, match="no known pixel"):
        imaging.fit_to_resolution(torch.rand(3, 640, 640), hole, 16)


def test_thin_image_inpaints_through_the_cli_with_pad(workspace, capsys):
    image = np.random.default_rng(1).integers(0, 256, (10, 600, 3), dtype=np.uint8)
    hole = np.zeros((10, 600), np.uint8)
    hole[3:8, 250:350] = 255
    Image.fromarray(image).save(workspace["in"] / "thin.png")
    Image.fromarray(hole).save(workspace["in"] / "thin_mask.png")
    out = workspace["out"] / "thin.png"
    assert main([str(arg) for arg in inpaint_args(
        workspace, **{"--image": workspace["in"] / "thin.png", "--mask": workspace["in"] / "thin_mask.png",
                      "--out": out, "--fit": "pad"})]) == 0
    assert "covers the whole image" not in capsys.readouterr().out
    result = np.asarray(Image.open(out))
    assert np.array_equal(result[hole == 0], image[hole == 0])
    assert not np.array_equal(result[hole > 0], image[hole > 0])


def test_tiny_image_is_refused(workspace, capsys):
    Image.fromarray(np.full((1, 1, 3), 100, np.uint8)).save(workspace["in"] / "dot.png")
    refused(inpaint_args(workspace, **{"--image": workspace["in"] / "dot.png", "--mask": None}),
            workspace, capsys, "1x1", "too small")


# --- 6: numbers -----------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--lr-latent", "--lr-alpha", "--lr-beta", "--lr-generator",
                                    "--mse-weight", "--perceptual-weight"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_non_finite_or_negative_rates_and_weights_are_refused(workspace, capsys, option, value):
    refused([*inpaint_args(workspace), f"{option}={value}"], workspace, capsys,
            option[2:].replace("-", "_"))


@pytest.mark.parametrize("options, message", [
    (["--steps", "0"], "steps must be in 1"),
    (["--steps", "100000000000"], "1000000"),
    (["--codes", "0"], "latent codes"),
    (["--codes", "100000"], "1 ... 256"),
    (["--split", "99"], "between"),
    (["--log-every", "0"], "--log-every"),
    (["--seed", "-1"], "--seed must be in 0"),
    (["--seed", str(2 ** 64)], "2^64"),
    (["--device", "bogus"], "unknown device"),
    (["--device", "meta"], "cannot run"),
    (["--mse-weight", "0"], "nothing would be fitted"),
])
def test_bad_settings_are_refused(workspace, capsys, options, message):
    refused([*inpaint_args(workspace), *options], workspace, capsys, message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["inpaint", "generate", "demo"])
def test_cuda_without_cuda_is_a_clear_error(workspace, capsys, command):
    argv = {"inpaint": inpaint_args(workspace),
            "generate": ["generate", workspace["checkpoint"], "--out", workspace["out"] / "g.png"],
            "demo": ["demo", "--out", workspace["out"] / "demo"]}[command]
    refused([*argv, "--device", "cuda"], workspace, capsys, "not available")


@pytest.mark.parametrize("latents, message", [
    (np.full((2, 32), np.nan, np.float32), "NaN"),
    (np.ones((2, 32), np.int64), "floating-point"),
    (np.ones((2, 32), np.complex64), "floating-point"),
    (np.ones(32, np.float32), "[N, 32]"),
    (np.ones((2, 7), np.float32), "[N, 32]"),
    (np.ones((0, 32), np.float32), "N must be in 1"),
    (np.array([{"code": 1}, None], dtype=object), "numeric .npy"),
])
def test_generate_refuses_bad_latents(workspace, capsys, latents, message):
    np.save(workspace["in"] / "bad.npy", latents, allow_pickle=True)
    refused(["generate", workspace["checkpoint"], "--latents", workspace["in"] / "bad.npy",
             "--out", workspace["out"] / "x.npy"], workspace, capsys, message)


def test_generate_refuses_a_latents_fifo(workspace, capsys):
    refused(["generate", workspace["checkpoint"], "--latents", workspace["bad"]["fifo"],
             "--out", workspace["out"] / "x.npy"], workspace, capsys, "not a regular file")


@pytest.fixture
def problem(tiny_generator):
    model_config, optimizer_config = optimize.preset("mganprior", tiny_generator.config)
    hole = torch.zeros(16, 16)
    hole[4:10, 4:10] = 1
    return (tiny_generator, torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)), hole,
            replace(model_config, num_codes=2), replace(optimizer_config, steps=2, precision="fp32"))


def nan_at_hole(image):
    image = image.clone()
    image[:, 5, 5] = float("nan")  # inside the hole: still refused, it would poison the loss
    return image


BAD_IMAGES = {
    "uint8": (lambda image: (image * 255).to(torch.uint8), "floating-point"),
    "0..255": (lambda image: image * 255, "[0, 255]"),
    "-1..1": (lambda image: image * 2 - 1, "[-1, 1]"),
    "channels-last": (lambda image: image.permute(1, 2, 0).contiguous(), "[3, 16, 16]"),
    "batch": (lambda image: image[None], "[3, 16, 16]"),
    "nan": (nan_at_hole, "NaN"),
}


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_library_refuses_images_in_the_wrong_dtype_range_or_layout(problem, kind):
    prior, image, hole, model_config, optimizer_config = problem
    spoil, message = BAD_IMAGES[kind]
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        optimize.inpaint(prior, spoil(image), hole, model_config, optimizer_config, 0)
    with pytest.raises(ValueError):
        optimize.inpaint_any_size(prior, spoil(image), hole, model_config, optimizer_config, 0)


@pytest.mark.parametrize("spoil, message", [
    (lambda hole: hole * 255, r"\[0, 1\]"),
    (lambda hole: hole - 1, r"\[0, 1\]"),
    (lambda hole: hole.index_put((torch.tensor(0), torch.tensor(0)), torch.tensor(float("nan"))), "NaN"),
])
def test_library_refuses_masks_out_of_range_or_nan(problem, spoil, message):
    prior, image, hole, model_config, optimizer_config = problem
    with pytest.raises(ValueError, match=message):
        optimize.inpaint(prior, image, spoil(hole), model_config, optimizer_config, 0)
    with pytest.raises(ValueError, match=message):
        optimize.inpaint_any_size(prior, image, spoil(hole), model_config, optimizer_config, 0)


def test_bool_masks_and_slight_overshoot_are_accepted(problem):
    prior, image, hole, model_config, optimizer_config = problem
    overshoot = image * 1.1 - 0.05  # bicubic resampling rings like this at hard edges
    result = optimize.inpaint_any_size(prior, overshoot, hole > 0.5, model_config, optimizer_config, 0)
    assert result.composite.min() >= 0 and result.composite.max() <= 1


@pytest.mark.parametrize("changes, message", [
    ({"lr_latent": float("nan")}, "lr_latent"),
    ({"lr_alpha": float("inf")}, "lr_alpha"),
    ({"mse_weight": float("nan")}, "mse_weight"),
    ({"perceptual_weight": float("inf")}, "perceptual_weight"),
    ({"steps": 2.5}, "integer"),
    ({"steps": 10 ** 12}, "steps"),
])
def test_optimizer_config_refuses_non_finite_and_absurd_values(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(optimize.OptimizerConfig(), **changes).validate()


@pytest.mark.parametrize("seed", [-1, 2 ** 64, 1.5, True])
def test_seeds_outside_the_64_bit_range_are_refused(problem, seed):
    prior, image, hole, model_config, optimizer_config = problem
    with pytest.raises(ValueError, match="seed"):
        optimize.inpaint(prior, image, hole, model_config, optimizer_config, seed)
    with pytest.raises(ValueError, match="seed"):
        sample_latents(2, 8, seed)


def test_generate_refuses_nan_latents(tiny_generator):
    with pytest.raises(ValueError, match="NaN"):
        generate(tiny_generator, torch.full((1, 32), float("nan")))


@pytest.mark.parametrize("call, message", [
    (lambda a, b: metrics.psnr((a * 255).to(torch.uint8), (b * 255).to(torch.uint8)), "floating-point"),
    (lambda a, b: metrics.psnr(nan_at_hole(a), b), "NaN"),
    (lambda a, b: metrics.psnr(a * 255, b * 255), r"\[0, 255\]"),
    (lambda a, b: metrics.ssim(a * 2 - 1, b), r"\[0, 1\]"),
    (lambda a, b: metrics.psnr(a, b, data_range=float("nan")), "data_range"),
    (lambda a, b: metrics.measure(a, b, torch.ones(16, 16) * 255), r"\[0, 1\]"),
    (lambda a, b: imaging.composite(a * 255, b, torch.zeros(16, 16)), r"\[0, 255\]"),
    (lambda a, b: imaging.save_image(nan_at_hole(a), "unused.png"), "NaN"),
    (lambda a, b: imaging.resize_mask(torch.full((4, 4), float("nan")), (2, 2)), "NaN"),
])
def test_metrics_and_imaging_refuse_wrong_ranges(call, message):
    a, b = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    with pytest.raises(ValueError, match=message):
        call(a, b)


def test_metrics_accept_another_range_with_its_data_range():
    a, b = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    assert metrics.psnr(a * 255, b * 255, data_range=255) == pytest.approx(metrics.psnr(a, b))


# --- 7: outputs -----------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--out", "--raw-out"])
@pytest.mark.parametrize("kind, message", [
    ("directory", "is a directory"),
    ("unknown_extension", "accepted: .png"),
    ("no_extension", "no extension"),
    ("under_a_file", "is a file"),
    ("name_too_long", "too long"),
    ("unwritable", "cannot write files into /proc"),
])
def test_unusable_output_paths_are_refused_before_any_work(workspace, capsys, option, kind, message):
    path = {"directory": workspace["out"],
            "unknown_extension": workspace["out"] / "result.xyz",
            "no_extension": workspace["out"] / "result",
            "under_a_file": workspace["in"] / "image.png" / "result.png",
            "name_too_long": workspace["out"] / ("x" * 300 + ".png"),
            "unwritable": Path("/proc/ganprior/result.png")}[kind]
    refused(inpaint_args(workspace, **{option: path}), workspace, capsys, message)


@pytest.mark.parametrize("option", ["--out", "--raw-out"])
@pytest.mark.parametrize("input_option", ["--image", "--mask"])
def test_outputs_never_overwrite_an_input(workspace, capsys, option, input_option):
    given = inpaint_args(workspace)
    refused(inpaint_args(workspace, **{option: given[given.index(input_option) + 1]}), workspace,
            capsys, f"is the {input_option} file")


def test_demo_steps_zero_is_refused_not_replaced_by_the_default(workspace, capsys):
    refused(["demo", "--steps", "0", "--out", workspace["out"] / "demo"], workspace, capsys, "steps")


def test_raw_out_must_differ_from_out(workspace, capsys):
    out = workspace["out"] / "result.png"
    refused(inpaint_args(workspace, **{"--raw-out": out}), workspace, capsys, "--out and --raw-out")


@pytest.mark.parametrize("argv, message", [
    (["--count", "2", "--out", "{out}/g.npy"], "--latents"),
    (["--count", "2", "--out", "{out}/g.xyz"], "accepted"),
    (["--count", "2", "--out", "{out}"], "is a directory"),
    (["--count", "0", "--out", "{out}/g.png"], "count"),
    (["--columns", "0", "--out", "{out}/g.png"], "--columns"),
    (["--latents", "{in}/z.npy", "--out", "{in}/image.png/x.npy"], "is a file"),
])
def test_generate_outputs_and_counts_are_checked(workspace, capsys, argv, message):
    argv = [arg.format(out=workspace["out"], **{"in": workspace["in"]}) for arg in argv]
    refused(["generate", workspace["checkpoint"], *argv], workspace, capsys, message)


@pytest.mark.parametrize("destination, message", [
    ("{out}", "is a directory"),
    ("{out}/model.png", ".safetensors"),
    ("{in}/image.png/model.safetensors", "is a file"),
])
def test_convert_refuses_bad_destinations_and_leaves_no_partial_file(workspace, capsys, destination, message):
    destination = destination.format(out=workspace["out"], **{"in": workspace["in"]})
    refused(["convert", workspace["checkpoint"], destination], workspace, capsys, message)


@pytest.mark.parametrize("command", ["demo", "train", "bench"])
def test_output_folder_that_is_a_file_is_refused(workspace, capsys, command):
    extra = {"demo": [], "train": ["--data", "procedural"],
             "bench": ["--checkpoint", workspace["checkpoint"], "--procedural", "2"]}[command]
    refused([command, *extra, "--out", workspace["in"] / "image.png"], workspace, capsys, "is a file")


def test_inpaint_writes_into_new_folders(workspace):
    out = workspace["out"] / "new" / "deeper" / "result.png"
    assert main([str(arg) for arg in inpaint_args(workspace, **{"--out": out})]) == 0
    assert imaging.load_image(out).shape == (3, 20, 28)


def write_half_then_fail(file):
    file.write(b"half")
    raise RuntimeError("disk full")


def test_failed_atomic_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "made" / "result.png"
    with pytest.raises(RuntimeError):
        write_atomically(target, write_half_then_fail)
    assert not (tmp_path / "made").exists()  # the folder it created is gone again
    target.parent.mkdir()
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        write_atomically(target, write_half_then_fail)
    assert target.read_bytes() == b"old" and [p.name for p in target.parent.iterdir()] == ["result.png"]


@pytest.mark.parametrize("kind", ["fifo", "text", "bomb"])
def test_training_folder_with_a_bad_file_is_refused_naming_it(workspace, kind):
    from ganprior_core.lab.train import FolderSource
    folder = workspace["in"] / "training"
    folder.mkdir()
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(folder / "a.png")
    (folder / "b.png").symlink_to(workspace["bad"][kind])
    with pytest.raises(ValueError, match=BAD_FILE_MESSAGES[kind]):
        FolderSource(str(folder), 8)
