import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ganprior_core.network import PGGANConfig, PGGANGenerator  # noqa: E402


@pytest.fixture
def tiny_generator() -> PGGANGenerator:
    """A 16x16 generator with random weights: 6 conv layers, latent size 32."""
    torch.manual_seed(1234)
    return PGGANGenerator(PGGANConfig(16, (32, 32, 16), latent_dim=32)).eval()
