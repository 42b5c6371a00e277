"""`bench --task sr` and `bench --task colorize` (ganprior_core/lab/bench.py): the presets run
`restore` on the degraded image, DIP fits through the same operator, the natural baselines
(bicubic upscaling, the gray image) take the fills' place, whole-image scores, refusals, and
folders that never mix tasks."""
import contextlib
import csv
import io
import json
import math

import pytest
import torch.nn.functional as F

from ganprior_core import imaging, metrics
from ganprior_core.cli import main
from ganprior_core.lab.bench import BenchConfig
from ganprior_core.method.degradations import luma
from ganprior_core.networks.pggan import PGGANConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = 3


def _run(arguments):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["bench", *arguments])
    return code, stdout.getvalue(), stderr.getvalue()


def _arguments(checkpoint, out, *task):
    return ["--checkpoint", str(checkpoint), "--procedural", "2", "--steps", "3", "--stop", "fixed",
            "--precision", "fp32", "--seed", str(SEED), "--threads", "1", "--log-every", "2",
            *task, "--out", str(out)]


def _rows(out):
    with open(out / "results.csv", newline="") as stream:
        return {(row["image"], row["method"]): row for row in csv.DictReader(stream)}


@pytest.fixture(scope="module")
def sr_run(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("sr") / "out"
    code, stdout, stderr = _run(_arguments(checkpoint, out, "--task", "sr", "--scale", "2",
                                           "--methods", "paper,single-z,dip,mean-fill"))
    assert code == 0, stderr
    return out


@pytest.fixture(scope="module")
def colorize_run(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("colorize") / "out"
    code, stdout, stderr = _run(_arguments(checkpoint, out, "--task", "colorize",
                                           "--methods", "single-z,gray"))
    assert code == 0, stderr
    return out


def _assert_complete(out, methods):
    rows = _rows(out)
    images = {image for image, _ in rows}
    assert len(images) == 2
    assert set(rows) == {(image, method) for image in images for method in methods}
    for row in rows.values():
        assert math.isfinite(float(row["psnr"])) and 0 < float(row["ssim"]) <= 1
        assert row["psnr_hole"] == "" and row["ssim_hole"] == ""
        assert row["psnr_fit_known"] != ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert not (out / "masks").exists()
    return rows


def test_sr_rows_are_complete_with_finite_whole_image_scores(sr_run):
    rows = _assert_complete(sr_run, ("paper", "single-z", "dip", "bicubic"))
    assert all(row["steps"] == "3" for (_, method), row in rows.items() if method != "bicubic")
    report = (sr_run / "report.md").read_text()
    assert report.startswith("# Benchmark: sr ×2, 2 images, 4 methods")
    assert "super-resolution ×2: the input is the ground truth downsampled by 2 with the `area`" in report
    assert "`dip` left out" not in report and "`mean-fill` left out" in report
    assert (sr_run / "figure.png").is_file()
    claim = json.loads((sr_run / "run.json").read_text())
    assert (claim["task"], claim["scale"], claim["downsampler"], claim["gray"]) == ("sr", 2, "area", False)


def test_sr_gan_results_agree_with_the_input_and_the_baseline_is_bicubic_by_hand(sr_run):
    rows = _rows(sr_run)
    name = "000-seed10000000"
    truth = imaging.load_image(sr_run / "images" / f"{name}.png")
    low = F.avg_pool2d(truth[None], 2)
    upscaled = F.interpolate(low, scale_factor=2, mode="bicubic", align_corners=False)[0].clamp(0, 1)
    expected = metrics.measure(upscaled, truth)
    row = rows[(name, "bicubic")]
    assert float(row["psnr"]) == expected.psnr and float(row["ssim"]) == expected.ssim
    saved = imaging.load_image(sr_run / "results" / name / "bicubic.png")
    assert (saved - upscaled).abs().max() <= 0.5 / 255 + 1e-6
    # restore's area projection: the saved result (8-bit) downsamples to the input
    # and DIP's, fitted through the same operator and projected the same way
    for method in ("paper", "dip"):
        result = imaging.load_image(sr_run / "results" / name / f"{method}.png")
        assert (F.avg_pool2d(result[None], 2) - low).abs().max() <= 0.5 / 255 + 1e-5
        assert float(rows[(name, method)]["psnr"]) != expected.psnr


def test_colorize_rows_are_complete_and_the_gray_baseline_is_the_luma_by_hand(colorize_run):
    rows = _assert_complete(colorize_run, ("single-z", "gray"))
    name = "001-seed10000001"
    truth = imaging.load_image(colorize_run / "images" / f"{name}.png")
    gray = luma(truth[None])[0].clamp(0, 1).expand(3, -1, -1)
    expected = metrics.measure(gray, truth)
    row = rows[(name, "gray")]
    assert float(row["psnr"]) == expected.psnr and float(row["ssim"]) == expected.ssim
    assert float(row["psnr_fit_known"]) > 100  # the gray image's luma is the input
    # the GAN result keeps the input's luma (to 8-bit rounding of the saved result)
    result = imaging.load_image(colorize_run / "results" / name / "single-z.png")
    assert (luma(result[None]) - luma(truth[None])).abs().max() <= 1 / 255
    report = (colorize_run / "report.md").read_text()
    assert "colorization: the input is the ground truth's BT.601 luma" in report
    assert "whether the GAN methods beat the baseline `gray`" in report


def test_other_task_settings_refuse_the_folder(sr_run, checkpoint):
    for task in (["--task", "sr", "--scale", "4"], ["--task", "sr", "--scale", "2", "--gray"],
                 ["--task", "sr", "--scale", "2", "--downsampler", "bicubic"], ["--task", "colorize"]):
        code, _, stderr = _run(_arguments(checkpoint, sr_run, *task, "--methods", "paper"))
        assert code == 2 and "differs in:" in stderr, (task, stderr)


def test_gray_sr_runs_with_its_bicubic_baseline_of_the_luma(checkpoint, tmp_path):
    out = tmp_path / "graysr"
    code, _, stderr = _run(["--checkpoint", str(checkpoint), "--procedural", "1", "--task", "sr",
                            "--scale", "4", "--downsampler", "bicubic", "--gray", "--methods", "bicubic",
                            "--out", str(out)])
    assert code == 0, stderr
    truth = imaging.load_image(out / "images" / "000-seed10000000.png")
    low = F.interpolate(luma(truth[None]), size=(4, 4), mode="bicubic", antialias=True,
                        align_corners=False).clamp(0, 1)  # luma, then downsampled
    upscaled = F.interpolate(low.expand(1, 3, 4, 4), scale_factor=4, mode="bicubic",
                             align_corners=False)[0].clamp(0, 1)
    row = _rows(out)[("000-seed10000000", "bicubic")]
    assert float(row["psnr"]) == metrics.measure(upscaled, truth).psnr


@pytest.mark.parametrize("problem, message", [
    (["--scale", "2"], "--scale goes with --task sr"),
    (["--task", "colorize", "--downsampler", "area"], "--downsampler goes with --task sr"),
    (["--task", "colorize", "--gray"], "--gray goes with --task sr"),
    (["--task", "sr"], "--task sr needs --scale F"),
    (["--task", "sr", "--scale", "1"], "--scale must be an integer of at least 2"),
    (["--task", "sr", "--scale", "3"], "--scale 3 does not suit the prior's 16x16 images"),
    (["--task", "sr", "--scale", "16", "--downsampler", "bicubic"], "does not suit"),
    (["--task", "colorize", "--masks", "box"], "--masks goes with --task inpaint"),
    (["--task", "sr", "--scale", "2", "--mask-area", "0.2"], "--mask-area goes with --task inpaint"),
    (["--methods", "bicubic"], "`bicubic` is the baseline of --task sr"),
    (["--task", "sr", "--scale", "2", "--methods", "gray"], "`gray` is the baseline of --task colorize"),
])
def test_bad_task_combinations_are_refused_before_out_exists(checkpoint, tmp_path, problem, message):
    out = tmp_path / "never"
    code, _, stderr = _run(["--checkpoint", str(checkpoint), "--procedural", "1", *problem,
                            "--out", str(out)])
    assert code == 2 and message in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_inpaint_settings_are_unchanged_for_old_folders(checkpoint):
    """An inpaint or reconstruct claim holds no sr keys, and --masks left out is `box`."""
    config = BenchConfig(str(checkpoint), "unused", procedural=1)
    prior = PGGANConfig(16, (32, 32, 16), latent_dim=32)
    settings = config.settings_that_change_results("digest", prior)
    assert settings["masks"] == "box"
    assert not {"scale", "downsampler", "gray"} & set(settings)
