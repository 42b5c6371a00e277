import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors gain nothing from threads, and on a busy shared machine the hand-offs between
    them cost more than the work. Modules opt in with `pytestmark = pytest.mark.usefixtures(...)`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def tiny_stylegan2(network=None):
    """A 16x16 StyleGAN2 with random weights: channels 16, 16, 8 (NVIDIA's plan for channel_base
    128, channel_max 16), z and w of 8, two mapping layers, noise strong enough to show, and a w_avg
    away from 0. `network`: the module holding the classes (the pack's own copy in node tests)."""
    if network is None:
        from ganprior_core.networks import stylegan2 as network
    torch.manual_seed(0)
    generator = network.StyleGAN2Generator(network.StyleGAN2Config(16, (16, 16, 8), z_dim=8, w_dim=8,
                                                                   mapping_layers=2))
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("noise_strength"):
                parameter.fill_(0.2)
        generator.mapping.w_avg.normal_(0, 0.5)
    return generator.eval()


# One tiny random prior per generator family: a family added to ganprior_core.families adds its
# builder here, and every test that takes `tiny_prior` runs on it too.
TINY_PRIORS = {"pggan": lambda: PGGANGenerator(PGGANConfig(16, (32, 32, 16), latent_dim=32)).eval(),
               "stylegan2": tiny_stylegan2}


@pytest.fixture(params=sorted(TINY_PRIORS))
def tiny_prior(request) -> torch.nn.Module:
    torch.manual_seed(1234)
    return TINY_PRIORS[request.param]()


@pytest.fixture
def requires_compiler():
    """Skips a test that needs torch.compile to compile where the library itself says it cannot
    here (e.g. torch installed under a path with a space), with the library's reason; its runs
    would fall back to eager steps and the test would assert what it cannot see. Tests opt in
    with `@pytest.mark.usefixtures("requires_compiler")`."""
    from ganprior_core.method.compilation import unavailable_reason
    reason = unavailable_reason(torch.device("cpu"), [])
    if reason is not None:
        pytest.skip(reason)
