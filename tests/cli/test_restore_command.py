"""`restore`: super-resolution, colorization and their combination with a hole, each result
consistent with the input it was given; candidates and --raw-out as inpaint's; refusals in one
line before any work; inpaint unchanged beside it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganprior_core import cli, imaging
from ganprior_core.method.degradations import luma
from tests.cli_harness import FAST, refused, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def restore_argv(ws, *options, image=None, out=None):
    return ["restore", *FAST, "--checkpoint", ws["checkpoint"],
            "--image", image or ws["in"] / "image.png", "--out", out or ws["out"] / "result.png",
            *options]


def read(path) -> torch.Tensor:
    return imaging.read_image(path).pixels


def test_super_resolution_writes_an_image_scale_times_larger_that_downsamples_to_the_input(ws):
    code, out, err = run_cli(restore_argv(ws, "--scale", "2", "--raw-out", ws["out"] / "raw.png"))
    assert code == 0, err
    image, result = read(ws["in"] / "image.png"), read(ws["out"] / "result.png")
    assert result.shape == (3, 40, 56) and read(ws["out"] / "raw.png").shape == (3, 40, 56)
    # Consistent to within the 8-bit rounding of the written file.
    assert (F.avg_pool2d(result[None], 2)[0] - image).abs().max() <= 1 / 255
    assert "56x40" in out and "consistent with the input" in out


def test_colorization_keeps_the_inputs_luma_and_says_a_colour_input_was_converted(ws):
    code, out, err = run_cli(restore_argv(ws, "--gray"))
    assert code == 0, err
    image, result = read(ws["in"] / "image.png"), read(ws["out"] / "result.png")
    assert result.shape == image.shape
    assert (luma(result[None]) - luma(image[None])).abs().max() <= 1 / 255
    assert "note: the input has colour" in out


def test_gray_super_resolution_with_a_hole_in_one_run_and_two_candidates(ws):
    code, out, err = run_cli(restore_argv(ws, "--gray", "--scale", "2", "--mask", ws["in"] / "mask.png",
                                          "--starts", "2", "--candidates", "2", "--choose-at", "1"))
    assert code == 0, err
    image = read(ws["in"] / "image.png")
    known = imaging.load_mask(ws["in"] / "mask.png") == 0
    for path in (ws["out"] / "result.png", ws["out"] / "result_candidate2.png"):
        result = read(path)
        assert result.shape == (3, 40, 56)
        down = F.avg_pool2d(luma(result[None]), 2)[0, 0]
        assert (down[known] - luma(image[None])[0, 0][known]).abs().max() <= 1 / 255


@pytest.mark.parametrize("options, expected", [
    (["--scale", "0"], "--scale must be a positive integer"),
    (["--scale", "1.5"], "--scale must be a positive integer"),
    (["--scale", "two"], "--scale must be a positive integer"),
    ([], "nothing to restore"),
    (["--scale", "3000"], "over the"),
])
def test_bad_restorations_are_refused_in_one_line_before_any_work(ws, options, expected):
    refused(restore_argv(ws, *options), ws, expected)


def test_an_output_its_format_cannot_hold_is_refused(ws):
    thin = ws["in"] / "thin.png"
    imaging.save_image(torch.rand(3, 8, 600), thin)
    refused(restore_argv(ws, "--scale", "30", image=thin, out=ws["out"] / "result.webp"), ws,
            "WEBP", "--out")


def test_inpaint_is_still_there_unchanged(ws):
    code, out, err = run_cli(["inpaint", *FAST, "--checkpoint", ws["checkpoint"], "--image",
                              ws["in"] / "image.png", "--mask", ws["in"] / "mask.png", "--out",
                              ws["out"] / "filled.png"])
    assert code == 0, err
    image, filled = read(ws["in"] / "image.png"), read(ws["out"] / "filled.png")
    known = imaging.load_mask(ws["in"] / "mask.png") == 0
    assert torch.equal(filled[:, known], image[:, known])


def test_a_folder_is_restored_together_as_its_images_one_at_a_time(photos, monkeypatch):
    """An --image folder with a --mask folder, in groups of 2 and 1 (memory for two): every
    result is the single restore of its image with seed + i, byte for byte."""
    out = photos["out"] / "sr"
    with monkeypatch.context() as patched:
        patched.setattr(cli, "batch_size_that_fits", lambda *args, **kwargs: 2)
        code, stdout, err = run_cli(["restore", *FAST, "--checkpoint", photos["checkpoint"],
                                     "--seed", "11", "--scale", "2", "--image", photos["photos"],
                                     "--mask", photos["masks"], "--out", out])
    assert code == 0, err
    assert "note: 3 images run 2 at a time" in stdout
    assert sorted(path.name for path in out.iterdir()) == photos["names"]
    for index, name in enumerate(photos["names"]):
        alone = photos["out"] / f"alone_{name}"
        mask = photos["masks"] / name.replace(".jpg", ".png")
        code, _, err = run_cli(restore_argv(photos, "--seed", str(11 + index), "--scale", "2",
                                            "--mask", mask, image=photos["photos"] / name,
                                            out=alone))
        assert code == 0, err
        assert (out / name).read_bytes() == alone.read_bytes(), name
    refused(["restore", *FAST, "--checkpoint", photos["checkpoint"], "--gray", "--image",
             photos["photos"], "--out", out / "x.png"], photos, "must be a folder")
