import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from ganprior_core import imaging, metrics
from ganprior_core.checkpoints import load_generator, save_generator
from ganprior_core.cli import main
from tests.conftest import ROOT


@pytest.fixture
def checkpoint(tmp_path, tiny_generator):
    path = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator, path)
    return path


def test_generate_raw_latents_match_the_generator(tmp_path, checkpoint, tiny_generator):
    latents = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    np.save(tmp_path / "z.npy", latents)
    assert main(["generate", str(checkpoint), "--latents", str(tmp_path / "z.npy"),
                 "--out", str(tmp_path / "x.npy")]) == 0
    images = np.load(tmp_path / "x.npy")
    assert images.dtype == np.float32 and images.shape == (3, 3, 16, 16)
    with torch.no_grad():
        expected = tiny_generator(torch.from_numpy(latents)).numpy()
    np.testing.assert_allclose(images, expected, atol=1e-6)


def test_generate_seeded_grid_is_deterministic(tmp_path, checkpoint):
    for name in ("a.png", "b.png"):
        assert main(["generate", str(checkpoint), "--seed", "4", "--count", "6", "--columns", "3",
                     "--out", str(tmp_path / name)]) == 0
    first, second = imaging.load_image(tmp_path / "a.png"), imaging.load_image(tmp_path / "b.png")
    assert first.shape == (3, 2 * 16 + 2, 3 * 16 + 4)  # 2 rows x 3 columns with 2-pixel gaps
    assert torch.equal(first, second)


def test_inpaint_keeps_known_pixels_at_any_size(tmp_path, checkpoint):
    image = torch.rand(3, 20, 28)
    hole = torch.zeros(20, 28)
    hole[5:12, 8:20] = 1
    imaging.save_image(image, tmp_path / "in.png")
    imaging.save_mask(hole, tmp_path / "mask.png")
    code = main(["inpaint", "--checkpoint", str(checkpoint), "--image", str(tmp_path / "in.png"),
                 "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out.png"),
                 "--preset", "mganprior", "--steps", "5", "--codes", "2", "--precision", "fp32"])
    assert code == 0
    original, result = imaging.load_image(tmp_path / "in.png"), imaging.load_image(tmp_path / "out.png")
    assert result.shape == original.shape
    known = hole == 0
    assert torch.equal(result[:, known], original[:, known])
    assert not torch.equal(result[:, ~known], original[:, ~known])


def test_metrics_command_prints_the_library_values(tmp_path, capsys):
    a, b = torch.rand(3, 24, 24), torch.rand(3, 24, 24)
    hole = torch.zeros(24, 24)
    hole[6:18, 6:18] = 1
    imaging.save_image(a, tmp_path / "a.png")
    imaging.save_image(b, tmp_path / "b.png")
    imaging.save_mask(hole, tmp_path / "m.png")
    assert main(["metrics", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--mask", str(tmp_path / "m.png")]) == 0
    text = capsys.readouterr().out
    a8, b8 = imaging.load_image(tmp_path / "a.png"), imaging.load_image(tmp_path / "b.png")
    printed = [float(v) for v in re.findall(r"PSNR ([\d.]+) dB", text)]
    assert printed == pytest.approx([metrics.psnr(a8, b8), metrics.psnr(a8, b8, hole)], abs=0.006)


def test_convert_round_trip_and_errors(tmp_path, checkpoint, tiny_generator, capsys):
    assert main(["convert", str(checkpoint), str(tmp_path / "copy.safetensors")]) == 0
    copy = load_generator(tmp_path / "copy.safetensors")
    for name, value in tiny_generator.state_dict().items():
        assert torch.equal(copy.state_dict()[name], value)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    assert main(["generate", str(tmp_path / "junk.pth"), "--out", str(tmp_path / "g.png")]) == 2
    assert "junk.pth" in capsys.readouterr().err


def test_module_entry_point_help():
    completed = subprocess.run([sys.executable, "-m", "ganprior_core", "inpaint", "--help"],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and "--preset" in completed.stdout


def test_a_name_the_console_cannot_encode_does_not_fail_a_run_that_succeeded(tmp_path, checkpoint):
    """stdout in a legacy encoding (cp1252: Windows with the output redirected) and a non-Latin
    --out: the file is written, and printing its name must not turn success into an error."""
    out = tmp_path / "фасад.png"
    completed = subprocess.run([sys.executable, "-m", "ganprior_core", "generate", str(checkpoint),
                                "--count", "1", "--out", str(out)], cwd=ROOT, capture_output=True,
                               timeout=120, env={**os.environ, "PYTHONIOENCODING": "cp1252"})
    assert completed.returncode == 0, completed.stderr
    assert out.is_file() and b"\\u0444" in completed.stdout and not completed.stderr


def test_every_option_says_what_it_does_and_its_default():
    import argparse

    from ganprior_core.cli import build_parser
    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{label} has no help text"
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in action.help, f"{label}'s help does not give its default"
