import copy
import json
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
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    settings = dict(resolution=8, channels=(8, 8), latent_dim=8, images_per_phase=(8, 8),
                    final_stable_images=None,
                    batch_sizes=(4, 4), precision="fp32", output_dir=str(tmp_path / "run"),
                    log_every=1000, sample_every=1000, checkpoint_every=1000, seed=5)
    settings.update(overrides)
    return TrainConfig(**settings)


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def assert_same_state(a: Trainer, b: Trainer) -> None:
    for name in ("generator", "discriminator", "smoothed_generator"):
        state_a, state_b = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), f"{name}.{key}"
    assert (a.phase_index, a.phase_images, a.images_seen) == (b.phase_index, b.phase_images,
                                                              b.images_seen)


def test_schedule_has_one_4x4_phase_then_fade_and_stabilise_per_resolution(tmp_path):
    config = tiny_config(tmp_path, resolution=16, channels=(8, 8, 8), images_per_phase=(4, 8, 12),
                         batch_sizes=(4, 4, 4))
    assert config.phases() == [(0, False, 4), (1, True, 8), (1, False, 8), (2, True, 12),
                               (2, False, 12)]
    assert config.total_images == 44
    config.final_stable_images = 20
    assert config.phases()[-1] == (2, False, 20) and config.total_images == 52


def test_config_refuses_a_batch_size_per_resolution_mismatch(tmp_path):
    with pytest.raises(ValueError, match="batch_sizes"):
        tiny_config(tmp_path, batch_sizes=(4,))


def test_a_step_changes_g_and_gs_follows_as_a_moving_average(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
    smoothed_before = parameters(trainer.smoothed_generator)
    generator_before = parameters(trainer.generator)
    losses = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    beta = trainer.config.ema_beta
    generator_after = parameters(trainer.generator)
    changed = [key for key in generator_after
               if not torch.equal(generator_after[key], generator_before[key])]
    assert "generator.layers.0.conv.weight" in changed
    for key, smoothed in parameters(trainer.smoothed_generator).items():
        expected = beta * smoothed_before[key] + (1 - beta) * generator_after[key]
        torch.testing.assert_close(smoothed, expected, rtol=0, atol=1e-6)


def test_fade_in_at_alpha_zero_is_exactly_the_upsampled_lower_resolution(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
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


def test_same_seed_trains_identically_and_another_seed_does_not(tmp_path):
    runs = []
    for seed, folder in ((5, "a"), (5, "b"), (6, "c")):
        trainer = Trainer(tiny_config(tmp_path, seed=seed, output_dir=str(tmp_path / folder)))
        for _ in range(3):
            trainer.train_step()
        runs.append(trainer)
    assert_same_state(runs[0], runs[1])
    assert not torch.equal(runs[0].generator.generator.to_rgb.weight,
                           runs[2].generator.generator.to_rgb.weight)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    # 12 of 24 images: stops inside the fade-in, after an optimiser reset and with RNGs in use.
    uninterrupted = Trainer(tiny_config(tmp_path, output_dir=str(tmp_path / "whole")))
    uninterrupted.run()
    first = Trainer(tiny_config(tmp_path, output_dir=str(tmp_path / "split")))
    first.run(stop_at_images=12)
    resumed = Trainer(tiny_config(tmp_path, output_dir=str(tmp_path / "split")))
    resumed.load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert resumed.images_seen == 12 and 0 < resumed.alpha < 1
    resumed.run()
    assert uninterrupted.finished and resumed.finished
    assert_same_state(uninterrupted, resumed)


def test_a_finished_run_continues_when_its_last_phase_is_lengthened(tmp_path):
    longer = dict(final_stable_images=16)
    uninterrupted = Trainer(tiny_config(tmp_path, output_dir=str(tmp_path / "whole"), **longer))
    uninterrupted.run()
    first = Trainer(tiny_config(tmp_path, output_dir=str(tmp_path / "split")))
    first.run()
    assert first.finished and first.images_seen == 24
    continued = Trainer(tiny_config(tmp_path, output_dir=str(tmp_path / "split"), **longer))
    continued.load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert not continued.finished and continued.phase_images == 8
    continued.run()
    assert_same_state(uninterrupted, continued)


def test_resume_refuses_a_schedule_that_rewrites_phases_already_run(tmp_path):
    first = Trainer(tiny_config(tmp_path))
    first.run(stop_at_images=20)  # inside the 8x8 stabilise phase (images 16-24)
    changed = Trainer(tiny_config(tmp_path, images_per_phase=(4, 8)))
    with pytest.raises(ValueError, match="phases that have already run cannot change"):
        changed.load_checkpoint(tmp_path / "run" / "checkpoint.pt")


def test_train_saves_gs_as_a_plain_generator_and_resumes_a_finished_run(tmp_path):
    config = tiny_config(tmp_path)
    path = train(config)
    loaded = load_generator(path)
    assert type(loaded) is PGGANGenerator and loaded.config == config.network_config()
    reference = Trainer(config)
    reference.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    z = torch.randn(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), reference.smoothed_generator(z, 1), rtol=0, atol=1e-5)
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
    trainer = Trainer(tiny_config(tmp_path, precision="bf16"))
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
    trainer = Trainer(tiny_config(tmp_path, resolution=16, channels=(16, 16, 16),
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


def test_trainer_generator_without_lower_to_rgb_is_the_saved_network():
    grown = GrowingGenerator(tiny_config(Path("unused")).network_config())
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
