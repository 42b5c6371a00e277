"""The nodes with a StyleGAN2 prior, run as ComfyUI runs them (keyword inputs, inside
torch.inference_mode()). The prior is a stylegan2-ada-pytorch network pickle with random weights,
written with the real pickle structure (tests/stylegan2_builders.py) into a temporary models folder
and read by Load GAN Prior."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from pack_under_test import load_pack, pack_module, run_node
from stylegan2_builders import dumps, generator_kwargs, sg2ada_snapshot

from tests.conftest import tiny_stylegan2

STEPS = 4


pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    network = pack_module("ganprior_core.networks.stylegan2")
    generator = tiny_stylegan2(network)
    kwargs = generator_kwargs(resolution=16, channel_base=128, channel_max=16, z_dim=8, w_dim=8,
                              mapping_layers=2)
    root = tmp_path_factory.mktemp("models")
    (root / "pggan").mkdir()
    (root / "pggan" / "sg2-tiny.pkl").write_bytes(dumps(sg2ada_snapshot(generator.state_dict(), None, kwargs)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(pack_module("nodes.host").MODELS_DIR_ENV, str(root))
        names = load_pack().NODE_CLASS_MAPPINGS["LoadPGGANPrior"].INPUT_TYPES()["required"]["prior_name"][0]
        assert "sg2-tiny.pkl" in names
        loaded, info = run_node("LoadPGGANPrior", prior_name="sg2-tiny.pkl")
    assert isinstance(loaded, network.StyleGAN2Generator)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), generator.state_dict().values()))
    assert info.splitlines()[0] == "sg2-tiny.pkl: 16x16 StyleGAN2, z 8, w 8, 6 style slots, 5 conv layers"
    return loaded


@pytest.fixture
def unchanged_prior(prior):
    before = {name: value.clone() for name, value in prior.state_dict().items()}
    assert any(name.endswith("noise_const") for name in before) and "mapping.w_avg" in before
    yield prior
    after = prior.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before), "the cached prior changed"


def fast_optimizer(**changes):
    settings = dict(steps=STEPS, lr_latent=0.05, lr_alpha=0.01, lr_beta=0.01, lr_generator=1e-3,
                    schedule="constant", mse_weight=1.0, perceptual_weight=0.0, precision="fp32",
                    preview_every=2, compile="off", stop="fixed")
    (optimizer,) = run_node("GANPriorOptimizer", **{**settings, **changes})
    return optimizer


def photo(batch, height, width, seed=0):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def box_mask(batch, height, width, top, bottom, left, right):
    mask = torch.zeros(batch, height, width)
    mask[:, top:bottom, left:right] = 1.0
    return mask


def test_loader_info_names_the_family_and_the_split_shapes(prior):
    checkpoints = pack_module("ganprior_core.checkpoints")
    info = checkpoints.LoadedCheckpoint(prior, "nvidia-sg2ada-pkl", "G_ema").describe("tiny.pkl")
    assert info.splitlines()[0] == "tiny.pkl: 16x16 StyleGAN2, z 8, w 8, 6 style slots, 5 conv layers"
    assert ("read from: NVIDIA stylegan2-ada-pytorch / stylegan3 .pkl, G_ema (the moving average)"
            in info)
    assert "k=2: 16x8x8 + skip image 3x4x4" in info and "k=3: 16x8x8 + skip image 3x8x8" in info
    assert "k=5: 8x16x16 + skip image 3x16x16" in info and "k=6" not in info


def test_sample_build_and_preset_take_a_stylegan2_prior(unchanged_prior):
    (images,) = run_node("SamplePGGANPrior", prior=unchanged_prior, count=2, seed=5)
    expected = pack_module("ganprior_core.sampling").sample_images(unchanged_prior, 2, 5)
    assert torch.equal(images, expected.permute(0, 2, 3, 1))

    (spec,) = run_node("BuildMultiLatentGenerator", prior=unchanged_prior, num_codes=2, split_layer=5,
                  use_alpha=True, use_beta=True, finetune="g2")
    assert spec.prior is unchanged_prior and spec.config.split_layer == 5
    with pytest.raises(ValueError, match="between 1 and 5"):
        run_node("BuildMultiLatentGenerator", prior=unchanged_prior, num_codes=2, split_layer=6,
            use_alpha=True, use_beta=True, finetune="g2")

    spec, optimizer = run_node("GANPriorPreset", prior=unchanged_prior, preset="paper", steps=STEPS,
                          stop="fixed")
    assert (spec.config.num_codes, spec.config.split_layer, optimizer.steps) == (30, 3, STEPS)


@pytest.mark.parametrize("preset", ["mganprior", "single-z"])
def test_inpaint_node_fills_the_mask_with_a_stylegan2_prior(unchanged_prior, preset):
    spec, _ = run_node("GANPriorPreset", prior=unchanged_prior, preset=preset, steps=STEPS, stop="fixed")
    image, mask = photo(1, 20, 12), box_mask(1, 20, 12, 5, 15, 3, 9)
    filled, generated, used_mask, info = run_node("GANPriorInpaint", image=image, mask=mask,
                                             generator=spec, seed=0, fit="resize",
                                             optimizer=fast_optimizer())
    assert filled.shape == generated.shape == image.shape and used_mask.shape == mask.shape
    known = mask[0] == 0
    assert torch.equal(filled[0][known], image[0][known])
    assert "fixed 4 steps" in info


def test_cancel_leaves_the_cached_stylegan2_prior_alone(unchanged_prior, monkeypatch):
    host = pack_module("nodes.host")
    checks = []

    def check():
        checks.append(1)
        if len(checks) > 2:
            raise InterruptedError("cancelled by the user")

    emptied = []
    monkeypatch.setattr(host, "model_management", SimpleNamespace(
        get_torch_device=lambda: torch.device("cpu"), throw_exception_if_processing_interrupted=check,
        free_memory=lambda needed, device, keep_loaded=(): [],
        soft_empty_cache=lambda force=False: emptied.append(1)))
    (spec,) = run_node("BuildMultiLatentGenerator", prior=unchanged_prior, num_codes=2, split_layer=2,
                  use_alpha=True, use_beta=True, finetune="all")
    with pytest.raises(InterruptedError):
        run_node("GANPriorInpaint", image=photo(1, 16, 16), mask=box_mask(1, 16, 16, 4, 12, 4, 12),
            generator=spec, seed=0, fit="resize", optimizer=fast_optimizer(steps=50))
    assert len(checks) == 3 and spec.prior is unchanged_prior
    assert emptied  # the cache is emptied after a cancelled run too


def test_build_node_passes_the_stylegan2_choices_and_the_run_uses_them(unchanged_prior):
    (spec,) = run_node("BuildMultiLatentGenerator", prior=unchanged_prior, num_codes=2, split_layer=2,
                       use_alpha=True, use_beta=True, finetune="all", stylegan2_latent_space="z",
                       stylegan2_g2_styles="average", stylegan2_noise="optimised")
    options = pack_module("ganprior_core").StyleGAN2Options("z", "average", "optimised")
    assert spec.config.stylegan2 == options
    inputs = dict(image=photo(1, 16, 16), mask=box_mask(1, 16, 16, 4, 12, 4, 12), seed=0, fit="resize",
                  optimizer=fast_optimizer())
    filled, _, _, _ = run_node("GANPriorInpaint", generator=spec, **inputs)
    (defaults,) = run_node("BuildMultiLatentGenerator", prior=unchanged_prior, num_codes=2, split_layer=2,
                           use_alpha=True, use_beta=True, finetune="all")
    default_filled, _, _, _ = run_node("GANPriorInpaint", generator=defaults, **inputs)
    assert not torch.equal(filled, default_filled)  # the choices changed the optimisation


def test_build_node_refuses_stylegan2_choices_on_a_pggan_prior():
    pggan = pack_module("ganprior_core.networks.pggan")
    prior = pggan.PGGANGenerator(pggan.PGGANConfig(16, (16, 16, 8), latent_dim=16)).eval()
    with pytest.raises(ValueError, match="apply to StyleGAN2 priors only"):
        run_node("BuildMultiLatentGenerator", prior=prior, num_codes=2, split_layer=2, use_alpha=True,
                 use_beta=True, finetune="all", stylegan2_latent_space="w")
