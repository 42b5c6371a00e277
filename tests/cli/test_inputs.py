"""Careless and hostile input to the commands: every bad file, number or setting is exit code 2 with
one `error:` line naming the problem, no traceback, nothing written and no input changed
(tests.cli_harness.assert_refused); odd but usable inputs run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganprior_core.cli import main
from tests.cli_harness import BAD_FILE_MESSAGES, assert_refused, inpaint_argv, refused
from tests.vgg_builders import hostile_vgg_files


@pytest.mark.parametrize("option", ["--image", "--mask"])
@pytest.mark.parametrize("kind", sorted(BAD_FILE_MESSAGES))
def test_inpaint_refuses_a_bad_image_or_mask_file_naming_it(bad_ws, option, kind):
    bad_file = bad_ws["bad"][kind]
    line = refused(inpaint_argv(bad_ws, **{option: bad_file}), bad_ws,
                   BAD_FILE_MESSAGES[kind])
    assert str(bad_file) in line


@pytest.mark.parametrize("option", ["--checkpoint", "--vgg"])
def test_inpaint_refuses_a_model_file_that_is_a_pipe(bad_ws, option):
    refused([*inpaint_argv(bad_ws, **{option: bad_ws["bad"]["fifo"]})], bad_ws,
            "not a regular file")


@pytest.mark.parametrize("kind", ["fifo", "text", "bomb"])
def test_metrics_refuses_a_bad_file(bad_ws, kind):
    refused(["metrics", bad_ws["bad"][kind], bad_ws["in"] / "image.png"], bad_ws,
            BAD_FILE_MESSAGES[kind])


def test_thin_image_inpaints_through_the_cli_with_pad(ws, capsys):
    image = np.random.default_rng(1).integers(0, 256, (10, 600, 3), dtype=np.uint8)
    hole = np.zeros((10, 600), np.uint8)
    hole[3:8, 250:350] = 255
    Image.fromarray(image).save(ws["in"] / "thin.png")
    Image.fromarray(hole).save(ws["in"] / "thin_mask.png")
    out = ws["out"] / "thin.png"
    assert main([str(arg) for arg in inpaint_argv(
        ws, **{"--image": ws["in"] / "thin.png", "--mask": ws["in"] / "thin_mask.png",
                      "--out": out, "--fit": "pad"})]) == 0
    assert "covers the whole image" not in capsys.readouterr().out
    result = np.asarray(Image.open(out))
    assert np.array_equal(result[hole == 0], image[hole == 0])
    assert not np.array_equal(result[hole > 0], image[hole > 0])


def test_tiny_image_is_refused(ws):
    Image.fromarray(np.full((1, 1, 3), 100, np.uint8)).save(ws["in"] / "dot.png")
    refused(inpaint_argv(ws, **{"--image": ws["in"] / "dot.png", "--mask": None}),
            ws, "1x1", "too small")


@pytest.mark.parametrize("option", ["--lr-latent", "--lr-alpha", "--lr-beta", "--lr-generator",
                                    "--mse-weight", "--perceptual-weight"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_non_finite_or_negative_rates_and_weights_are_refused(ws, option, value):
    refused([*inpaint_argv(ws), f"{option}={value}"], ws,
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
def test_bad_settings_are_refused(ws, options, message):
    refused([*inpaint_argv(ws), *options], ws, message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["inpaint", "generate", "demo"])
def test_cuda_without_cuda_is_a_clear_error(ws, command):
    argv = {"inpaint": inpaint_argv(ws),
            "generate": ["generate", ws["checkpoint"], "--out", ws["out"] / "g.png"],
            "demo": ["demo", "--out", ws["out"] / "demo"]}[command]
    refused([*argv, "--device", "cuda"], ws, "not available")


@pytest.mark.parametrize("latents, message", [
    (np.full((2, 32), np.nan, np.float32), "NaN"),
    (np.ones((2, 32), np.int64), "floating-point"),
    (np.ones((2, 32), np.complex64), "floating-point"),
    (np.ones(32, np.float32), "[N, 32]"),
    (np.ones((2, 7), np.float32), "[N, 32]"),
    (np.ones((0, 32), np.float32), "N must be in 1"),
    (np.array([{"code": 1}, None], dtype=object), "numeric .npy"),
])
def test_generate_refuses_bad_latents(ws, latents, message):
    np.save(ws["in"] / "bad.npy", latents, allow_pickle=True)
    refused(["generate", ws["checkpoint"], "--latents", ws["in"] / "bad.npy",
             "--out", ws["out"] / "x.npy"], ws, message)


def test_generate_refuses_a_latents_fifo(bad_ws):
    refused(["generate", bad_ws["checkpoint"], "--latents", bad_ws["bad"]["fifo"],
             "--out", bad_ws["out"] / "x.npy"], bad_ws, "not a regular file")


def test_inpaint_with_a_hostile_vgg_file_is_one_error_line(ws, tmp_path):
    files = hostile_vgg_files(tmp_path)
    for name in ("huge-header.safetensors", "payload.pth", "truncated.pth"):
        assert_refused(inpaint_argv(ws, **{"--vgg": files[name][0]}), [ws["root"]], name)


def test_identical_16_bit_images_score_infinite_psnr(tmp_path, capsys):
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(tmp_path / name)
    assert main(["metrics", str(tmp_path / "a.png"), str(tmp_path / "b.png")]) == 0
    assert "PSNR inf dB" in capsys.readouterr().out
