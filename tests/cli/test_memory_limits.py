"""A command that would run out of memory is refused, never killed: each runs in a subprocess
limited with RLIMIT_AS (`ulimit -v`), which the memory check reads. A refusal is exit code 2 and
one `error:` line naming the estimate, what is available and what would fit, with nothing written
or left and the user's files byte-identical; the run the refusal suggests then completes under
the same limit."""
from __future__ import annotations

import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganprior_core import bundled_prior_path, imaging
from tests.cli_harness import files_under, no_partials, subprocess_env
from tests.pack_under_test import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="RLIMIT_AS headroom is read from /proc/self/status (Linux)")

FAST = ["--steps", "2", "--stop", "fixed", "--precision", "fp32", "--compile", "off"]
PROBE = ("import json, ganprior_core.cli; from ganprior_core import load_generator, bundled_prior_path; "
         "g = load_generator(bundled_prior_path({family!r})); "
         "print([l for l in open('/proc/self/status') if l.startswith('VmSize')][0].split()[1])")


def address_space_in_use(family: str) -> int:
    """VmSize (bytes) of a process that imported the CLI and loaded the bundled prior: what a
    limited command has mapped when it checks memory, give or take a few MB."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(family=family)], capture_output=True,
                          text=True, cwd=ROOT, env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) * 1024


def run_limited(argv, headroom: int, family: str = "pggan") -> subprocess.CompletedProcess:
    """`python -m ganprior_core argv` with RLIMIT_AS at the address space a command uses before
    its check plus `headroom` bytes."""
    limit = address_space_in_use(family) + int(headroom)

    def limit_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([sys.executable, "-m", "ganprior_core", *map(str, argv)],
                          capture_output=True, text=True, cwd=ROOT, env=subprocess_env(),
                          preexec_fn=limit_address_space, timeout=900)


def assert_refused_in_one_line(done: subprocess.CompletedProcess, *expected: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: not enough memory for "), done.stderr
    assert "Traceback" not in done.stderr
    for text in expected:
        assert re.search(text, lines[0]), lines[0]
    return lines[0]


@pytest.fixture
def folders(tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    return inputs, outputs


def test_inpaint_of_an_image_too_large_is_refused_then_the_size_it_names_runs(folders):
    inputs, outputs = folders
    Image.new("RGB", (6000, 5000), (120, 90, 60)).save(inputs / "big.png")  # 90 MB as floats
    Image.new("L", (6000, 5000), 0).save(inputs / "mask.png")
    before = files_under(inputs, outputs)
    argv = ["inpaint", "--checkpoint", bundled_prior_path("pggan"), "--image", inputs / "big.png",
            "--mask", inputs / "mask.png", "--out", outputs / "out.png", "--codes", "2", *FAST]
    line = assert_refused_in_one_line(run_limited(argv, 1.2e9), r"it needs about \d+\.\d+ GB",
                                      r"in memory, with \d+\.\d+ GB available \(RLIMIT_AS\)",
                                      "6000x5000 image copies",
                                      r"would fit: an image of at most \d+x\d+ pixels")
    assert files_under(inputs, outputs) == before
    no_partials(inputs.parent)
    width, height = (int(v) for v in re.search(r"at most (\d+)x(\d+) pixels", line).groups())
    assert width * height < 6000 * 5000 and abs(width / height - 6000 / 5000) < 0.01

    # The size it names runs under the same limit.
    Image.new("RGB", (width, height), (120, 90, 60)).save(inputs / "fits.png")
    argv[argv.index(inputs / "big.png")] = inputs / "fits.png"
    argv[argv.index(inputs / "mask.png")] = inputs / "fits_mask.png"
    Image.new("L", (width, height), 0).save(inputs / "fits_mask.png")
    done = run_limited(argv, 1.2e9)
    assert done.returncode == 0, done.stderr[-2000:]
    assert imaging.image_size(outputs / "out.png") == (height, width)


def test_inpaint_with_too_many_codes_is_refused_then_the_count_it_names_runs(folders):
    from dataclasses import replace

    from ganprior_core import estimate_run, load_generator, preset
    inputs, outputs = folders
    imaging.save_image(torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)),
                       inputs / "image.png")
    hole = torch.zeros(64, 64)
    hole[20:40, 20:40] = 1
    imaging.save_mask(hole, inputs / "mask.png")
    prior = load_generator(bundled_prior_path("stylegan2"))
    model_config, optimizer_config = preset("paper", prior.config)
    optimizer_config = replace(optimizer_config, precision="fp32", compile=False)

    def needs(codes: int) -> int:
        return estimate_run(prior, replace(model_config, num_codes=codes), optimizer_config,
                            image_size=(64, 64), image_copies=10).total

    headroom = (needs(40) + needs(256)) / 2
    before = files_under(inputs, outputs)
    argv = ["inpaint", "--checkpoint", bundled_prior_path("stylegan2"), "--image", inputs / "image.png",
            "--mask", inputs / "mask.png", "--out", outputs / "out.png", "--codes", "256", *FAST]
    line = assert_refused_in_one_line(run_limited(argv, headroom, "stylegan2"),
                                      r"one step with 256 codes \d+\.\d+ GB",
                                      r"would fit: at most \d+ codes")
    assert files_under(inputs, outputs) == before
    no_partials(inputs.parent)
    fits = int(re.search(r"at most (\d+) codes", line).group(1))
    assert 40 <= fits < 256

    argv[argv.index("256")] = str(fits)
    done = run_limited(argv, headroom, "stylegan2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (outputs / "out.png").is_file()


def test_generate_of_too_many_images_is_refused_then_the_count_it_names_runs(folders):
    _, outputs = folders
    argv = ["generate", bundled_prior_path("pggan"), "--count", "4096", "--out", outputs / "grid.png"]
    line = assert_refused_in_one_line(run_limited(argv, 0.45e9), "generating 4096 images of 64x64",
                                      r"4096 output images \d+\.\d+ GB",
                                      r"would fit: at most \d+ images")
    assert list(outputs.iterdir()) == []
    fits = int(re.search(r"at most (\d+) images", line).group(1))
    assert 1 <= fits < 4096
    argv[argv.index("4096")] = str(fits)
    done = run_limited(argv, 0.45e9)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [path.name for path in outputs.iterdir()] == ["grid.png"]


def test_a_limit_with_room_changes_nothing_the_command_writes(folders):
    """The check reads the limit and lets a run that fits go on: the file it writes is the one
    an unlimited process writes (same seed, same result)."""
    inputs, outputs = folders
    imaging.save_image(torch.rand(3, 40, 30, generator=torch.Generator().manual_seed(1)),
                       inputs / "image.png")
    hole = torch.zeros(40, 30)
    hole[10:20, 5:15] = 1
    imaging.save_mask(hole, inputs / "mask.png")
    argv = ["inpaint", "--checkpoint", bundled_prior_path("pggan"), "--image", inputs / "image.png",
            "--mask", inputs / "mask.png", "--codes", "3", *FAST]
    limited = run_limited([*argv, "--out", outputs / "limited.png"], 2e9)
    assert limited.returncode == 0, limited.stderr[-2000:]
    unlimited = subprocess.run([sys.executable, "-m", "ganprior_core", *map(str, argv), "--out",
                                outputs / "unlimited.png"], capture_output=True, text=True, cwd=ROOT,
                               env=subprocess_env(), timeout=900)
    assert unlimited.returncode == 0, unlimited.stderr[-2000:]
    assert Path(outputs / "limited.png").read_bytes() == Path(outputs / "unlimited.png").read_bytes()
