import pytest
import torch

from ganprior_core.checkpoints import save_generator
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny 16x16 PGGAN prior's file (random weights, seed 1234), the bench tests' prior."""
    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("prior") / "tiny.safetensors"
    save_generator(PGGANGenerator(PGGANConfig(16, (32, 32, 16), latent_dim=32)), path)
    return path
