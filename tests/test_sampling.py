"""Raw generator output and seeded samples (ganprior_core/sampling.py): the codes each family
takes, its options, and codes that cannot be used refused."""
from __future__ import annotations

import pytest
import torch

from ganprior_core.sampling import generate

pytestmark = pytest.mark.usefixtures("one_thread")


def test_stylegan2_generate_takes_z_or_w_plus_with_truncation_and_noise(sg2):
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


def test_generate_refuses_nan_latents(tiny_generator):
    with pytest.raises(ValueError, match="NaN"):
        generate(tiny_generator, torch.full((1, 32), float("nan")))
