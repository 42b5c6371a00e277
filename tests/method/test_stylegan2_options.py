"""The StyleGAN2-only choices of the method (families/stylegan2.py): latent space, what drives
G2's styles, noise; each checked against the plain network run with the w+ it should amount to."""
from dataclasses import replace

import pytest
import torch

from ganprior_core.families import StyleGAN2Options
from ganprior_core.method.multi_latent import MultiLatentConfig, MultiLatentModel
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
from ganprior_core.optimize import OptimizerConfig, inpaint
from tests.tiny_priors import assert_same_state, inpainting_problem, state_of

pytestmark = pytest.mark.usefixtures("one_thread")


# The StyleGAN2 runs of tests/method/test_fit.py.
FAST = OptimizerConfig(steps=8, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                       schedule="constant", perceptual_weight=0.0, precision="fp32",
                       preview_every=3, stop="fixed", compile=False)


def _config(split=2, codes=1, **options):
    return MultiLatentConfig(num_codes=codes, split_layer=split, stylegan2=StyleGAN2Options(**options))


def _ws(sg2, g1_part, g2_part, split):
    """A full w+ [1, num_ws, w_dim] with G1's slots from g1_part and G2's from g2_part."""
    g1_slots, g2_slots = sg2.config.split_ws_slots(split)
    ws = torch.zeros(1, sg2.num_ws, sg2.config.w_dim)
    ws[:, g1_slots.start:g1_slots.stop] = g1_part
    ws[:, g2_slots.start:g2_slots.stop] = g2_part
    return ws, g1_slots, g2_slots


def _seeded_z(count, seed):
    return torch.randn(count, 8, generator=torch.Generator().manual_seed(seed))


# Even splits: at odd k slot k belongs to both halves (families/stylegan2.py), which one w+ cannot express.
@pytest.mark.parametrize("split", [2, 4])
def test_a_w_code_is_one_w_for_every_g1_slot(sg2, split):
    model = MultiLatentModel(sg2, _config(split, latent_space="w"), seed=4)
    with torch.no_grad():
        assert model.latents.shape == (1, 1, 8)
        torch.testing.assert_close(model.latents[:, 0], sg2.mapping(_seeded_z(1, 4))[:, 0], rtol=0, atol=0)
        torch.testing.assert_close(model(), sg2(_seeded_z(1, 4)), rtol=0, atol=1e-6)
        w = torch.randn(1, 1, 8, generator=torch.Generator().manual_seed(9))
        model.latents.copy_(w)
        ws, _, _ = _ws(sg2, w.expand(1, len(sg2.config.split_ws_slots(split)[0]), 8),
                              model.g2_styles, split)
        torch.testing.assert_close(model(), sg2.synthesis(ws), rtol=0, atol=1e-6)


def test_a_z_code_goes_through_the_frozen_mapping_at_every_step(sg2):
    split = 4
    model = MultiLatentModel(sg2, _config(split, latent_space="z"), seed=5)
    assert model.latents.shape == (1, 8)
    torch.testing.assert_close(model.latents.detach(), _seeded_z(1, 5), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(), sg2(_seeded_z(1, 5)), rtol=0, atol=1e-6)
        z = _seeded_z(1, 11)
        model.latents.copy_(z)
        g1_count = len(sg2.config.split_ws_slots(split)[0])
        ws, _, _ = _ws(sg2, sg2.mapping(z)[:, :g1_count], model.g2_styles, split)
        torch.testing.assert_close(model(), sg2.synthesis(ws), rtol=0, atol=1e-6)
    model().square().mean().backward()
    assert model.latents.grad is not None and model.latents.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.generator.mapping.parameters())


def test_g2_styles_from_the_codes_follow_their_mean_w_and_have_no_parameter(sg2):
    split = 2
    model = MultiLatentModel(sg2, _config(split, codes=2, g2_styles="codes"), seed=6)
    assert model.g2_styles is None
    assert {id(p) for p in model.latent_parameters()} == {id(model.latents)}
    with torch.no_grad():
        model.latents.add_(torch.randn(model.latents.shape, generator=torch.Generator().manual_seed(1)))
        x, img = model.fused_features()
        g2_count = len(sg2.config.split_ws_slots(split)[1])
        mean_last_w = model.latents[:, -1].mean(0)
        _, _, g2_slots = _ws(sg2, 0, 0, split)
        ws = torch.zeros(1, sg2.num_ws, 8)
        ws[:, g2_slots.start:g2_slots.stop] = mean_last_w.expand(1, g2_count, 8)
        torch.testing.assert_close(model(), sg2.synthesize(x, img, ws, split), rtol=0, atol=1e-6)


def test_g2_styles_average_are_the_generators_w_avg(sg2):
    split = 2
    model = MultiLatentModel(sg2, _config(split, g2_styles="average"), seed=2)
    assert model.g2_styles is None
    with torch.no_grad():
        ws, _, _ = _ws(sg2, model.latents, sg2.mapping.w_avg, split)
        torch.testing.assert_close(model(), sg2.synthesis(ws), rtol=0, atol=1e-6)


def test_optimised_noise_is_fitted_in_the_copy_and_g1s_noise_freezes_with_the_codes(sg2):
    split = 2
    before = state_of(sg2)
    model = MultiLatentModel(sg2, _config(split, noise="optimised"), seed=0)
    g1_noise, g2_noise = model.g1_noise, model.g2_noise
    assert g1_noise and g2_noise
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in g1_noise + g2_noise)
    assert {id(p) for p in g1_noise + g2_noise} <= {id(p) for p in model.latent_parameters()}
    assert not any(name.endswith("noise_const") for name, _ in sg2.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(), sg2(_seeded_z(1, 0)), rtol=0, atol=1e-6)
    model().square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g2_noise)
    model.freeze_g1()
    assert not any(p.requires_grad for p in g1_noise) and all(p.requires_grad for p in g2_noise)
    assert model.trains_after_freezing_g1()
    assert_same_state(before, sg2)


@pytest.mark.parametrize("g2_styles", ["codes", "average"])
def test_styles_without_a_parameter_are_kept_at_the_freeze_and_give_the_same_image(sg2, g2_styles,
                                                                                   monkeypatch):
    model = MultiLatentModel(sg2, _config(3, codes=3, latent_space="z", g2_styles=g2_styles),
                             seed=4)
    model.freeze_g1()
    with torch.no_grad():
        fresh = model.adapter.g2(model.fused_features(),
                               model.adapter.g2_ws(model.latents, None, 3), 3)
        mapping_calls = []
        monkeypatch.setattr(model.adapter.generator.mapping, "forward",
                            lambda *args, **kwargs: mapping_calls.append(1))
        kept = model()
    assert torch.equal(kept, fresh)
    if g2_styles == "codes":  # w_avg never goes through the mapping, so only codes can show it
        assert not mapping_calls


@pytest.mark.parametrize("options", [dict(latent_space="w"), dict(latent_space="z"),
                                     dict(g2_styles="codes"), dict(g2_styles="average"),
                                     dict(noise="optimised")])
def test_every_choice_fits_the_known_pixels_with_the_same_result_for_the_same_seed(sg2, options):
    image, hole = inpainting_problem(sg2)
    before = state_of(sg2)
    config = _config(3, codes=3, **options)
    optimizer = replace(FAST, steps=12, freeze_g1_at=6)
    first = inpaint(sg2, image, hole, config, optimizer, seed=1)
    again = inpaint(sg2, image, hole, config, optimizer, seed=1)
    assert first.loss_history[-1] < first.loss_history[0] and first.g1_frozen_at == 6
    assert torch.equal(first.output, again.output)
    assert_same_state(before, sg2)


@pytest.mark.parametrize("options, message", [
    (dict(latent_space="s"), "latent_space must be one of z, w, w+"),
    (dict(g2_styles="mean"), "g2_styles must be one of learned, codes, average"),
    (dict(noise="random"), "noise must be one of const, optimised")])
def test_unknown_choices_are_refused_by_name(sg2, options, message):
    with pytest.raises(ValueError, match=message):
        MultiLatentModel(sg2, _config(**options), seed=0)


def test_a_pggan_prior_refuses_stylegan2_choices():
    torch.manual_seed(0)
    pggan = PGGANGenerator(PGGANConfig(resolution=8, latent_dim=8, channels=(8, 8))).eval()
    MultiLatentModel(pggan, MultiLatentConfig(num_codes=2, split_layer=2), seed=0)
    with pytest.raises(ValueError, match="StyleGAN2 priors only"):
        MultiLatentModel(pggan, _config(latent_space="w", codes=2), seed=0)
