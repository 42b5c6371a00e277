"""The multi-latent method on StyleGAN2 priors (design in ganprior_core/families/stylegan2.py), on a
16x16 StyleGAN2 with random weights: 5 conv layers, 6 style slots, z and w of size 8."""
from dataclasses import replace

import pytest
import torch

from ganprior_core.families import STYLEGAN2, family_of
from ganprior_core.method.multi_latent import MultiLatentConfig, MultiLatentModel
from ganprior_core.networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from ganprior_core.optimize import OptimizerConfig, inpaint, inpaint_any_size, preset, split_for_feature_resolution
from ganprior_core.sampling import generate, sample_images

FAST = OptimizerConfig(steps=8, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                       schedule="constant", perceptual_weight=0.0, precision="fp32",
                       preview_every=3, stop="fixed", compile=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_stylegan2(seed: int = 0) -> StyleGAN2Generator:
    """Random weights, with what a trained network has and a fresh one lacks: noise strengths,
    biases and w_avg away from 0, so the constant noise and w_avg take part in every check."""
    torch.manual_seed(seed)
    generator = StyleGAN2Generator(StyleGAN2Config(16, (16, 16, 8), z_dim=8, w_dim=8,
                                                   mapping_layers=2))
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("noise_strength"):
                parameter.fill_(0.2)
            elif name.endswith(".bias") and "synthesis" in name:
                parameter.normal_(0, 0.1)
        generator.mapping.w_avg.normal_(0, 0.5)
    return generator.eval()


@pytest.fixture
def sg2() -> StyleGAN2Generator:
    return tiny_stylegan2()


def _state(module):
    return {name: value.clone() for name, value in module.state_dict().items()}


def _assert_same_state(before, module):
    after = module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before), "the prior changed"


def _problem(generator, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        image = ((generator(torch.randn(1, generator.config.z_dim))[0] + 1) / 2).clamp(0, 1)
    hole = torch.zeros(16, 16)
    hole[4:12, 3:9] = 1
    return image, hole


def _set_codes_from(model, ws):
    """Codes and G2 styles taken from one w+ [1, num_ws, w_dim] (both hold slot k for odd k)."""
    g1_slots, g2_slots = model.generator.config.split_ws_slots(model.config.split_layer)
    with torch.no_grad():
        model.latents.copy_(ws[:, g1_slots.start:g1_slots.stop])
        model.g2_styles.copy_(ws[:, g2_slots.start:g2_slots.stop])


@pytest.mark.parametrize("split", [1, 2, 3, 4, 5])
def test_one_code_at_every_split_is_the_plain_network(sg2, split):
    model = MultiLatentModel(sg2, MultiLatentConfig(num_codes=1, split_layer=split), seed=3)
    assert model.family is family_of(sg2) is STYLEGAN2
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        # As built: the code is the mapping of the seeded z (psi 1), G2's styles its w.
        torch.testing.assert_close(model(), sg2(z), rtol=0, atol=1e-6)
        # Any w+ code: alpha = 1, beta = 1, G2's styles equal to the code's.
        ws = torch.randn(1, sg2.num_ws, 8, generator=torch.Generator().manual_seed(split))
        _set_codes_from(model, ws)
        torch.testing.assert_close(model(), sg2.synthesis(ws), rtol=0, atol=1e-6)


def test_codes_are_seeded_mapped_z_and_g2_styles_start_at_their_mean_w(sg2):
    config = MultiLatentConfig(num_codes=3, split_layer=2)
    model = MultiLatentModel(sg2, config, seed=7)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ws = sg2.mapping(z)
    g1_slots, g2_slots = sg2.config.split_ws_slots(2)
    assert model.latents.shape == (3, len(g1_slots), 8) and model.g2_styles.shape == (1, len(g2_slots), 8)
    torch.testing.assert_close(model.latents, ws[:, :len(g1_slots)], rtol=0, atol=0)
    torch.testing.assert_close(model.g2_styles[0], ws[:, 0].mean(0).expand(len(g2_slots), 8))
    assert torch.equal(model.latents, MultiLatentModel(sg2, config, seed=7).latents)
    assert not torch.equal(model.latents, MultiLatentModel(sg2, config, seed=8).latents)
    assert model.g2_styles.requires_grad
    assert {id(p) for p in model.latent_parameters()} == {id(model.latents), id(model.g2_styles)}


@pytest.mark.parametrize("split", [2, 3])
def test_fusion_weights_features_by_beta_alpha_and_the_skip_image_by_beta_only(sg2, split):
    model = MultiLatentModel(sg2, MultiLatentConfig(num_codes=2, split_layer=split), seed=1)
    alpha = torch.tensor([[0.5, 1.5] * 8, [2.0, -1.0] * 8])
    beta = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        model.alpha.copy_(alpha)
        model.beta.copy_(beta)
        g1_slots, g2_slots = sg2.config.split_ws_slots(split)
        per_code = []
        for n in range(2):
            ws = torch.zeros(1, sg2.num_ws, 8)
            ws[:, g1_slots.start:g1_slots.stop] = model.latents[n:n + 1]
            per_code.append(sg2.features(ws, split))
        x = beta[0] * alpha[0][None, :, None, None] * per_code[0][0] \
            + beta[1] * alpha[1][None, :, None, None] * per_code[1][0]
        img = beta[0] * per_code[0][1] + beta[1] * per_code[1][1]  # no alpha on the RGB image
        fused_x, fused_img = model.fused_features()
        # One code at a time against both in one batch: the convolutions' float rounding differs
        # with the batch size (by ~2e-6 on AVX-512 CPUs); a wrong fusion would differ by O(1).
        torch.testing.assert_close(fused_x, x, rtol=1e-5, atol=1e-5 * float(x.abs().max()))
        torch.testing.assert_close(fused_img, img, rtol=1e-5, atol=1e-5 * float(img.abs().max()))
        ws2 = torch.zeros(1, sg2.num_ws, 8)
        ws2[:, g2_slots.start:g2_slots.stop] = model.g2_styles
        torch.testing.assert_close(model(), sg2.synthesize(x, img, ws2, split), rtol=1e-5, atol=1e-5)


def _expected_trainable(config: StyleGAN2Config, split: int, scope: str) -> set[str]:
    """Names by the split rule, from the state-dict names alone: conv0 of block b is layer
    2b - 1, conv1 and the ToRGB layer 2b, b4.const layer 0; noise and mapping never."""
    names = set()
    for name in StyleGAN2Generator(config).state_dict():
        parts = name.split(".")
        if parts[0] != "synthesis" or parts[-1] in ("noise_strength", "noise_const",
                                                     "resample_filter"):
            continue
        block = (int(parts[1][1:]) // 4).bit_length() - 1
        layer = 0 if parts[2] == "const" else 2 * block - 1 if parts[2] == "conv0" else 2 * block
        if scope == "all" or (scope == "g2" and layer >= split):
            names.add(name)
    return names


@pytest.mark.parametrize("scope", ["none", "g2", "all"])
def test_finetune_scopes_set_exactly_the_right_requires_grad(sg2, scope):
    flags_before = [p.requires_grad for p in sg2.parameters()]
    for split in range(1, sg2.num_layers + 1):
        model = MultiLatentModel(sg2, MultiLatentConfig(num_codes=2, split_layer=split,
                                                            finetune=scope), seed=0)
        trainable = {name for name, p in model.generator.named_parameters() if p.requires_grad}
        assert trainable == _expected_trainable(sg2.config, split, scope), (split, scope)
        assert {id(p) for p in model.generator_parameters()} == \
               {id(p) for p in model.generator.parameters() if p.requires_grad}
    assert [p.requires_grad for p in sg2.parameters()] == flags_before


def test_finetuning_moves_the_copy_only_and_never_the_noise_or_mapping(sg2):
    from ganprior_core.method.fit import _build_optimizer
    image, hole = _problem(sg2)
    before = _state(sg2)
    model = MultiLatentModel(sg2, MultiLatentConfig(num_codes=3, split_layer=3, finetune="all"), 0)
    start = _state(model.generator)
    optimizer = _build_optimizer(model, FAST, torch.device("cpu"))
    for _ in range(3):
        optimizer.zero_grad()
        ((model() - (image[None] * 2 - 1)) ** 2 * (1 - hole)).mean().backward()
        optimizer.step()
    end = model.generator.state_dict()
    frozen = [n for n in start if "noise" in n or n.startswith("mapping") or "resample" in n]
    assert frozen and all(torch.equal(start[n], end[n]) for n in frozen)
    for name in ("synthesis.b4.const", "synthesis.b8.conv0.weight", "synthesis.b16.torgb.affine.weight"):
        assert not torch.equal(start[name], end[name])
    _assert_same_state(before, sg2)


def test_inpaint_fits_is_deterministic_and_leaves_the_prior_alone(sg2):
    image, hole = _problem(sg2)
    before = _state(sg2)
    config = MultiLatentConfig(num_codes=3, split_layer=3)
    first = inpaint(sg2, image, hole, config, replace(FAST, steps=25), seed=0)
    assert first.loss_history[-1] < 0.5 * first.loss_history[0]
    again = inpaint(sg2, image, hole, config, replace(FAST, steps=25), seed=0)
    assert torch.equal(first.output, again.output) and first.loss_history == again.loss_history
    other = inpaint(sg2, image, hole, config, replace(FAST, steps=25), seed=1)
    assert not torch.equal(first.output, other.output)
    known = hole == 0
    assert torch.equal(first.composite[:, known], image[:, known])
    _assert_same_state(before, sg2)


def test_cancel_progress_and_auto_stop_on_stylegan2(sg2):
    image, hole = _problem(sg2)
    before = _state(sg2)
    seen = []

    def callback(progress):
        seen.append(progress)
        if progress.step == 4:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        inpaint(sg2, image, hole, MultiLatentConfig(num_codes=2, split_layer=2), FAST, seed=0,
                callback=callback)
    assert [p.step for p in seen] == [1, 2, 3, 4] and seen[2].preview.shape == (3, 16, 16)
    _assert_same_state(before, sg2)
    auto = inpaint(sg2, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
                   replace(FAST, steps=12, stop="auto"), seed=0)
    assert auto.steps_run >= 1 and auto.output.shape == (3, 16, 16)
    _assert_same_state(before, sg2)


def test_any_size_and_the_single_code_preset_through_the_whole_synthesis(sg2):
    before = _state(sg2)
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
    _assert_same_state(before, sg2)


def test_full_hole_returns_a_stylegan2_sample(sg2):
    result = inpaint(sg2, torch.rand(3, 16, 16), torch.ones(16, 16),
                     MultiLatentConfig(num_codes=2, split_layer=2), FAST, seed=4)
    assert torch.equal(result.output, sample_images(sg2, 1, 4)[0])


@pytest.mark.parametrize("resolution, paper, mganprior", [
    (16, 3, 3), (32, 5, 3), (64, 7, 3), (256, 7, 3), (1024, 11, 7)])
def test_stylegan2_presets_resolve_to_valid_splits(resolution, paper, mganprior):
    config = StyleGAN2Config.official(resolution)
    got = {name: preset(name, config)[0] for name in ("paper", "mganprior", "single-z")}
    assert (got["paper"].split_layer, got["mganprior"].split_layer) == (paper, mganprior)
    assert got["single-z"].split_layer == config.num_layers and got["single-z"].num_codes == 1
    for model_config in got.values():
        model_config.validate(config)
    # paper: resolution / 8 but at least 32x32; mganprior: resolution / 32 but at least 8x8.
    assert config.feature_shape(paper)[1] == min(max(resolution // 8, 32), resolution // 2)
    assert config.feature_shape(mganprior)[1] == min(max(resolution // 32, 8), resolution // 2)
    assert config.skip_image_shape(paper)[1] == config.feature_shape(paper)[1]
    assert (got["paper"].num_codes, got["paper"].use_beta, got["paper"].finetune) == (30, True, "all")
    assert (got["mganprior"].use_beta, got["mganprior"].finetune) == (False, "none")
    assert split_for_feature_resolution(config, 4) == 1


def test_generate_takes_z_or_w_plus_with_truncation_and_noise(sg2):
    z = torch.randn(3, 8)
    with torch.no_grad():
        ws = sg2.mapping(z)
        torch.testing.assert_close(generate(sg2, z), sg2(z), rtol=0, atol=0)
        torch.testing.assert_close(generate(sg2, ws), sg2.synthesis(ws), rtol=0, atol=0)
        truncated = sg2.synthesis(sg2.mapping(z, truncation_psi=0.5))
        torch.testing.assert_close(generate(sg2, z, truncation_psi=0.5), truncated)
        torch.testing.assert_close(generate(sg2, ws, truncation_psi=0.5), truncated)
        assert torch.equal(generate(sg2, ws, noise_mode="none"),
                           sg2.synthesis(ws, noise_mode="none"))
        assert not torch.equal(generate(sg2, ws, noise_mode="none"), generate(sg2, ws))
    for bad in (torch.randn(2, 9), torch.randn(2, 5, 8), torch.randn(8)):
        with pytest.raises(ValueError, match=r"z codes \[N, 8\] or w\+ codes \[N, 6, 8\]"):
            generate(sg2, bad)
    with pytest.raises(ValueError, match="noise must be one of const, none"):
        generate(sg2, z, noise_mode="random")


def test_pggan_generate_refuses_stylegan2_options(tiny_generator):
    z = torch.randn(2, 32)
    with pytest.raises(ValueError, match="no truncation"):
        generate(tiny_generator, z, truncation_psi=0.7)
    with pytest.raises(ValueError, match="adds no noise"):
        generate(tiny_generator, z, noise_mode="none")


@pytest.mark.parametrize("split, finetune", [(3, "all"), (2, "g2")])
def test_speed_reference_and_project_compute_the_same_stylegan2_optimisation(sg2, split, finetune):
    from ganprior_core.lab import speed
    image, hole = _problem(sg2, seed=2)
    model_config = MultiLatentConfig(num_codes=3, split_layer=split, finetune=finetune)
    optimizer_config = replace(FAST, steps=5, schedule="cosine")
    reference = speed.reference_for(sg2, image, hole, model_config, optimizer_config, seed=2,
                                    perceptual=None)
    assert isinstance(reference, speed.ReferenceStyleGAN2Inpainting)
    losses = [reference.step() for _ in range(5)]
    project = inpaint(sg2, image, hole, model_config, optimizer_config, seed=2)
    assert losses == pytest.approx(project.loss_history, rel=1e-5) and losses[-1] < losses[0]
    with torch.no_grad():
        torch.testing.assert_close(((reference.image()[0] + 1) / 2).clamp(0, 1), project.output,
                                   atol=1e-5, rtol=0)


def test_speed_has_a_stylegan2_256_case_counted_on_the_meta_device():
    from ganprior_core.lab import speed
    (case,) = speed.stylegan2_cases()
    assert case.name == "stylegan2-paper"
    assert case.generator == StyleGAN2Config.official(256)
    assert "256x256 StyleGAN2" in case.describe() and "N=30, k=7" in case.describe()
    reference, project = speed.step_flops(case, speed.REFERENCE), speed.step_flops(case, speed.PROJECT)
    assert project == pytest.approx(reference, rel=0.01)  # same maths, no cheaper conv here


def test_bf16_autocast_runs_and_stays_close_to_fp32(sg2):
    image, hole = _problem(sg2)
    config = MultiLatentConfig(num_codes=2, split_layer=3)
    bf16 = inpaint(sg2, image, hole, config, replace(FAST, steps=6, precision="bf16"), seed=0)
    fp32 = inpaint(sg2, image, hole, config, replace(FAST, steps=6), seed=0)
    assert bf16.loss_history == pytest.approx(fp32.loss_history, rel=0.05)
    torch.testing.assert_close(bf16.output, fp32.output, atol=0.05, rtol=0)
