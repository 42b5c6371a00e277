"""The PGGAN network's own operations (ganprior_core/networks/pggan.py): the transposed-convolution
upsampling and the nearest upsampling, against autograd through the plain formulations."""
from __future__ import annotations

import pytest
import torch


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
