"""`generate` and `inpaint` on a StyleGAN2 prior, read from real files: this project's
.safetensors and a stylegan2-ada-pytorch network pickle (built as NVIDIA's code writes one, with
the pickle structure in tests/stylegan2_builders.py)."""
import numpy as np
import pytest
import torch

from ganprior_core import imaging
from ganprior_core.checkpoints import save_generator
from ganprior_core.cli import main
from tests.conftest import tiny_stylegan2
from tests.stylegan2_builders import dumps, generator_kwargs, sg2ada_snapshot


@pytest.fixture
def sg2():
    return tiny_stylegan2()


@pytest.fixture(params=["safetensors", "sg2ada-pickle"])
def checkpoint(request, tmp_path, sg2):
    if request.param == "safetensors":
        path = tmp_path / "sg2.safetensors"
        save_generator(sg2, path)
        return path
    state = {name: value.clone() for name, value in sg2.state_dict().items()}
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


def test_generate_z_and_w_plus_codes_with_truncation_and_noise(tmp_path, checkpoint, sg2):
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    with torch.no_grad():
        ws = sg2.mapping(torch.from_numpy(z))
        code, images = _generate(tmp_path, checkpoint, z)
        assert code == 0 and images.dtype == np.float32 and images.shape == (3, 3, 16, 16)
        np.testing.assert_allclose(images, sg2(torch.from_numpy(z)).numpy(), atol=1e-6)
        code, images = _generate(tmp_path, checkpoint, ws.numpy(), "--truncation", "0.5",
                                 "--noise", "none")
        expected = sg2.synthesis(sg2.mapping(torch.from_numpy(z), truncation_psi=0.5), noise_mode="none")
        np.testing.assert_allclose(images, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 9), (3, 5, 8), (3, 6, 7)])
def test_generate_refuses_wrong_shapes_with_one_line(tmp_path, checkpoint, sg2, capsys, shape):
    code, _ = _generate(tmp_path, checkpoint, np.zeros(shape, np.float32))
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert "z codes [N, 8] or w+ codes [N, 6, 8]" in error and f"got {list(shape)}" in error


def test_generate_grid_and_inpaint_on_stylegan2(tmp_path, checkpoint, sg2):
    assert main(["generate", str(checkpoint), "--count", "2", "--out", str(tmp_path / "g.png")]) == 0
    image = torch.rand(3, 20, 12)
    hole = torch.zeros(20, 12)
    hole[5:12, 3:9] = 1
    imaging.save_image(image, tmp_path / "in.png")
    imaging.save_mask(hole, tmp_path / "mask.png")
    before = checkpoint.read_bytes()
    assert main(["inpaint", "--checkpoint", str(checkpoint), "--image", str(tmp_path / "in.png"),
                 "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out.png"),
                 "--preset", "paper", "--steps", "4", "--codes", "2", "--stop", "fixed",
                 "--precision", "fp32", "--compile", "off"]) == 0
    original, result = imaging.load_image(tmp_path / "in.png"), imaging.load_image(tmp_path / "out.png")
    assert result.shape == original.shape
    assert torch.equal(result[:, hole == 0], original[:, hole == 0])
    assert checkpoint.read_bytes() == before


def test_inpaint_takes_the_stylegan2_choices_and_a_pggan_prior_refuses_them(tmp_path, checkpoint, capsys):
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
    assert main(["inpaint", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out.png"),
                 *common]) == 0
    assert (tmp_path / "out.png").is_file()
    pggan = tmp_path / "pggan.safetensors"
    save_generator(PGGANGenerator(PGGANConfig(16, (8, 8, 8), latent_dim=8)), pggan)
    capsys.readouterr()
    assert main(["inpaint", "--checkpoint", str(pggan), "--out", str(tmp_path / "p.png"), *common]) == 2
    assert "StyleGAN2 priors only" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
