"""The presets (ganprior_core/method/presets.py): `paper`, `mganprior` and `single-z`, and the split
each resolves to for every family and resolution."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ganprior_core.method.multi_latent import MultiLatentModel
from ganprior_core.networks.stylegan2 import StyleGAN2Config
from ganprior_core.optimize import (
    preset,
    split_for_feature_resolution,
)
from tests.tiny_priors import inpainting_problem

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mganprior_preset_is_mean_fusion_of_alpha_weighted_codes(tiny_generator):
    model_config, optimizer_config = preset("mganprior", tiny_generator.config)
    assert (model_config.use_alpha, model_config.use_beta, model_config.finetune) == (True, False, "none")
    model = MultiLatentModel(tiny_generator, replace(model_config, num_codes=4), seed=0)
    image, hole = inpainting_problem(tiny_generator)
    optimizer = torch.optim.Adam([model.latents, model.alpha], lr=0.1)
    for _ in range(3):  # move alpha away from 1 so the check is not trivial
        optimizer.zero_grad()
        ((model() - (image[None] * 2 - 1)) ** 2).mean().backward()
        optimizer.step()
    with torch.no_grad():
        k = model_config.split_layer
        features = tiny_generator.features(model.latents, k) * model.alpha[:, :, None, None]
        expected = tiny_generator.synthesize(features.mean(dim=0, keepdim=True), k)
        torch.testing.assert_close(model(), expected, rtol=1e-5, atol=1e-6)
    assert torch.all(model.beta == 0.25)


def test_pggan_presets_scale_the_split_with_resolution():
    from ganprior_core.networks.pggan import PGGANConfig
    official = PGGANConfig.official(256)
    assert preset("paper", official)[0].split_layer == 8
    assert official.feature_shape(8) == (512, 32, 32)
    assert preset("mganprior", official)[0].split_layer == 4
    assert official.feature_shape(4) == (512, 8, 8)
    small = PGGANConfig(64, (32, 32, 32, 16, 8))
    assert small.feature_shape(preset("paper", small)[0].split_layer)[1] == 16  # never below 16x16
    assert preset("paper", small)[0].split_layer == 6
    assert small.feature_shape(preset("mganprior", small)[0].split_layer)[1] == 8  # never below 8x8
    tiny = PGGANConfig(16, (8, 8, 8))
    assert tiny.feature_shape(preset("paper", tiny)[0].split_layer)[1] == 8  # ...nor at the output
    with pytest.raises(ValueError, match="paper, mganprior, single-z"):
        preset("dip", official)


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
