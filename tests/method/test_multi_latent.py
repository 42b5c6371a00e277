"""The multi-latent model (ganprior_core/method/multi_latent.py): N codes through G1, fused by alpha
and beta, through G2, on a private copy of the prior with the fine-tune scope set."""
from __future__ import annotations

import pytest
import torch

from ganprior_core.families import STYLEGAN2, family_of
from ganprior_core.method.multi_latent import MultiLatentConfig, MultiLatentModel
from ganprior_core.networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pggan_fusion_is_beta_weighted_sum_of_alpha_weighted_features(tiny_generator):
    config = MultiLatentConfig(num_codes=4, split_layer=3)
    model = MultiLatentModel(tiny_generator, config, seed=0)
    with torch.no_grad():
        model.alpha.uniform_(0.5, 1.5)
        model.beta.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        expected = sum(model.beta[n] * tiny_generator.features(model.latents[n:n + 1], 3)
                       * model.alpha[n][None, :, None, None] for n in range(4))
        torch.testing.assert_close(model.fused_features(), expected, rtol=1e-5, atol=1e-6)
        # G2 amplifies the float rounding between the two fusions (einsum vs this loop).
        torch.testing.assert_close(model(), tiny_generator.synthesize(expected, 3), rtol=1e-4, atol=1e-5)


def test_pggan_initial_fusion_is_the_plain_mean(tiny_generator):
    model = MultiLatentModel(tiny_generator, MultiLatentConfig(num_codes=5, split_layer=4), seed=3)
    with torch.no_grad():
        mean = tiny_generator.features(model.latents, 4).mean(dim=0, keepdim=True)
        torch.testing.assert_close(model.fused_features(), mean, rtol=1e-5, atol=1e-6)


def test_pggan_building_copies_the_prior_and_sets_the_finetune_scope(tiny_generator):
    tiny_generator.layers[0].requires_grad_(False)
    flags_before = [p.requires_grad for p in tiny_generator.parameters()]
    model = MultiLatentModel(tiny_generator, MultiLatentConfig(num_codes=2, split_layer=2,
                                                                   finetune="g2"), seed=0)
    assert [p.requires_grad for p in tiny_generator.parameters()] == flags_before
    assert model.generator is not tiny_generator
    trainable = {name for name, p in model.generator.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in model.generator.named_parameters()
                         if name.startswith("to_rgb") or int(name.split(".")[1]) >= 2}


def test_seed_fixes_the_latents(tiny_prior):
    config = MultiLatentConfig(num_codes=3, split_layer=2)
    first = MultiLatentModel(tiny_prior, config, seed=7).latents
    assert torch.equal(first, MultiLatentModel(tiny_prior, config, seed=7).latents)
    assert not torch.equal(first, MultiLatentModel(tiny_prior, config, seed=8).latents)


@pytest.mark.parametrize("field, value, message", [
    ("split_layer", 0, "between 1 and 6"), ("split_layer", 7, "between 1 and 6"),
    ("num_codes", 0, "at least 1"), ("finetune", "g1", "none, g2, all")])
def test_invalid_configs_are_refused_with_the_accepted_values(tiny_generator, field, value, message):
    config = MultiLatentConfig(**{field: value, **({} if field == "split_layer" else {"split_layer": 2})})
    with pytest.raises(ValueError, match=message):
        MultiLatentModel(tiny_generator, config, seed=0)


def _set_codes_from(model, ws):
    """Codes and G2 styles taken from one w+ [1, num_ws, w_dim] (both hold slot k for odd k)."""
    g1_slots, g2_slots = model.generator.config.split_ws_slots(model.config.split_layer)
    with torch.no_grad():
        model.latents.copy_(ws[:, g1_slots.start:g1_slots.stop])
        model.g2_styles.copy_(ws[:, g2_slots.start:g2_slots.stop])


@pytest.mark.parametrize("split", [1, 2, 3, 4, 5])
def test_one_stylegan2_code_at_every_split_is_the_plain_network(sg2, split):
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


def test_stylegan2_codes_are_seeded_mapped_z_and_g2_styles_start_at_their_mean_w(sg2):
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
def test_stylegan2_fusion_weights_features_by_beta_alpha_and_the_skip_image_by_beta_only(sg2, split):
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
def test_stylegan2_finetune_scopes_set_exactly_the_right_requires_grad(sg2, scope):
    flags_before = [p.requires_grad for p in sg2.parameters()]
    for split in range(1, sg2.num_layers + 1):
        model = MultiLatentModel(sg2, MultiLatentConfig(num_codes=2, split_layer=split,
                                                            finetune=scope), seed=0)
        trainable = {name for name, p in model.generator.named_parameters() if p.requires_grad}
        assert trainable == _expected_trainable(sg2.config, split, scope), (split, scope)
        assert {id(p) for p in model.generator_parameters()} == \
               {id(p) for p in model.generator.parameters() if p.requires_grad}
    assert [p.requires_grad for p in sg2.parameters()] == flags_before
