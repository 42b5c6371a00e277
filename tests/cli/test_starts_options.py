"""`inpaint --starts K --candidates C`: the best fill at --out, the others beside it, each line
with its seed and agreement; the best is the single run with its seed; bad values refused."""
from __future__ import annotations

import re

import pytest
import torch

from ganprior_core import imaging
from ganprior_core.checkpoints import save_generator
from ganprior_core.cli import candidate_path
from tests.cli_harness import assert_refused, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = ["--preset", "paper", "--codes", "2", "--steps", "30", "--precision", "fp32", "--compile", "off",
       "--freeze-g1-at", "8"]


@pytest.fixture
def files(tmp_path, tiny_prior):
    checkpoint = tmp_path / "tiny.safetensors"
    save_generator(tiny_prior, checkpoint)
    torch.manual_seed(0)
    image = torch.rand(3, 16, 20)
    hole = torch.zeros(16, 20)
    hole[4:10, 6:14] = 1
    imaging.save_image(image, tmp_path / "in.png")
    imaging.save_mask(hole, tmp_path / "mask.png")
    return {"checkpoint": checkpoint, "image": tmp_path / "in.png", "mask": tmp_path / "mask.png",
            "out": tmp_path / "out.png", "root": tmp_path}


def _inpaint(files, *options):
    return run_cli(["inpaint", "--checkpoint", files["checkpoint"], "--image", files["image"],
                    "--mask", files["mask"], "--out", files["out"], *RUN, *options])


def test_candidates_are_written_best_first_and_the_best_is_its_seeds_single_run(files, tmp_path):
    code, out, err = _inpaint(files, "--starts", "3", "--choose-at", "10", "--candidates", "2",
                              "--seed", "4", "--log-every", "5")
    assert code == 0, err
    second = candidate_path(str(files["out"]), 2)
    assert second.endswith("out_candidate2.png") and imaging.load_image(second).shape == (3, 16, 20)
    written = re.findall(r"wrote (\S+) .*seed (\d+), agreement ([\d.]+) dB \(of 3 starts\)", out)
    assert [line[0] for line in written] == [str(files["out"]), second]
    assert float(written[0][2]) >= float(written[1][2])
    assert re.search(r"^start [123]/3  step \d+/30  loss", out, re.MULTILINE)
    best_seed = written[0][1]
    alone = dict(files, out=tmp_path / "alone.png")
    code, _, err = _inpaint(alone, "--seed", best_seed)
    assert code == 0, err
    assert torch.equal(imaging.load_image(files["out"]), imaging.load_image(tmp_path / "alone.png"))


@pytest.mark.parametrize("options, expected", [
    (["--starts", "0"], "starts"), (["--starts", "2", "--candidates", "3"], "cannot exceed starts"),
    (["--choose-at", "0"], "choose_at")])
def test_bad_starts_are_refused_in_one_line_before_any_work(files, options, expected):
    argv = ["inpaint", "--checkpoint", files["checkpoint"], "--image", files["image"],
            "--mask", files["mask"], "--out", files["out"], *RUN, *options]
    assert_refused(argv, [files["root"]], expected)


def test_a_candidate_file_that_would_overwrite_an_input_is_refused(files, tmp_path):
    clash = tmp_path / "x_candidate2.png"
    imaging.save_image(torch.rand(3, 16, 20), clash)
    argv = ["inpaint", "--checkpoint", files["checkpoint"], "--image", clash, "--mask", files["mask"],
            "--out", tmp_path / "x.png", *RUN, "--starts", "3", "--candidates", "2"]
    assert_refused(argv, [files["root"]], "candidate 2")


def test_starts_side_by_side_choose_the_same_seeds(files, tmp_path):
    apart = dict(files, out=tmp_path / "apart.png")
    code, out_apart, err = _inpaint(apart, "--starts", "3", "--choose-at", "10", "--seed", "4",
                                    "--vectorize", "loop")
    assert code == 0, err
    code, out_together, err = _inpaint(files, "--starts", "3", "--choose-at", "10", "--seed", "4",
                                       "--vectorize", "vmap")
    assert code == 0, err
    seed = re.compile(r"wrote \S+ .*seed (\d+)")
    assert seed.findall(out_together) == seed.findall(out_apart) != []
    difference = imaging.load_image(files["out"]) - imaging.load_image(tmp_path / "apart.png")
    assert difference.abs().max() <= 2 / 255  # vmap sums in another order: float rounding
