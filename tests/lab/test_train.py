"""The trainers: the PGGAN (lab/train.py: progressive growing, WGAN-GP, the moving average Gs) and
the StyleGAN2 (lab/train_stylegan2.py: non-saturating loss, lazy R1, G_ema), each resuming exactly
where it stopped and saving the network the method loads."""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open

from ganprior_core.checkpoints import load_generator
from ganprior_core.imaging import load_image
from ganprior_core.lab.train import FolderSource, GrowingGenerator, TrainConfig, Trainer, minibatch_stddev, train
from ganprior_core.lab.train_stylegan2 import (
    ResidualDiscriminator,
    StyleGAN2TrainConfig,
    StyleGAN2Trainer,
    discriminator_loss,
    generator_loss,
    r1_penalty,
)
from ganprior_core.lab.train_stylegan2 import train as train_stylegan2
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
from ganprior_core.networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from ganprior_core.optimize import inpaint, preset
from tests.cli_harness import BAD_FILE_MESSAGES

pytestmark = pytest.mark.usefixtures("one_thread")


def pggan_config(tmp_path, **overrides) -> TrainConfig:
    settings = dict(resolution=8, channels=(8, 8), latent_dim=8, images_per_phase=(8, 8),
                    final_stable_images=None,
                    batch_sizes=(4, 4), precision="fp32", output_dir=str(tmp_path / "run"),
                    log_every=1000, sample_every=1000, checkpoint_every=1000, seed=5)
    settings.update(overrides)
    return TrainConfig(**settings)


def stylegan2_config(tmp_path, **overrides) -> StyleGAN2TrainConfig:
    settings = dict(resolution=8, channels=(8, 8), z_dim=8, w_dim=8, mapping_layers=2,
                    batch_size=4, total_images=24, r1_every=2, precision="fp32",
                    output_dir=str(tmp_path / "run"), log_every=1000, sample_every=1000,
                    checkpoint_every=1000, seed=5)
    settings.update(overrides)
    return StyleGAN2TrainConfig(**settings)


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def assert_same_pggan_state(a: Trainer, b: Trainer) -> None:
    for name in ("generator", "discriminator", "ema_generator"):
        state_a, state_b = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), f"{name}.{key}"
    assert (a.phase_index, a.phase_images, a.images_seen) == (b.phase_index, b.phase_images,
                                                              b.images_seen)


def assert_same_stylegan2_state(a: StyleGAN2Trainer, b: StyleGAN2Trainer) -> None:
    for name in ("generator", "discriminator", "ema_generator"):
        state_a, state_b = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), f"{name}.{key}"
    assert (a.images_seen, a.steps) == (b.images_seen, b.steps)


# Each trainer: (its class, its tiny configuration, its state check, one generator weight).
TRAINERS = {
    "pggan": (Trainer, pggan_config, assert_same_pggan_state,
              lambda trainer: trainer.generator.generator.to_rgb.weight),
    "stylegan2": (StyleGAN2Trainer, stylegan2_config, assert_same_stylegan2_state,
                  lambda trainer: trainer.generator.state_dict()["synthesis.b8.conv1.weight"]),
}


@pytest.mark.parametrize("arch", sorted(TRAINERS))
def test_same_seed_trains_identically_and_another_seed_does_not(tmp_path, arch):
    trainer_class, config, assert_same_state, weight = TRAINERS[arch]
    runs = []
    for seed, folder in ((5, "a"), (5, "b"), (6, "c")):
        trainer = trainer_class(config(tmp_path, seed=seed, output_dir=str(tmp_path / folder)))
        for _ in range(3):
            trainer.train_step()
        runs.append(trainer)
    assert_same_state(runs[0], runs[1])
    assert not torch.equal(weight(runs[0]), weight(runs[2]))


# ---------------------------------------------------------------------------------------------
# The PGGAN trainer


def test_schedule_has_one_4x4_phase_then_fade_and_stabilise_per_resolution(tmp_path):
    config = pggan_config(tmp_path, resolution=16, channels=(8, 8, 8), images_per_phase=(4, 8, 12),
                         batch_sizes=(4, 4, 4))
    assert config.phases() == [(0, False, 4), (1, True, 8), (1, False, 8), (2, True, 12),
                               (2, False, 12)]
    assert config.total_images == 44
    config.final_stable_images = 20
    assert config.phases()[-1] == (2, False, 20) and config.total_images == 52


def test_config_refuses_a_batch_size_per_resolution_mismatch(tmp_path):
    with pytest.raises(ValueError, match="batch_sizes"):
        pggan_config(tmp_path, batch_sizes=(4,))


def test_a_step_changes_g_and_gs_follows_as_a_moving_average(tmp_path):
    trainer = Trainer(pggan_config(tmp_path))
    smoothed_before = parameters(trainer.ema_generator)
    generator_before = parameters(trainer.generator)
    losses = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    beta = trainer.config.ema_beta
    generator_after = parameters(trainer.generator)
    changed = [key for key in generator_after
               if not torch.equal(generator_after[key], generator_before[key])]
    assert "generator.layers.0.conv.weight" in changed
    for key, smoothed in parameters(trainer.ema_generator).items():
        expected = beta * smoothed_before[key] + (1 - beta) * generator_after[key]
        torch.testing.assert_close(smoothed, expected, rtol=0, atol=1e-6)


def test_fade_in_at_alpha_zero_is_exactly_the_upsampled_lower_resolution(tmp_path):
    trainer = Trainer(pggan_config(tmp_path))
    trainer.run(stop_at_images=8)  # the 4x4 phase is done; the 8x8 fade-in starts
    assert (trainer.level, trainer.alpha) == (1, 0.0)
    G, D = trainer.generator, trainer.discriminator
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lower = G.to_rgb(0)(G.generator.features(z, 2))
        assert torch.equal(G(z, 1, 0.0), F.interpolate(lower, scale_factor=2, mode="nearest"))
        assert not torch.equal(G(z, 1, 0.5), G(z, 1, 0.0))
        images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
        assert torch.equal(D(images, 1, 0.0), D(F.avg_pool2d(images, 2), 0))


def test_pggan_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    # 12 of 24 images: stops inside the fade-in, after an optimiser reset and with RNGs in use.
    uninterrupted = Trainer(pggan_config(tmp_path, output_dir=str(tmp_path / "whole")))
    uninterrupted.run()
    first = Trainer(pggan_config(tmp_path, output_dir=str(tmp_path / "split")))
    first.run(stop_at_images=12)
    resumed = Trainer(pggan_config(tmp_path, output_dir=str(tmp_path / "split")))
    resumed.load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert resumed.images_seen == 12 and 0 < resumed.alpha < 1
    resumed.run()
    assert uninterrupted.finished and resumed.finished
    assert_same_pggan_state(uninterrupted, resumed)


def test_a_finished_run_continues_when_its_last_phase_is_lengthened(tmp_path):
    longer = dict(final_stable_images=16)
    uninterrupted = Trainer(pggan_config(tmp_path, output_dir=str(tmp_path / "whole"), **longer))
    uninterrupted.run()
    first = Trainer(pggan_config(tmp_path, output_dir=str(tmp_path / "split")))
    first.run()
    assert first.finished and first.images_seen == 24
    continued = Trainer(pggan_config(tmp_path, output_dir=str(tmp_path / "split"), **longer))
    continued.load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert not continued.finished and continued.phase_images == 8
    continued.run()
    assert_same_pggan_state(uninterrupted, continued)


def test_resume_refuses_a_schedule_that_rewrites_phases_already_run(tmp_path):
    first = Trainer(pggan_config(tmp_path))
    first.run(stop_at_images=20)  # inside the 8x8 stabilise phase (images 16-24)
    changed = Trainer(pggan_config(tmp_path, images_per_phase=(4, 8)))
    with pytest.raises(ValueError, match="phases that have already run cannot change"):
        changed.load_checkpoint(tmp_path / "run" / "checkpoint.pt")


def test_train_saves_gs_as_a_plain_generator_and_resumes_a_finished_run(tmp_path):
    config = pggan_config(tmp_path)
    path = train(config)
    loaded = load_generator(path)
    assert type(loaded) is PGGANGenerator and loaded.config == config.network_config()
    reference = Trainer(config)
    reference.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    z = torch.randn(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), reference.ema_generator(z, 1), rtol=0, atol=1e-5)
    grid = load_image(tmp_path / "run" / "samples_final.png")
    with torch.no_grad():
        samples = ((reference.samples() + 1) / 2).clamp(0, 1)
    resolution = config.resolution
    assert grid.shape == (3, -(-len(samples) // 8) * resolution, min(8, len(samples)) * resolution)
    torch.testing.assert_close(grid[:, :resolution, :resolution], samples[0], rtol=0, atol=0.5 / 255 + 1e-6)
    before = path.stat().st_mtime_ns
    train(config)  # everything is done already: resumes, trains nothing, writes the same model
    torch.testing.assert_close(load_generator(path).state_dict(), loaded.state_dict())
    assert path.stat().st_mtime_ns >= before


def test_bf16_steps_keep_a_working_gradient_penalty(tmp_path):
    trainer = Trainer(pggan_config(tmp_path, precision="bf16"))
    trainer.run(stop_at_images=8)
    before = parameters(trainer.discriminator)
    losses = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    assert losses["penalty"] > 0
    after = parameters(trainer.discriminator)
    assert not torch.equal(before["final_conv.weight"], after["final_conv.weight"])
    assert all(value.dtype == torch.float32 for value in after.values())


def test_bf16_gradient_norms_match_fp32(tmp_path):
    # The penalty differentiates D's gradient; bf16 convolutions must keep that gradient close.
    trainer = Trainer(pggan_config(tmp_path, resolution=16, channels=(16, 16, 16),
                                  images_per_phase=(4, 4, 4), batch_sizes=(4, 4, 4)))
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    norms = {}
    for precision in ("fp32", "bf16"):
        trainer.config.precision = precision
        mixed = images.clone().requires_grad_(True)
        with trainer._autocast():
            score = trainer.discriminator(mixed, 2).float().sum()
        (grad,) = torch.autograd.grad(score, mixed, create_graph=True)
        norms[precision] = grad.float().flatten(1).norm(dim=1)
        norms[precision].sum().backward()  # the penalty's own backward pass works too
    torch.testing.assert_close(norms["bf16"], norms["fp32"], rtol=0.05, atol=0)


def test_minibatch_stddev_appends_the_group_statistic():
    x = torch.arange(2 * 4 * 1 * 2 * 2, dtype=torch.float32).reshape(8, 1, 2, 2)
    out = minibatch_stddev(x, group=4)
    assert out.shape == (8, 2, 2, 2)
    groups = x.reshape(4, 2, 1, 2, 2)  # sample n belongs to group n % 2
    expected = groups.std(dim=0, unbiased=False).mean(dim=(1, 2, 3))
    torch.testing.assert_close(out[:, 1, 0, 0], expected.repeat(4), rtol=1e-5, atol=1e-5)


def test_folder_source_crops_resizes_and_scales(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (30, 20), (255, 0, 0)).save(folder / "wide.png")
    Image.new("RGB", (12, 40), (0, 0, 255)).save(folder / "tall.jpg")
    source = FolderSource(str(folder), 8)
    batch = source.sample(np.random.default_rng(0), 6)
    assert batch.shape == (6, 3, 8, 8) and batch.min() >= 0 and batch.max() <= 1
    assert {tuple(image[:, 0, 0].round().tolist()) for image in batch} <= {(1, 0, 0), (0, 0, 1)}


@pytest.mark.parametrize("kind", ["fifo", "text", "bomb"])
def test_training_folder_with_a_bad_file_is_refused_naming_it(bad_ws, kind):
    folder = bad_ws["in"] / "training"
    folder.mkdir()
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(folder / "a.png")
    (folder / "b.png").symlink_to(bad_ws["bad"][kind])
    with pytest.raises(ValueError, match=BAD_FILE_MESSAGES[kind]):
        FolderSource(str(folder), 8)


def test_trainer_generator_without_lower_to_rgb_is_the_saved_network():
    grown = GrowingGenerator(pggan_config(Path("unused")).network_config())
    plain = copy.deepcopy(grown.generator)
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(grown(z, 1), plain(z))


def test_cli_train_command_builds_the_config_and_trains(tmp_path):
    from ganprior_core.cli import main

    out = tmp_path / "cli_run"
    assert main(["train", "--data", "procedural", "--resolution", "8", "--channels", "8,8",
                 "--latent-dim", "8", "--images-per-phase", "8,4", "--batch-sizes", "4,4",
                 "--final-stable-images", "4",
                 "--precision", "fp32", "--seed", "3", "--out", str(out)]) == 0
    assert load_generator(out / "generator.safetensors").config == PGGANConfig(8, (8, 8), 8)
    with safe_open(str(out / "generator.safetensors"), "pt") as file:
        header = json.loads(file.metadata()["ganprior"])
    assert header["training"]["images_seen"] == 16 and header["training"]["seed"] == 3


# ---------------------------------------------------------------------------------------------
# The StyleGAN2 trainer


def test_stylegan2_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    # 6 steps with R1 every 2: the split after step 3 falls between two R1 steps.
    uninterrupted = StyleGAN2Trainer(stylegan2_config(tmp_path, output_dir=str(tmp_path / "whole")))
    uninterrupted.run()
    first = StyleGAN2Trainer(stylegan2_config(tmp_path, output_dir=str(tmp_path / "split")))
    first.run(stop_at_images=12)
    resumed = StyleGAN2Trainer(stylegan2_config(tmp_path, output_dir=str(tmp_path / "split")))
    resumed.load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert resumed.images_seen == 12 and resumed.steps == 3
    resumed.run()
    assert uninterrupted.finished and resumed.finished and resumed.images_seen == 24
    assert_same_stylegan2_state(uninterrupted, resumed)
    assert torch.equal(uninterrupted.torch_rng.get_state(), resumed.torch_rng.get_state())


def test_r1_of_a_linear_discriminator_is_gamma_half_norm_squared_and_its_gradient_gamma_v():
    # D(x) = <v, x> + b: grad_x D = v for every sample, so R1 = gamma / 2 * ||v||^2 per sample
    # and d(R1)/dv = gamma * v per sample.
    gamma = 0.7
    v = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v.requires_grad_(True)
    b = torch.tensor(0.3, dtype=torch.float64)
    reals = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64).requires_grad_(True)
    logits = (reals * v).flatten(1).sum(dim=1) + b
    penalty = r1_penalty(logits, reals, gamma)
    expected = gamma / 2 * v.detach().square().sum()
    assert penalty.shape == (5,)
    torch.testing.assert_close(penalty, expected.expand(5).float(), rtol=1e-6, atol=0)
    (gradient,) = torch.autograd.grad(penalty[0], v)
    torch.testing.assert_close(gradient, gamma * v.detach(), rtol=1e-6, atol=1e-7)


def test_r1_of_a_quadratic_discriminator_matches_the_hand_formula():
    # D(x) = sum(x^2) / 2: grad_x D = x, R1 = gamma / 2 * ||x||^2.
    gamma = 2.5
    reals = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    penalty = r1_penalty(reals.square().flatten(1).sum(dim=1) / 2, reals, gamma)
    torch.testing.assert_close(penalty, gamma / 2 * reals.detach().square().flatten(1).sum(dim=1))


def test_r1_runs_lazily_every_r1_every_steps(tmp_path, monkeypatch):
    import ganprior_core.lab.train_stylegan2 as module
    calls = []
    original = module.r1_penalty

    def recording(real_logits, reals, gamma):
        calls.append(gamma)
        return original(real_logits, reals, gamma)

    monkeypatch.setattr(module, "r1_penalty", recording)
    trainer = StyleGAN2Trainer(stylegan2_config(tmp_path, r1_every=3, r1_gamma=0.5))
    r1 = [trainer.train_step()["r1"] for _ in range(5)]
    assert calls == [0.5, 0.5]  # steps 0 and 3
    assert r1[0] == r1[1] == r1[2] != r1[3] == r1[4]  # the progress line shows the last one


def test_an_r1_step_adds_r1_every_times_the_mean_penalty_to_the_d_loss(tmp_path, monkeypatch):
    import ganprior_core.lab.train_stylegan2 as module
    # With the logistic loss replaced by 0, D's gradient on an R1 step is r1_every * grad mean(R1).
    monkeypatch.setattr(module, "discriminator_loss", lambda real, fake: (real * 0).sum())
    trainer = StyleGAN2Trainer(stylegan2_config(tmp_path, r1_every=3, r1_gamma=0.5))
    D = trainer.discriminator
    expected, captured = [], []
    original = module.r1_penalty

    def recording(real_logits, reals, gamma):
        fresh = reals.detach().clone().requires_grad_(True)
        penalty = original(D(fresh), fresh, gamma).mean() * 3
        grads = torch.autograd.grad(penalty, list(D.parameters()), allow_unused=True)
        expected.append([torch.zeros_like(p) if g is None else g  # the output bias: unused
                         for p, g in zip(D.parameters(), grads)])
        return original(real_logits, reals, gamma)

    monkeypatch.setattr(module, "r1_penalty", recording)
    step = trainer.optimizer_d.step
    monkeypatch.setattr(trainer.optimizer_d, "step", lambda: (
        captured.append([p.grad.clone() for p in D.parameters()]), step()))
    trainer.train_step()
    assert len(expected) == 1 and len(captured) == 1
    for got, want in zip(captured[0], expected[0]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)


def test_non_saturating_losses_are_the_softplus_formulas():
    real = torch.tensor([2.0, -1.0, 0.5, 0.0])
    fake = torch.tensor([-3.0, 1.5, 0.25, -0.5])

    def softplus(values):
        return torch.log1p(torch.exp(values))

    torch.testing.assert_close(generator_loss(fake), softplus(-fake).mean())
    torch.testing.assert_close(discriminator_loss(real, fake),
                               softplus(fake).mean() + softplus(-real).mean())
    # ... and equal the logistic cross-entropies they stand for
    torch.testing.assert_close(generator_loss(fake), F.binary_cross_entropy_with_logits(
        fake, torch.ones(4)))


def test_a_step_moves_g_and_g_ema_is_the_specified_moving_average(tmp_path):
    trainer = StyleGAN2Trainer(stylegan2_config(tmp_path, ema_images=40, ema_rampup=None))
    trainer.run(stop_at_images=8)  # the step under test is not the first
    ema_before = parameters(trainer.ema_generator)
    g_before = parameters(trainer.generator)
    beta = trainer.ema_beta()
    assert beta == pytest.approx(0.5 ** (4 / 40))
    losses = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    g_after = parameters(trainer.generator)
    assert not torch.equal(g_after["synthesis.b8.conv1.weight"], g_before["synthesis.b8.conv1.weight"])
    parameter_names = {name for name, _ in trainer.generator.named_parameters()}
    for key, averaged in parameters(trainer.ema_generator).items():
        if key in parameter_names:
            expected = torch.lerp(g_after[key], ema_before[key], beta)
            torch.testing.assert_close(averaged, expected, rtol=0, atol=1e-7)
        else:  # buffers (w_avg, noise_const, filters) are copied from G
            assert torch.equal(averaged, g_after[key]), key


def test_ema_ramp_up_makes_the_first_step_copy_g(tmp_path):
    trainer = StyleGAN2Trainer(stylegan2_config(tmp_path))  # ema_rampup 0.05: half-life 0 at image 0
    assert trainer.ema_beta() == 0.0
    trainer.train_step()
    for key, value in parameters(trainer.ema_generator).items():
        assert torch.equal(value, trainer.generator.state_dict()[key]), key
    assert trainer.ema_beta() == pytest.approx(0.5 ** (4 / (4 * 0.05)))


def test_w_avg_tracks_the_running_mean_of_w(tmp_path):
    trainer = StyleGAN2Trainer(stylegan2_config(tmp_path, style_mixing=0.0))
    mapping = trainer.generator.mapping
    assert torch.equal(mapping.w_avg, torch.zeros(8))
    rng_state = trainer.torch_rng.get_state()
    z = torch.randn(4, 8, generator=trainer.torch_rng)  # the latents the next call draws
    trainer.torch_rng.set_state(rng_state)
    with torch.no_grad():
        expected = mapping(z)[:, 0].mean(dim=0).lerp(torch.zeros(8), 0.995)
        trainer._generate(update_w_avg=True)
    torch.testing.assert_close(mapping.w_avg, expected, rtol=0, atol=1e-7)


def test_discriminator_downsamples_to_4x4_and_gives_one_logit_per_image():
    D = ResidualDiscriminator(32, (16, 16, 8, 8), minibatch_group=2)
    logits = D(torch.randn(6, 3, 32, 32))
    assert logits.shape == (6,)
    shapes = []
    x = D.from_rgb(torch.randn(2, 3, 32, 32))
    for block in D.blocks:
        x = block(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(8, 16, 16), (16, 8, 8), (16, 4, 4)]


def test_bf16_steps_train_with_a_working_r1(tmp_path):
    trainer = StyleGAN2Trainer(stylegan2_config(tmp_path, precision="bf16", r1_gamma=1.0))
    before = parameters(trainer.discriminator)
    losses = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    assert losses["r1"] > 0
    after = parameters(trainer.discriminator)
    assert not torch.equal(before["epilogue_conv.weight"], after["epilogue_conv.weight"])
    assert all(value.dtype == torch.float32 for value in after.values())


def test_bf16_r1_matches_fp32():
    # R1 differentiates D's input gradient; bf16 convolutions must keep that gradient close.
    torch.manual_seed(0)
    D = ResidualDiscriminator(16, (16, 16, 16))
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    penalties = {}
    for precision in ("fp32", "bf16"):
        reals = images.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            penalty = r1_penalty(D(reals), reals, 1.0)
        penalty.sum().backward()  # the penalty's own backward pass works too
        penalties[precision] = penalty.detach()
    # a squared norm: 15% is about 7% of the gradient norm (measured: 8% of the square)
    torch.testing.assert_close(penalties["bf16"], penalties["fp32"], rtol=0.15, atol=0)


def test_stylegan2_config_refuses_settings_it_cannot_run(tmp_path):
    with pytest.raises(ValueError, match="channel"):
        stylegan2_config(tmp_path, channels=(8, 8, 8))
    with pytest.raises(ValueError, match="--style-mixing"):
        stylegan2_config(tmp_path, style_mixing=1.5)
    with pytest.raises(ValueError, match="--batch-size"):
        stylegan2_config(tmp_path, batch_size=6)
    with pytest.raises(ValueError, match="--precision"):
        stylegan2_config(tmp_path, precision="fp16")


def test_stylegan2_resume_refuses_other_settings_and_a_pggan_checkpoint(tmp_path):
    StyleGAN2Trainer(stylegan2_config(tmp_path)).run(stop_at_images=4)
    with pytest.raises(ValueError, match="seed"):
        StyleGAN2Trainer(stylegan2_config(tmp_path, seed=9)).load_checkpoint(
            tmp_path / "run" / "checkpoint.pt")
    from ganprior_core.lab.train import TrainConfig, Trainer
    pggan = TrainConfig(resolution=8, channels=(8, 8), latent_dim=8, images_per_phase=(4, 4),
                        final_stable_images=None, batch_sizes=(4, 4), precision="fp32",
                        output_dir=str(tmp_path / "pggan"))
    with pytest.raises(ValueError, match="stylegan2 training run"):
        Trainer(pggan).load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    Trainer(pggan).run(stop_at_images=4)
    with pytest.raises(ValueError, match="pggan training run.*--arch pggan"):
        StyleGAN2Trainer(stylegan2_config(tmp_path)).load_checkpoint(
            tmp_path / "pggan" / "checkpoint.pt")


def test_the_saved_file_is_g_ema_and_inpaints_through_the_normal_method(tmp_path):
    config = stylegan2_config(tmp_path, resolution=16, channels=(8, 8, 8), total_images=8)
    path = train_stylegan2(config)
    prior = load_generator(path)
    assert type(prior) is StyleGAN2Generator and prior.config == config.network_config()
    reference = StyleGAN2Trainer(config)
    reference.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    saved = reference.ema_generator.state_dict()
    assert prior.state_dict().keys() == saved.keys()
    for key, value in prior.state_dict().items():
        assert torch.equal(value, saved[key]), key
    with torch.no_grad():  # the trainer's copy is channels-last: the same up to rounding
        torch.testing.assert_close(prior(z), reference.ema_generator(z), rtol=0, atol=1e-5)
        assert torch.equal(prior.mapping.w_avg, reference.generator.mapping.w_avg)
    with safe_open(str(path), "pt") as file:
        header = json.loads(file.metadata()["ganprior"])
    assert header["training"]["arch"] == "stylegan2" and header["training"]["images_seen"] == 8
    assert header["training"]["r1_gamma"] == pytest.approx(0.0002 * 16 ** 2 / 4)
    assert (tmp_path / "run" / "samples_final.png").is_file()

    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    hole = torch.zeros(16, 16)
    hole[4:10, 4:10] = 1
    model_config, optimizer_config = preset("paper", prior.config)
    result = inpaint(prior, image, hole, replace(model_config, num_codes=2),
                     replace(optimizer_config, steps=2, stop="fixed", precision="fp32"), seed=0)
    assert result.output.shape == (3, 16, 16) and torch.isfinite(result.output).all()
    assert len(result.loss_history) == 2


def test_cli_trains_a_tiny_stylegan2_and_refuses_pggan_options(tmp_path, capsys):
    from ganprior_core.cli import main

    out = tmp_path / "cli_run"
    tiny = ["train", "--arch", "stylegan2", "--data", "procedural", "--resolution", "8",
            "--channels", "8,8", "--z-dim", "8", "--w-dim", "8", "--batch-size", "4",
            "--total-images", "8", "--precision", "fp32", "--seed", "3", "--threads", "1"]
    assert main([*tiny, "--out", str(out)]) == 0
    assert {"generator.safetensors", "checkpoint.pt", "train_config.json",
            "samples_final.png"} <= {p.name for p in out.iterdir()}
    loaded = load_generator(out / "generator.safetensors")
    assert loaded.config == StyleGAN2Config(8, (8, 8), 8, 8, 2)
    with safe_open(str(out / "generator.safetensors"), "pt") as file:
        training = json.loads(file.metadata()["ganprior"])["training"]
    assert training["images_seen"] == 8 and training["seed"] == 3
    capsys.readouterr()
    assert main([*tiny, "--total-images", "12", "--out", str(out)]) == 0  # continues the run
    assert "resumed from" in capsys.readouterr().out
    with safe_open(str(out / "generator.safetensors"), "pt") as file:
        assert json.loads(file.metadata()["ganprior"])["training"]["images_seen"] == 12

    refused = tmp_path / "refused"
    assert main([*tiny, "--latent-dim", "8", "--out", str(refused)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --latent-dim applies only to --arch pggan")
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not refused.exists()
    assert main(["train", "--data", "procedural", "--r1-gamma", "1", "--out", str(refused)]) == 2
    assert "--r1-gamma applies only to --arch stylegan2" in capsys.readouterr().err
    assert not refused.exists()
