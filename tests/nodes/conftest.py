"""Fixtures of the node tests: a models folder the pack reads (ComfyUI itself is not installed), the
priors loaded from it by Load GAN Prior, and ComfyUI's services as stand-ins (`fake_comfy`)."""
from __future__ import annotations

import pytest
import torch

from tests.nodes.node_runs import RESOLUTION, FakeClock, FakeComfy
from tests.pack_under_test import load_pack, pack_module, run_node
from tests.stylegan2_builders import dumps, generator_kwargs, sg2ada_snapshot
from tests.tiny_priors import TINY_PRIORS, tiny_stylegan2


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    network = pack_module("ganprior_core.networks.pggan")
    checkpoints = pack_module("ganprior_core.checkpoints")
    root = tmp_path_factory.mktemp("models")
    (root / "pggan").mkdir()
    torch.manual_seed(0)
    generator = network.PGGANGenerator(network.PGGANConfig(RESOLUTION, (16, 16, 8), latent_dim=16))
    checkpoints.save_generator(generator, root / "pggan" / "tiny16.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(pack_module("nodes.host").MODELS_DIR_ENV, str(root))
        yield root


@pytest.fixture(scope="module")
def prior(models_dir):
    prior, _ = run_node("LoadPGGANPrior", prior_name="tiny16.safetensors")
    return prior


@pytest.fixture
def unchanged_prior(prior):
    """The cached prior, asserted to be bit-for-bit the same after the test."""
    before = {name: value.clone() for name, value in prior.state_dict().items()}
    yield prior
    after = prior.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before), "the cached prior changed"


@pytest.fixture(scope="module", params=sorted(TINY_PRIORS))
def family_prior(request, models_dir):
    """A tiny prior of every family (tests.tiny_priors.TINY_PRIORS), saved as this project's
    .safetensors into the models folder and loaded by Load GAN Prior."""
    from ganprior_core.checkpoints import save_generator
    torch.manual_seed(1234)
    name = f"tiny-{request.param}.safetensors"
    save_generator(TINY_PRIORS[request.param](), models_dir / "pggan" / name)
    loaded, _ = run_node("LoadPGGANPrior", prior_name=name)
    return loaded


@pytest.fixture
def unchanged_family_prior(family_prior):
    """family_prior, asserted to be bit-for-bit the same after the test."""
    before = {name: value.clone() for name, value in family_prior.state_dict().items()}
    yield family_prior
    after = family_prior.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before), "the cached prior changed"


@pytest.fixture(scope="module")
def stylegan2_prior(models_dir):
    """A stylegan2-ada-pytorch network pickle of tiny_stylegan2 (the real pickle structure,
    tests/stylegan2_builders.py) in the models folder, read by Load GAN Prior."""
    network = pack_module("ganprior_core.networks.stylegan2")
    generator = tiny_stylegan2(network)
    kwargs = generator_kwargs(resolution=16, channel_base=128, channel_max=16, z_dim=8, w_dim=8,
                              mapping_layers=2)
    (models_dir / "pggan" / "sg2-tiny.pkl").write_bytes(dumps(sg2ada_snapshot(generator.state_dict(), None, kwargs)))
    names = load_pack().NODE_CLASS_MAPPINGS["LoadPGGANPrior"].INPUT_TYPES()["required"]["prior_name"][0]
    assert "sg2-tiny.pkl" in names
    loaded, info = run_node("LoadPGGANPrior", prior_name="sg2-tiny.pkl")
    assert isinstance(loaded, network.StyleGAN2Generator)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), generator.state_dict().values()))
    assert info.splitlines()[0] == "sg2-tiny.pkl: 16x16 StyleGAN2, z 8, w 8, 6 style slots, 5 conv layers"
    return loaded


@pytest.fixture
def unchanged_stylegan2_prior(stylegan2_prior):
    before = {name: value.clone() for name, value in stylegan2_prior.state_dict().items()}
    assert any(name.endswith("noise_const") for name in before) and "mapping.w_avg" in before
    yield stylegan2_prior
    after = stylegan2_prior.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before), "the cached prior changed"


@pytest.fixture
def fake_comfy(monkeypatch):
    def install(tick=1.0, **options):
        """`tick`: seconds between two clock readings (1 s: the throttle never holds back)."""
        comfy = FakeComfy(**options)
        host = pack_module("nodes.host")
        monkeypatch.setattr(host, "comfy_utils", comfy.utils)
        monkeypatch.setattr(host, "model_management", comfy.model_management)
        monkeypatch.setattr(host, "now", FakeClock(tick))
        return comfy
    return install
