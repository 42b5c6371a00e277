"""One run of the method (ganprior_core/method/fit.py): what it fits, that it repeats itself, reports
progress, can be cancelled and never touches the prior it was given; on a tiny prior of every family
(`tiny_prior`) where the check is the same, on one family where it is that family's own."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ganprior_core.method.multi_latent import MultiLatentConfig, MultiLatentModel
from ganprior_core.optimize import (
    OptimizerConfig,
    Progress,
    inpaint,
    inpaint_any_size,
    preset,
)
from ganprior_core.sampling import sample_images
from tests.tiny_priors import assert_same_state, inpainting_problem, state_of

FAST = OptimizerConfig(steps=6, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                       schedule="constant", perceptual_weight=0.0, precision="fp32", preview_every=3,
                       stop="fixed")
# What the StyleGAN2 tests ran with: two more steps, never compiled.
SG2_FAST = replace(FAST, steps=8, compile=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_inpaint_fits_is_deterministic_and_leaves_the_prior_alone(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    before = state_of(tiny_prior)
    config = MultiLatentConfig(num_codes=3, split_layer=3)
    first = inpaint(tiny_prior, image, hole, config, replace(SG2_FAST, steps=25), seed=0)
    assert first.loss_history[-1] < 0.5 * first.loss_history[0]
    again = inpaint(tiny_prior, image, hole, config, replace(SG2_FAST, steps=25), seed=0)
    assert torch.equal(first.output, again.output) and first.loss_history == again.loss_history
    other = inpaint(tiny_prior, image, hole, config, replace(SG2_FAST, steps=25), seed=1)
    assert not torch.equal(first.output, other.output)
    known = hole == 0
    assert torch.equal(first.composite[:, known], image[:, known])
    assert_same_state(before, tiny_prior)


def test_progress_every_step_with_preview_cancel_and_auto_stop_leave_the_prior_untouched(tiny_prior):
    image, hole = inpainting_problem(tiny_prior)
    before = state_of(tiny_prior)
    seen: list[Progress] = []

    def callback(progress):
        seen.append(progress)
        if progress.step == 4:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        inpaint(tiny_prior, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
                FAST, seed=0, callback=callback)
    assert [p.step for p in seen] == [1, 2, 3, 4]
    assert [p.loss is not None for p in seen] == [False, False, True, False]
    assert seen[2].preview.shape == (3, 16, 16) and 0 <= seen[2].preview.min() <= seen[2].preview.max() <= 1
    assert_same_state(before, tiny_prior)
    auto = inpaint(tiny_prior, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
                   replace(SG2_FAST, steps=12, stop="auto"), seed=0)
    assert auto.steps_run >= 1 and auto.output.shape == (3, 16, 16)
    assert_same_state(before, tiny_prior)


def test_reconstruction_and_full_hole(tiny_prior):
    image, _ = inpainting_problem(tiny_prior)
    config = MultiLatentConfig(num_codes=2, split_layer=2)
    rebuilt = inpaint(tiny_prior, image, None, config, FAST, seed=0)
    assert torch.equal(rebuilt.composite, image)  # no hole: every pixel is known and kept
    assert rebuilt.loss_history[-1] < rebuilt.loss_history[0]
    assert rebuilt.notes == []
    blind = inpaint(tiny_prior, image, torch.ones(16, 16), config, FAST, seed=0)
    assert any("whole image" in note for note in blind.notes)
    assert torch.equal(blind.output, sample_images(tiny_prior, 1, 0)[0])
    assert blind.loss_history == []
    other_seed = inpaint(tiny_prior, torch.rand(3, 16, 16), torch.ones(16, 16), config, SG2_FAST, seed=4)
    assert torch.equal(other_seed.output, sample_images(tiny_prior, 1, 4)[0])


@pytest.mark.parametrize("fit", ["resize", "pad"])
def test_any_size_keeps_known_pixels_and_blends_soft_edges(tiny_prior, fit):
    torch.manual_seed(3)
    image = torch.rand(3, 12, 20)
    hole = torch.zeros(12, 20)
    hole[3:9, 5:15] = 1.0
    hole[3:9, 4] = 0.5  # a feathered edge
    result = inpaint_any_size(tiny_prior, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
                              FAST, seed=0, fit=fit)
    assert result.output.shape == result.composite.shape == image.shape
    known = hole == 0
    assert torch.equal(result.composite[:, known], image[:, known])
    inside = hole == 1
    assert torch.equal(result.composite[:, inside], result.output[:, inside])
    torch.testing.assert_close(result.composite[:, 3:9, 4],
                               0.5 * image[:, 3:9, 4] + 0.5 * result.output[:, 3:9, 4])


def test_pggan_finetuning_changes_the_copy_never_the_prior(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    before = state_of(tiny_generator)
    config = MultiLatentConfig(num_codes=3, split_layer=2, finetune="all")
    captured = {}
    original_init = MultiLatentModel.__init__

    def spy(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        captured["model"] = self
    MultiLatentModel.__init__ = spy
    try:
        inpaint(tiny_generator, image, hole, config, FAST, seed=0)
    finally:
        MultiLatentModel.__init__ = original_init
    after = state_of(tiny_generator)
    assert all(torch.equal(before[k], after[k]) for k in before)
    tuned = captured["model"].generator.state_dict()
    assert not torch.equal(tuned["layers.0.conv.weight"], before["layers.0.conv.weight"])
    assert not torch.equal(tuned["to_rgb.weight"], before["to_rgb.weight"])


def test_stylegan2_finetuning_moves_the_copy_only_and_never_the_noise_or_mapping(sg2):
    from ganprior_core.method.fit import _build_optimizer
    image, hole = inpainting_problem(sg2)
    before = state_of(sg2)
    model = MultiLatentModel(sg2, MultiLatentConfig(num_codes=3, split_layer=3, finetune="all"), 0)
    start = state_of(model.generator)
    optimizer = _build_optimizer(model, SG2_FAST, torch.device("cpu"))
    for _ in range(3):
        optimizer.zero_grad()
        ((model() - (image[None] * 2 - 1)) ** 2 * (1 - hole)).mean().backward()
        optimizer.step()
    end = model.generator.state_dict()
    frozen = [n for n in start if "noise" in n or n.startswith("mapping") or "resample" in n]
    assert frozen and all(torch.equal(start[n], end[n]) for n in frozen)
    for name in ("synthesis.b4.const", "synthesis.b8.conv0.weight", "synthesis.b16.torgb.affine.weight"):
        assert not torch.equal(start[name], end[name])
    assert_same_state(before, sg2)


@pytest.mark.parametrize("use_alpha, use_beta, finetune", [
    (False, False, "none"), (True, False, "none"), (False, True, "g2"), (True, True, "all")])
def test_pggan_parameters_move_only_when_enabled(tiny_generator, use_alpha, use_beta, finetune):
    image, hole = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=3, split_layer=2, use_alpha=use_alpha, use_beta=use_beta,
                               finetune=finetune)
    model = MultiLatentModel(tiny_generator, config, seed=0)
    start = state_of(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    target = image[None] * 2 - 1
    for _ in range(3):
        optimizer.zero_grad()
        ((model() - target) ** 2 * (1 - hole)).mean().backward()
        optimizer.step()
    end = state_of(model)
    assert torch.equal(start["alpha"], end["alpha"]) != use_alpha
    assert torch.equal(start["beta"], end["beta"]) != use_beta
    assert not torch.equal(start["latents"], end["latents"])
    g1_weight, g2_weight = "generator.layers.0.conv.weight", "generator.layers.4.conv.weight"
    assert torch.equal(start[g1_weight], end[g1_weight]) == (finetune != "all")
    assert torch.equal(start[g2_weight], end[g2_weight]) == (finetune == "none")


def test_optimisation_fits_known_pixels_and_composite_keeps_them(tiny_generator):
    image, hole = inpainting_problem(tiny_generator, seed=1)
    config = MultiLatentConfig(num_codes=4, split_layer=2, finetune="all")
    result = inpaint(tiny_generator, image, hole, config, replace(FAST, steps=60), seed=0)
    assert result.loss_history[-1] < 0.5 * result.loss_history[0]
    known = hole == 0
    assert torch.equal(result.composite[:, known], image[:, known])
    assert torch.equal(result.composite[:, ~known], result.output[:, ~known])
    assert len(result.loss_history) == 60


def test_the_single_code_preset_runs_through_the_whole_stylegan2_synthesis(sg2):
    before = state_of(sg2)
    torch.manual_seed(3)
    image = torch.rand(3, 12, 20)
    hole = torch.zeros(12, 20)
    hole[3:9, 5:15] = 1.0
    model_config, optimizer_config = preset("single-z", sg2.config)
    assert (model_config.num_codes, model_config.split_layer) == (1, sg2.num_layers)
    result = inpaint_any_size(sg2, image, hole, model_config,
                              replace(optimizer_config, steps=5, precision="fp32", compile=False,
                                      stop="fixed", perceptual_weight=0.0), seed=0, fit="pad")
    assert result.output.shape == result.composite.shape == image.shape
    assert torch.equal(result.composite[:, hole == 0], image[:, hole == 0])
    assert len(result.loss_history) == 5 and result.loss_history[-1] < result.loss_history[0]
    assert_same_state(before, sg2)


def test_the_callers_perceptual_model_is_not_changed(tiny_generator):
    from ganprior_core.method.perceptual import VGG16Features
    vgg = VGG16Features(depth=4)
    before = {name: (value.clone(), value.stride()) for name, value in vgg.state_dict().items()}
    image, hole = inpainting_problem(tiny_generator)
    inpaint(tiny_generator, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
            replace(FAST, perceptual_weight=0.1, steps=2), seed=0, perceptual=vgg)
    for name, value in vgg.state_dict().items():
        assert torch.equal(value, before[name][0]) and value.stride() == before[name][1]


def test_perceptual_weight_without_model_is_reported(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    result = inpaint(tiny_generator, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
                     replace(FAST, perceptual_weight=0.1), seed=0)
    assert any("no VGG16 weights" in note for note in result.notes)


def test_pggan_bf16_runs_and_stays_close_to_fp32(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=3, split_layer=2)
    fp32 = inpaint(tiny_generator, image, hole, config, replace(FAST, steps=30), seed=0)
    bf16 = inpaint(tiny_generator, image, hole, config, replace(FAST, steps=30, precision="bf16"), seed=0)
    assert bf16.output.dtype == torch.float32
    assert abs(bf16.loss_history[-1] - fp32.loss_history[-1]) < 0.2 * fp32.loss_history[0]


def test_stylegan2_bf16_autocast_runs_and_stays_close_to_fp32(sg2):
    image, hole = inpainting_problem(sg2)
    config = MultiLatentConfig(num_codes=2, split_layer=3)
    bf16 = inpaint(sg2, image, hole, config, replace(SG2_FAST, steps=6, precision="bf16"), seed=0)
    fp32 = inpaint(sg2, image, hole, config, replace(SG2_FAST, steps=6), seed=0)
    assert bf16.loss_history == pytest.approx(fp32.loss_history, rel=0.05)
    torch.testing.assert_close(bf16.output, fp32.output, atol=0.05, rtol=0)


@pytest.mark.parametrize("bad, message", [
    ({"steps": 0}, "steps"), ({"precision": "fp16"}, "fp32, bf16"), ({"schedule": "linear"}, "constant, cosine")])
def test_bad_optimizer_config_is_refused(tiny_generator, bad, message):
    image, hole = inpainting_problem(tiny_generator)
    with pytest.raises(ValueError, match=message):
        inpaint(tiny_generator, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
                replace(FAST, **bad), seed=0)


def test_wrong_image_size_names_the_fix(tiny_generator):
    with pytest.raises(ValueError, match="fit_to_resolution"):
        inpaint(tiny_generator, torch.rand(3, 20, 16), None, MultiLatentConfig(num_codes=1, split_layer=2),
                FAST, seed=0)


@pytest.mark.parametrize("meta", ["image", "hole mask"])
def test_tensors_without_values_are_refused_with_one_clear_error(tiny_generator, meta):
    image, hole = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=2, split_layer=3)
    message = f"{meta} is on the meta device: it holds no values; pass a tensor with data"
    if meta == "image":
        image = image.to("meta")
    else:
        hole = hole.to("meta")
    with pytest.raises(ValueError, match=message):
        inpaint(tiny_generator, image, hole, config, FAST, seed=0)
    with pytest.raises(ValueError, match=message):
        inpaint_any_size(tiny_generator, image, hole, config, FAST, seed=0)
