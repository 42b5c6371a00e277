import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator  # noqa: E402


@pytest.fixture
def tiny_generator() -> PGGANGenerator:
    """A 16x16 generator with random weights: 6 conv layers, latent size 32."""
    torch.manual_seed(1234)
    return PGGANGenerator(PGGANConfig(16, (32, 32, 16), latent_dim=32)).eval()


def inpainting_problem(generator: PGGANGenerator, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An image the 16x16 generator can make ([3, 16, 16] in [0, 1]) and a box hole [16, 16]."""
    torch.manual_seed(seed)
    with torch.no_grad():
        image = ((generator(torch.randn(1, generator.config.latent_dim))[0] + 1) / 2).clamp(0, 1)
    hole = torch.zeros(16, 16)
    hole[4:12, 3:9] = 1
    return image, hole
