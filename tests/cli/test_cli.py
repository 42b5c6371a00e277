"""The product commands (`generate`, `inpaint`, `metrics`, `convert`) on real files: a tiny prior of
every family saved as this project's .safetensors (`checkpoint`), and StyleGAN2's own choices and
code shapes on its .safetensors and on a stylegan2-ada-pytorch network pickle (built as NVIDIA's code
writes one, with the pickle structure in tests/stylegan2_builders.py)."""
from __future__ import annotations

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
from ganprior_core.families import family_of
from tests.pack_under_test import ROOT
from tests.stylegan2_builders import dumps, generator_kwargs, sg2ada_snapshot
from tests.tiny_priors import tiny_stylegan2


@pytest.fixture
def checkpoint(tmp_path, tiny_prior):
    path = tmp_path / "tiny.safetensors"
    save_generator(tiny_prior, path)
    return path


@pytest.fixture
def sg2_prior():
    """tiny_stylegan2 (the `tiny_prior` of the stylegan2 family)."""
    return tiny_stylegan2()


@pytest.fixture(params=["safetensors", "sg2ada-pickle"])
def sg2_checkpoint(request, tmp_path, sg2_prior):
    if request.param == "safetensors":
        path = tmp_path / "sg2.safetensors"
        save_generator(sg2_prior, path)
        return path
    state = {name: value.clone() for name, value in sg2_prior.state_dict().items()}
    kwargs = generator_kwargs(resolution=16, channel_base=128, channel_max=16, z_dim=8, w_dim=8,
                              mapping_layers=2)
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(dumps(sg2ada_snapshot(state, None, kwargs)))
    return path


def _generate(tmp_path, checkpoint, latents, *options):
    np.save(tmp_path / "codes.npy", latents)
    code = main(["generate", str(checkpoint), "--latents", str(tmp_path / "codes.npy"),
                 "--out", str(tmp_path / "x.npy"), *options])
    return code, (np.load(tmp_path / "x.npy") if code == 0 else None)


def test_generate_raw_latents_match_the_generator(tmp_path, checkpoint, tiny_prior):
    z_dim = family_of(tiny_prior).z_dim(tiny_prior.config)
    latents = np.random.default_rng(0).standard_normal((3, z_dim)).astype(np.float32)
    np.save(tmp_path / "z.npy", latents)
    assert main(["generate", str(checkpoint), "--latents", str(tmp_path / "z.npy"),
                 "--out", str(tmp_path / "x.npy")]) == 0
    images = np.load(tmp_path / "x.npy")
    assert images.dtype == np.float32 and images.shape == (3, 3, 16, 16)
    with torch.no_grad():
        expected = tiny_prior(torch.from_numpy(latents)).numpy()
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


def test_several_images_run_together_and_write_what_each_alone_writes(tmp_path, checkpoint, capsys):
    for index, size in enumerate([(20, 28), (16, 16), (12, 18)]):
        imaging.save_image(torch.rand(3, *size, generator=torch.Generator().manual_seed(index)),
                           tmp_path / f"in{index}.png")
    hole = torch.zeros(20, 28)
    hole[5:12, 8:20] = 1
    imaging.save_mask(hole, tmp_path / "mask.png")  # one mask for all, resized to each image
    run = ["inpaint", "--checkpoint", str(checkpoint), "--mask", str(tmp_path / "mask.png"),
           "--preset", "mganprior", "--steps", "5", "--codes", "2", "--precision", "fp32",
           "--seed", "7"]
    together = [arg for index in range(3) for arg in
                ("--image", str(tmp_path / f"in{index}.png"), "--out", str(tmp_path / f"t{index}.png"))]
    assert main(run + together) == 0
    assert capsys.readouterr().out.count("wrote ") == 3
    for index in range(3):
        alone = ["--image", str(tmp_path / f"in{index}.png"), "--out", str(tmp_path / f"a{index}.png")]
        assert main([*run[:-1], str(7 + index), *alone]) == 0  # image i: seed + i
        assert (tmp_path / f"t{index}.png").read_bytes() == (tmp_path / f"a{index}.png").read_bytes()
    capsys.readouterr()
    images = ["--image", str(tmp_path / "in0.png"), "--image", str(tmp_path / "in1.png")]
    assert main(run + images + ["--out", str(tmp_path / "x.png")]) == 2
    assert "give one --out per --image: 2 --image, 1 --out" in capsys.readouterr().err
    assert main(run + images + ["--out", str(tmp_path / "x.png"), "--out", str(tmp_path / "x.png")]) == 2
    assert "are the same file" in capsys.readouterr().err
    assert main(run + images + ["--out", str(tmp_path / "x.png"), "--out", str(tmp_path / "y.png"),
                                "--starts", "2"]) == 2
    assert "--starts must be 1" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def test_convert_round_trip_and_errors(tmp_path, checkpoint, tiny_prior, capsys):
    assert main(["convert", str(checkpoint), str(tmp_path / "copy.safetensors")]) == 0
    copy = load_generator(tmp_path / "copy.safetensors")
    for name, value in tiny_prior.state_dict().items():
        assert torch.equal(copy.state_dict()[name], value)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    assert main(["generate", str(tmp_path / "junk.pth"), "--out", str(tmp_path / "g.png")]) == 2
    assert "junk.pth" in capsys.readouterr().err


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


def test_module_entry_point_help():
    completed = subprocess.run([sys.executable, "-m", "ganprior_core", "inpaint", "--help"],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and "--preset" in completed.stdout


def test_a_name_the_console_cannot_encode_does_not_fail_a_run_that_succeeded(tmp_path, tiny_generator):
    """stdout in a legacy encoding (cp1252: Windows with the output redirected) and a non-Latin
    --out: the file is written, and printing its name must not turn success into an error."""
    checkpoint = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator, checkpoint)
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


def test_stylegan2_generate_z_and_w_plus_codes_with_truncation_and_noise(tmp_path, sg2_checkpoint, sg2_prior):
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    with torch.no_grad():
        ws = sg2_prior.mapping(torch.from_numpy(z))
        code, images = _generate(tmp_path, sg2_checkpoint, z)
        assert code == 0 and images.dtype == np.float32 and images.shape == (3, 3, 16, 16)
        np.testing.assert_allclose(images, sg2_prior(torch.from_numpy(z)).numpy(), atol=1e-6)
        code, images = _generate(tmp_path, sg2_checkpoint, ws.numpy(), "--truncation", "0.5",
                                 "--noise", "none")
        expected = sg2_prior.synthesis(sg2_prior.mapping(torch.from_numpy(z), truncation_psi=0.5), noise_mode="none")
        np.testing.assert_allclose(images, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 9), (3, 5, 8), (3, 6, 7)])
def test_stylegan2_generate_refuses_wrong_shapes_with_one_line(tmp_path, sg2_checkpoint, sg2_prior, capsys, shape):
    code, _ = _generate(tmp_path, sg2_checkpoint, np.zeros(shape, np.float32))
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert "z codes [N, 8] or w+ codes [N, 6, 8]" in error and f"got {list(shape)}" in error


def test_generate_grid_and_inpaint_on_stylegan2(tmp_path, sg2_checkpoint, sg2_prior):
    assert main(["generate", str(sg2_checkpoint), "--count", "2", "--out", str(tmp_path / "g.png")]) == 0
    image = torch.rand(3, 20, 12)
    hole = torch.zeros(20, 12)
    hole[5:12, 3:9] = 1
    imaging.save_image(image, tmp_path / "in.png")
    imaging.save_mask(hole, tmp_path / "mask.png")
    before = sg2_checkpoint.read_bytes()
    assert main(["inpaint", "--checkpoint", str(sg2_checkpoint), "--image", str(tmp_path / "in.png"),
                 "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out.png"),
                 "--preset", "paper", "--steps", "4", "--codes", "2", "--stop", "fixed",
                 "--precision", "fp32", "--compile", "off"]) == 0
    original, result = imaging.load_image(tmp_path / "in.png"), imaging.load_image(tmp_path / "out.png")
    assert result.shape == original.shape
    assert torch.equal(result[:, hole == 0], original[:, hole == 0])
    assert sg2_checkpoint.read_bytes() == before


def test_inpaint_takes_the_stylegan2_choices_and_a_pggan_prior_refuses_them(tmp_path, sg2_checkpoint, capsys):
    from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
    image = torch.rand(3, 16, 16)
    hole = torch.zeros(16, 16)
    hole[4:10, 4:10] = 1
    imaging.save_image(image, tmp_path / "in.png")
    imaging.save_mask(hole, tmp_path / "mask.png")
    common = ["--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
              "--steps", "3", "--codes", "2", "--stop", "fixed", "--precision", "fp32",
              "--compile", "off", "--latent-space", "z", "--g2-styles", "average",
              "--noise", "optimised"]
    assert main(["inpaint", "--checkpoint", str(sg2_checkpoint), "--out", str(tmp_path / "out.png"),
                 *common]) == 0
    assert (tmp_path / "out.png").is_file()
    pggan = tmp_path / "pggan.safetensors"
    save_generator(PGGANGenerator(PGGANConfig(16, (8, 8, 8), latent_dim=8)), pggan)
    capsys.readouterr()
    assert main(["inpaint", "--checkpoint", str(pggan), "--out", str(tmp_path / "p.png"), *common]) == 2
    assert "StyleGAN2 priors only" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
