import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Kept importable from here too (`from tests.conftest import tiny_stylegan2`); new code imports
# them from tests.tiny_priors.
from tests.tiny_priors import (  # noqa: E402, F401
    TINY_PRIORS,
    inpainting_problem,
    tiny_pggan,
    tiny_stylegan2,
    tiny_stylegan2_with_biases,
)


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors gain nothing from threads, and on a busy shared machine the hand-offs between
    them cost more than the work. Modules opt in with `pytestmark = pytest.mark.usefixtures(...)`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_generator():
    """A 16x16 PGGAN generator with random weights: 6 conv layers, latent size 32."""
    torch.manual_seed(1234)
    return tiny_pggan()


@pytest.fixture(params=sorted(TINY_PRIORS))
def tiny_prior(request) -> torch.nn.Module:
    """One tiny random prior per generator family (tests.tiny_priors.TINY_PRIORS): a test that
    takes it runs once per family, a family added there included."""
    torch.manual_seed(1234)
    return TINY_PRIORS[request.param]()


@pytest.fixture
def sg2():
    """A 16x16 StyleGAN2 whose constant noise, synthesis biases and w_avg all take part
    (tests.tiny_priors.tiny_stylegan2_with_biases): StyleGAN2's own checks of the method."""
    return tiny_stylegan2_with_biases()


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


@pytest.fixture
def ws(tmp_path, tiny_generator):
    """A command-line workspace (tests.cli_harness.workspace): good inputs in in/, an empty out/."""
    from tests.cli_harness import workspace
    return workspace(tmp_path, tiny_generator)


@pytest.fixture
def bad_ws(ws):
    """`ws` plus the bad files every input option is tried with (tests.cli_harness.write_bad_files)."""
    from tests.cli_harness import write_bad_files
    return {**ws, "bad": write_bad_files(ws["in"])}
