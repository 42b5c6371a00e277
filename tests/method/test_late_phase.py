"""The late phase: after `freeze_g1_at` steps the codes and G1 are frozen and their features kept,
so later steps run only the fusion, G2 and the loss (OptimizerConfig.freeze_g1_at)."""
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from ganprior_core.families import PGGAN
from ganprior_core.method import cost
from ganprior_core.method.multi_latent import MultiLatentConfig, MultiLatentModel
from ganprior_core.networks.pggan import PGGANConfig
from ganprior_core.optimize import OptimizerConfig, inpaint, preset
from tests.tiny_priors import inpainting_problem

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = OptimizerConfig(steps=8, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                       schedule="constant", perceptual_weight=0.0, precision="fp32", preview_every=2,
                       stop="fixed", freeze_g1_at=3)
PAPER_LIKE = MultiLatentConfig(num_codes=3, split_layer=3, finetune="all")


def _capture_models(monkeypatch) -> list[MultiLatentModel]:
    models: list[MultiLatentModel] = []
    original = MultiLatentModel.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        models.append(self)
    monkeypatch.setattr(MultiLatentModel, "__init__", spy)
    return models


def test_kept_features_are_what_g1_computes_and_g1_stops_training(tiny_prior):
    prior, split = tiny_prior, 3
    model = MultiLatentModel(prior, replace(PAPER_LIKE, split_layer=split), seed=0)
    assert model.trains_after_freezing_g1()
    model.freeze_g1()
    with torch.no_grad():
        frozen = model()
        kept, model.frozen_g1_features = model.frozen_g1_features, None
        recomputed = model()
    assert torch.equal(frozen, recomputed)
    assert not model.latents.requires_grad
    assert not any(p.requires_grad for p in model.adapter.g1_parameters(split))
    assert all(p.requires_grad for p in model.adapter.g2_parameters(split))
    assert model.alpha.requires_grad and model.beta.requires_grad
    model.frozen_g1_features = kept
    model().square().mean().backward()
    assert model.latents.grad is None and model.alpha.grad is not None


def test_the_run_is_the_papers_until_the_freeze_then_only_g2_and_weights_move(tiny_generator, monkeypatch):
    image, hole = inpainting_problem(tiny_generator)
    models = _capture_models(monkeypatch)
    frozen = inpaint(tiny_generator, image, hole, PAPER_LIKE, FAST, seed=2)
    paper = inpaint(tiny_generator, image, hole, PAPER_LIKE, replace(FAST, freeze_g1_at=None), seed=2)
    assert frozen.g1_frozen_at == 3 and paper.g1_frozen_at is None
    assert "codes and G1 frozen from step 3" in frozen.describe_stop()
    # Steps 0-2 are the same computation; from the freeze on, the runs part.
    assert frozen.loss_history[:4] == paper.loss_history[:4]
    assert frozen.loss_history[4:] != paper.loss_history[4:]
    # After the freeze the codes and G1 keep the values of step 3: the frozen run's codes are
    # those of a 3-step paper run.
    three = inpaint(tiny_generator, image, hole, PAPER_LIKE, replace(FAST, steps=3, freeze_g1_at=None), seed=2)
    assert three.loss_history == paper.loss_history[:3]
    frozen_model, _, three_model = models
    assert torch.equal(frozen_model.latents, three_model.latents)
    g1 = [name for name, _ in frozen_model.generator.named_parameters() if name.startswith("layers.0.")]
    for name in g1:
        assert torch.equal(frozen_model.generator.get_parameter(name), three_model.generator.get_parameter(name))
    assert not torch.equal(frozen_model.alpha, three_model.alpha)
    assert not torch.equal(frozen_model.generator.to_rgb.weight, three_model.generator.to_rgb.weight)


def test_same_seed_same_result_cancel_and_prior_untouched_with_the_late_phase(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    before = {k: v.clone() for k, v in tiny_generator.state_dict().items()}
    flags = [p.requires_grad for p in tiny_generator.parameters()]
    first = inpaint(tiny_generator, image, hole, PAPER_LIKE, FAST, seed=4)
    second = inpaint(tiny_generator, image, hole, PAPER_LIKE, FAST, seed=4)
    assert torch.equal(first.output, second.output) and first.loss_history == second.loss_history

    def cancel(progress):
        if progress.step == 5:  # inside the late phase
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        inpaint(tiny_generator, image, hole, PAPER_LIKE, FAST, seed=4, callback=cancel)
    assert all(torch.equal(before[k], v) for k, v in tiny_generator.state_dict().items())
    assert [p.requires_grad for p in tiny_generator.parameters()] == flags


def test_auto_stop_works_across_the_freeze(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    config = replace(FAST, steps=400, stop="auto", freeze_g1_at=30)
    result = inpaint(tiny_generator, image, hole, PAPER_LIKE, config, seed=1)
    assert result.g1_frozen_at == 30 and result.steps_run > 30
    assert result.best_step is not None and result.best_step <= result.steps_run


@pytest.mark.parametrize("name", ["mganprior", "single-z"])
def test_runs_that_keep_g1_frozen_never_freeze_their_codes(tiny_generator, name):
    model_config, optimizer_config = preset(name, tiny_generator.config)
    image, hole = inpainting_problem(tiny_generator)
    config = replace(optimizer_config, steps=6, stop="fixed", precision="fp32", freeze_g1_at=2)
    result = inpaint(tiny_generator, image, hole, model_config, config, seed=0)
    assert result.g1_frozen_at is None


def test_a_freeze_at_or_after_the_last_step_changes_nothing(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    late = inpaint(tiny_generator, image, hole, PAPER_LIKE, replace(FAST, freeze_g1_at=8), seed=0)
    never = inpaint(tiny_generator, image, hole, PAPER_LIKE, replace(FAST, freeze_g1_at=None), seed=0)
    assert late.g1_frozen_at is None and torch.equal(late.output, never.output)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "100"])
def test_bad_freeze_steps_are_refused(bad):
    with pytest.raises(ValueError, match="freeze_g1_at"):
        replace(FAST, freeze_g1_at=bad).validate()


@pytest.mark.usefixtures("requires_compiler")
def test_compiled_late_phase_matches_eager(tiny_generator):
    image, hole = inpainting_problem(tiny_generator, seed=3)
    config = MultiLatentConfig(num_codes=2, split_layer=3, use_alpha=False)  # its own compiled key
    eager = inpaint(tiny_generator, image, hole, config, replace(FAST, steps=5), seed=0)
    compiled = inpaint(tiny_generator, image, hole, config, replace(FAST, steps=5, compile=True), seed=0)
    assert compiled.g1_frozen_at == 3 and not any("eagerly" in note for note in compiled.notes)
    assert compiled.loss_history == pytest.approx(eager.loss_history, rel=1e-5)
    torch.testing.assert_close(compiled.output, eager.output, atol=1e-5, rtol=0)


def test_estimated_work_drops_g1_after_the_freeze():
    generator = PGGANConfig(64, (64, 64, 32, 16, 8), latent_dim=16)

    def step_tflop(codes, include_g1=True):
        model = SimpleNamespace(generator=SimpleNamespace(config=generator), family=PGGAN,
                                config=MultiLatentConfig(num_codes=codes, split_layer=6))
        return cost.estimated_step_tflop(model, None, include_g1)
    g1_per_code = step_tflop(2) - step_tflop(1)
    assert g1_per_code > 0
    # A frozen step is a step with no G1 at all: full(N) = N * G1 + G2.
    assert step_tflop(30, include_g1=False) == pytest.approx(step_tflop(1) - g1_per_code)
    model = SimpleNamespace(generator=SimpleNamespace(config=generator), family=PGGAN,
                            config=MultiLatentConfig(num_codes=30, split_layer=6))
    run = cost.estimated_run_tflop(model, None, 500, freeze_at=100)
    assert run == pytest.approx(100 * step_tflop(30) + 400 * step_tflop(30, include_g1=False))
    assert cost.estimated_run_tflop(model, None, 500) == pytest.approx(500 * step_tflop(30))


def test_cli_takes_a_step_count_or_never_and_refuses_anything_else(tmp_path, tiny_generator, capsys):
    from ganprior_core import imaging
    from ganprior_core.checkpoints import save_generator
    from ganprior_core.cli import build_parser, main
    parser = build_parser()
    for command in (["inpaint", "--checkpoint", "c", "--image", "i", "--out", "o"],
                    ["bench", "--checkpoint", "c", "--procedural", "1", "--out", "o"]):
        assert parser.parse_args(command).freeze_g1_at == OptimizerConfig().freeze_g1_at
        assert parser.parse_args([*command, "--freeze-g1-at", "never"]).freeze_g1_at is None
        assert parser.parse_args([*command, "--freeze-g1-at", "40"]).freeze_g1_at == 40
    save_generator(tiny_generator, tmp_path / "tiny.safetensors")
    image, hole = inpainting_problem(tiny_generator)
    imaging.save_image(image, tmp_path / "in.png")
    imaging.save_mask(hole, tmp_path / "mask.png")
    base = ["inpaint", "--checkpoint", str(tmp_path / "tiny.safetensors"), "--image", str(tmp_path / "in.png"),
            "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out.png"), "--codes", "2",
            "--precision", "fp32", "--stop", "fixed", "--steps", "6"]
    for bad in ("0", "-3", "soon"):
        with pytest.raises(SystemExit) as refused:
            main([*base, "--freeze-g1-at", bad])
        assert refused.value.code == 2
        assert "expected a number of steps (at least 1) or 'never'" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()
    assert main([*base, "--freeze-g1-at", "3"]) == 0
    assert "codes and G1 frozen from step 3" in capsys.readouterr().out
