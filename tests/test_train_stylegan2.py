import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from ganprior_core.checkpoints import load_generator
from ganprior_core.lab.train_stylegan2 import (
    ResidualDiscriminator,
    StyleGAN2TrainConfig,
    StyleGAN2Trainer,
    discriminator_loss,
    generator_loss,
    r1_penalty,
    train,
)
from ganprior_core.networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from ganprior_core.optimize import inpaint, preset


def tiny_config(tmp_path, **overrides) -> StyleGAN2TrainConfig:
    settings = dict(resolution=8, channels=(8, 8), z_dim=8, w_dim=8, mapping_layers=2,
                    batch_size=4, total_images=24, r1_every=2, precision="fp32",
                    output_dir=str(tmp_path / "run"), log_every=1000, sample_every=1000,
                    checkpoint_every=1000, seed=5)
    settings.update(overrides)
    return StyleGAN2TrainConfig(**settings)


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def assert_same_state(a: StyleGAN2Trainer, b: StyleGAN2Trainer) -> None:
    for name in ("generator", "discriminator", "ema_generator"):
        state_a, state_b = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), f"{name}.{key}"
    assert (a.images_seen, a.steps) == (b.images_seen, b.steps)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    # 6 steps with R1 every 2: the split after step 3 falls between two R1 steps.
    uninterrupted = StyleGAN2Trainer(tiny_config(tmp_path, output_dir=str(tmp_path / "whole")))
    uninterrupted.run()
    first = StyleGAN2Trainer(tiny_config(tmp_path, output_dir=str(tmp_path / "split")))
    first.run(stop_at_images=12)
    resumed = StyleGAN2Trainer(tiny_config(tmp_path, output_dir=str(tmp_path / "split")))
    resumed.load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert resumed.images_seen == 12 and resumed.steps == 3
    resumed.run()
    assert uninterrupted.finished and resumed.finished and resumed.images_seen == 24
    assert_same_state(uninterrupted, resumed)
    assert torch.equal(uninterrupted.torch_rng.get_state(), resumed.torch_rng.get_state())


def test_same_seed_trains_identically_and_another_seed_does_not(tmp_path):
    runs = []
    for seed, folder in ((5, "a"), (5, "b"), (6, "c")):
        trainer = StyleGAN2Trainer(tiny_config(tmp_path, seed=seed, output_dir=str(tmp_path / folder)))
        for _ in range(3):
            trainer.train_step()
        runs.append(trainer)
    assert_same_state(runs[0], runs[1])
    weight = "synthesis.b8.conv1.weight"
    assert not torch.equal(runs[0].generator.state_dict()[weight],
                           runs[2].generator.state_dict()[weight])


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
    trainer = StyleGAN2Trainer(tiny_config(tmp_path, r1_every=3, r1_gamma=0.5))
    r1 = [trainer.train_step()["r1"] for _ in range(5)]
    assert calls == [0.5, 0.5]  # steps 0 and 3
    assert r1[0] == r1[1] == r1[2] != r1[3] == r1[4]  # the progress line shows the last one


def test_an_r1_step_adds_r1_every_times_the_mean_penalty_to_the_d_loss(tmp_path, monkeypatch):
    import ganprior_core.lab.train_stylegan2 as module
    # With the logistic loss replaced by 0, D's gradient on an R1 step is r1_every * grad mean(R1).
    monkeypatch.setattr(module, "discriminator_loss", lambda real, fake: (real * 0).sum())
    trainer = StyleGAN2Trainer(tiny_config(tmp_path, r1_every=3, r1_gamma=0.5))
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
    trainer = StyleGAN2Trainer(tiny_config(tmp_path, ema_images=40, ema_rampup=None))
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
    trainer = StyleGAN2Trainer(tiny_config(tmp_path))  # ema_rampup 0.05: half-life 0 at image 0
    assert trainer.ema_beta() == 0.0
    trainer.train_step()
    for key, value in parameters(trainer.ema_generator).items():
        assert torch.equal(value, trainer.generator.state_dict()[key]), key
    assert trainer.ema_beta() == pytest.approx(0.5 ** (4 / (4 * 0.05)))


def test_w_avg_tracks_the_running_mean_of_w(tmp_path):
    trainer = StyleGAN2Trainer(tiny_config(tmp_path, style_mixing=0.0))
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
    trainer = StyleGAN2Trainer(tiny_config(tmp_path, precision="bf16", r1_gamma=1.0))
    before = parameters(trainer.discriminator)
    losses = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    assert losses["r1"] > 0
    after = parameters(trainer.discriminator)
    assert not torch.equal(before["epilogue_conv.weight"], after["epilogue_conv.weight"])
    assert all(value.dtype == torch.float32 for value in after.values())


def test_config_refuses_settings_it_cannot_run(tmp_path):
    with pytest.raises(ValueError, match="channel"):
        tiny_config(tmp_path, channels=(8, 8, 8))
    with pytest.raises(ValueError, match="--style-mixing"):
        tiny_config(tmp_path, style_mixing=1.5)
    with pytest.raises(ValueError, match="--batch-size"):
        tiny_config(tmp_path, batch_size=6)
    with pytest.raises(ValueError, match="--precision"):
        tiny_config(tmp_path, precision="fp16")


def test_resume_refuses_other_settings_and_a_pggan_checkpoint(tmp_path):
    StyleGAN2Trainer(tiny_config(tmp_path)).run(stop_at_images=4)
    with pytest.raises(ValueError, match="seed"):
        StyleGAN2Trainer(tiny_config(tmp_path, seed=9)).load_checkpoint(
            tmp_path / "run" / "checkpoint.pt")
    from ganprior_core.lab.train import TrainConfig, Trainer
    pggan = TrainConfig(resolution=8, channels=(8, 8), latent_dim=8, images_per_phase=(4, 4),
                        final_stable_images=None, batch_sizes=(4, 4), precision="fp32",
                        output_dir=str(tmp_path / "pggan"))
    with pytest.raises(ValueError, match="stylegan2 training run"):
        Trainer(pggan).load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    Trainer(pggan).run(stop_at_images=4)
    with pytest.raises(ValueError, match="pggan training run.*--arch pggan"):
        StyleGAN2Trainer(tiny_config(tmp_path)).load_checkpoint(
            tmp_path / "pggan" / "checkpoint.pt")


def test_the_saved_file_is_g_ema_and_inpaints_through_the_normal_method(tmp_path):
    config = tiny_config(tmp_path, resolution=16, channels=(8, 8, 8), total_images=8)
    path = train(config)
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
