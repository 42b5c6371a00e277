import pytest
import torch

from ganprior_core.method.losses import LossWeights, MaskedReconstructionLoss
from ganprior_core.method.multi_latent import MultiLatentConfig, MultiLatentModel


def test_fusion_is_beta_weighted_sum_of_alpha_weighted_features(tiny_generator):
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


def test_initial_fusion_is_the_plain_mean(tiny_generator):
    model = MultiLatentModel(tiny_generator, MultiLatentConfig(num_codes=5, split_layer=4), seed=3)
    with torch.no_grad():
        mean = tiny_generator.features(model.latents, 4).mean(dim=0, keepdim=True)
        torch.testing.assert_close(model.fused_features(), mean, rtol=1e-5, atol=1e-6)


def test_building_copies_the_prior_and_sets_the_finetune_scope(tiny_generator):
    tiny_generator.layers[0].requires_grad_(False)
    flags_before = [p.requires_grad for p in tiny_generator.parameters()]
    model = MultiLatentModel(tiny_generator, MultiLatentConfig(num_codes=2, split_layer=2,
                                                                   finetune="g2"), seed=0)
    assert [p.requires_grad for p in tiny_generator.parameters()] == flags_before
    assert model.generator is not tiny_generator
    trainable = {name for name, p in model.generator.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in model.generator.named_parameters()
                         if name.startswith("to_rgb") or int(name.split(".")[1]) >= 2}


def test_seed_fixes_the_latents(tiny_generator):
    config = MultiLatentConfig(num_codes=3, split_layer=2)
    first = MultiLatentModel(tiny_generator, config, seed=7).latents
    assert torch.equal(first, MultiLatentModel(tiny_generator, config, seed=7).latents)
    assert not torch.equal(first, MultiLatentModel(tiny_generator, config, seed=8).latents)


@pytest.mark.parametrize("field, value, message", [
    ("split_layer", 0, "between 1 and 6"), ("split_layer", 7, "between 1 and 6"),
    ("num_codes", 0, "at least 1"), ("finetune", "g1", "none, g2, all")])
def test_invalid_configs_are_refused_with_the_accepted_values(tiny_generator, field, value, message):
    config = MultiLatentConfig(**{field: value, **({} if field == "split_layer" else {"split_layer": 2})})
    with pytest.raises(ValueError, match=message):
        MultiLatentModel(tiny_generator, config, seed=0)


def test_masked_loss_has_no_gradient_in_the_hole(tiny_generator):
    from ganprior_core.method.perceptual import VGG16Features
    torch.manual_seed(0)
    target = torch.rand(1, 3, 16, 16) * 2 - 1
    known = torch.ones(1, 1, 16, 16)
    known[..., 4:10, 5:12] = 0
    vgg = VGG16Features(depth=9)  # random weights are fine for a gradient-support check
    loss_fn = MaskedReconstructionLoss(target, known, LossWeights(mse=1.0, perceptual=0.5), vgg)
    image = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_(True)
    loss_fn(image).backward()
    hole = known[0, 0] == 0
    assert torch.all(image.grad[0][:, hole] == 0)
    assert torch.all(image.grad[0][:, ~hole].abs().sum(0) > 0)
    # Changing only hole pixels leaves the loss unchanged.
    with torch.no_grad():
        altered = image.clone()
        altered[..., hole] = torch.rand(3, int(hole.sum())) * 2 - 1
        assert loss_fn(altered).item() == pytest.approx(loss_fn(image).item(), abs=1e-7)


def test_upsampling_conv_gradients_are_those_of_upsample_then_conv():
    """The hand-written backward of the transposed-conv upsampling, against autograd through the
    plain nearest upsampling + 3x3 conv, in float64; and gradcheck's numerical derivatives."""
    import torch.nn.functional as F

    from ganprior_core.networks.pggan import upsample_conv3x3

    noise = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=noise, requires_grad=True)
    weight = torch.randn(6, 3, 3, 3, dtype=torch.float64, generator=noise, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, generator=noise, requires_grad=True)
    upstream = torch.randn(2, 6, 10, 8, dtype=torch.float64, generator=noise)
    ours = torch.autograd.grad((upsample_conv3x3(x, weight, bias) * upstream).sum(), (x, weight, bias))
    plain = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)
    expected = torch.autograd.grad((plain * upstream).sum(), (x, weight, bias))
    for got, want in zip(ours, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(upsample_conv3x3, (x, weight, bias))

    # Under bf16 autocast (how the optimisation runs) the gradients come back in fp32.
    x32, weight32, bias32 = (t.detach().float().requires_grad_(True) for t in (x, weight, bias))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = upsample_conv3x3(x32, weight32, bias32)
    grads = torch.autograd.grad((output.float() * upstream.float()).sum(), (x32, weight32, bias32))
    for got, want in zip(grads, expected):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want.float(), rtol=0.05, atol=0.3)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_nearest_upsampling_matches_interpolate_and_keeps_the_memory_format(memory_format):
    import torch.nn.functional as F

    from ganprior_core.networks.pggan import nearest_upsample2x

    noise = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64, generator=noise)
    x = x.contiguous(memory_format=memory_format).requires_grad_(True)
    upstream = torch.randn(2, 5, 6, 8, dtype=torch.float64, generator=noise)
    ours = nearest_upsample2x(x)
    plain = F.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.equal(ours, plain)
    assert ours.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(torch.autograd.grad((ours * upstream).sum(), x)[0],
                               torch.autograd.grad((plain * upstream).sum(), x)[0], rtol=1e-12, atol=0)
