import numpy as np
import pytest
import torch

from ganprior_core.checkpoints import save_generator
from ganprior_core.cli import main
from ganprior_core.lab import procedural, swd
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
from ganprior_core.networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator

FAST = swd.SWDConfig(neighbourhoods_per_image=64, directions_per_repeat=64, repeats=2)


@pytest.fixture(scope="module")
def real_sets():
    return (procedural.facade_batch(procedural.evaluation_seeds(32)),
            procedural.facade_batch(procedural.evaluation_seeds(32, offset=32)))


def test_one_dimensional_sets_give_the_wasserstein_distance():
    # In 1-D every unit direction is +-1, so SWD is W1: the mean gap of the sorted points.
    a = np.array([[0.0], [3.0], [1.0], [2.0]], np.float32)
    b = a + 1.5
    distance = swd.sliced_wasserstein(a, b, directions_per_repeat=8, repeats=3,
                                      rng=np.random.default_rng(0))
    assert distance == pytest.approx(1.5, abs=1e-6)


def test_identical_sets_score_zero(real_sets):
    assert swd.swd_per_scale(real_sets[0], real_sets[0], config=FAST) == {64: 0.0, 32: 0.0, 16: 0.0}


def test_distorted_sets_score_above_the_real_floor(real_sets):
    reals, others = real_sets
    floor = swd.swd_per_scale(reals, others, config=FAST)
    noisy = swd.swd_per_scale(reals, (others + 0.1 * torch.randn(others.shape,
                                      generator=torch.Generator().manual_seed(0))), config=FAST)
    blurred = swd.swd_per_scale(reals, torch.nn.functional.avg_pool2d(others, 3, 1, 1),
                                config=FAST)
    assert list(floor) == [64, 32, 16]
    assert all(value > 0 for value in floor.values())
    assert noisy[64] > 3 * floor[64] and blurred[64] > 1.5 * floor[64]


def test_seed_repeats_exactly(real_sets):
    reals, others = real_sets
    assert (swd.swd_per_scale(reals, others, seed=3, config=FAST)
            == swd.swd_per_scale(reals, others, seed=3, config=FAST))


def test_laplacian_pyramid_reconstructs_the_image(real_sets):
    images = real_sets[0][:4]
    pyramid = swd.laplacian_pyramid(images, 3)
    assert [level.shape[-1] for level in pyramid] == [64, 32, 16]
    rebuilt = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        rebuilt = band + swd.pyramid_up(rebuilt)
    torch.testing.assert_close(rebuilt, images, atol=1e-5, rtol=0)


def test_pyramid_filter_keeps_constant_images():
    flat = torch.full((1, 3, 16, 16), 0.25)
    torch.testing.assert_close(swd.pyramid_down(flat), torch.full((1, 3, 8, 8), 0.25))
    torch.testing.assert_close(swd.pyramid_up(flat), torch.full((1, 3, 32, 32), 0.25))


def test_unequal_sets_are_refused(real_sets):
    with pytest.raises(ValueError, match="equal size"):
        swd.swd_per_scale(real_sets[0], real_sets[1][:16])


def test_generator_swd_scores_the_seeded_samples_against_the_reals(real_sets):
    torch.manual_seed(3)
    generator = PGGANGenerator(PGGANConfig(64, (16, 16, 8, 8, 8), latent_dim=16)).eval()
    latents = torch.randn(32, 16, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        samples = ((generator(latents).clamp(-1, 1) + 1) / 2)
    expected = swd.swd_per_scale(real_sets[0], samples, seed=7, config=FAST)
    assert swd.generator_swd(generator, real_sets[0], seed=7, config=FAST) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match=r"\[N, 3, 64, 64\]"):
        swd.generator_swd(generator, real_sets[0][:, :, :32, :32])


def test_generator_swd_samples_a_stylegan2_with_its_constant_noise(real_sets):
    torch.manual_seed(4)
    generator = StyleGAN2Generator(StyleGAN2Config(64, (8, 8, 8, 8, 8), z_dim=12, w_dim=8,
                                                   mapping_layers=1)).eval()
    z = torch.randn(32, 12, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        samples = (generator(z, noise_mode="const").clamp(-1, 1) + 1) / 2
    expected = swd.swd_per_scale(real_sets[0], samples, seed=5, config=FAST)
    assert swd.generator_swd(generator, real_sets[0], seed=5, config=FAST) == pytest.approx(expected, abs=1e-6)


def test_swd_command_prints_every_scale_and_refuses_a_prior_of_another_size(tmp_path, capsys):
    assert main(["swd", "--floor", "--procedural", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "SWD x1e3, 8 real vs 8 other real (the floor):"
    expected = swd.swd_per_scale(procedural.facade_batch(procedural.evaluation_seeds(8)),
                                 procedural.facade_batch(procedural.evaluation_seeds(8, offset=8)))
    for line, (resolution, distance) in zip(lines[1:], expected.items()):
        assert line.split() == [str(resolution), "px", f"{distance:.2f}"]
    small = tmp_path / "small.safetensors"
    save_generator(PGGANGenerator(PGGANConfig(16, (8, 8, 8), latent_dim=8)), small)
    assert main(["swd", "--checkpoint", str(small), "--procedural", "8"]) == 2
    assert "64x64" in capsys.readouterr().err
