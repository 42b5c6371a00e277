"""The nodes that load and set up (nodes/model_nodes.py): Load GAN Prior and its model list, Sample,
Build Multi-Latent Generator, GAN-Prior Optimizer and Preset, Load Perceptual Model; run as ComfyUI
runs them, on tiny priors loaded from a models folder."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tests.checkpoint_builders import Arch, genforce_zoo_state_dict
from tests.nodes.node_runs import (
    RESOLUTION,
    STEPS,
    box_mask,
    build,
    fast_optimizer,
    inpaint,
    photo,
    save_tiny_prior,
)
from tests.pack_under_test import load_pack, pack_module, run_node

pytestmark = pytest.mark.usefixtures("one_thread")


def test_load_prior_lists_the_models_folder_and_describes_the_split(models_dir, prior):
    names = load_pack().NODE_CLASS_MAPPINGS["LoadPGGANPrior"].INPUT_TYPES()["required"]["prior_name"][0]
    assert "tiny16.safetensors" in names
    _, info = run_node("LoadPGGANPrior", prior_name="tiny16.safetensors")
    assert "16x16 PGGAN" in info and "6 conv layers" in info and "k=4: 16x8x8" in info
    assert "read from: ganprior .safetensors\n" in info
    saved = pack_module("ganprior_core.checkpoints").load_generator(models_dir / "pggan" / "tiny16.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(prior.state_dict().values(), saved.state_dict().values()))
    # Loaded inside ComfyUI's inference mode, yet usable for autograd later.
    assert not any(parameter.is_inference() for parameter in prior.parameters())


def test_load_prior_info_names_the_layout_and_the_generator_read(models_dir):
    rng = np.random.default_rng(0)
    path = models_dir / "pggan" / "pggan_zoo16.pth"
    torch.save({"generator": genforce_zoo_state_dict(Arch(), rng),
                "generator_smooth": genforce_zoo_state_dict(Arch(), rng)}, path)
    try:
        _, info = run_node("LoadPGGANPrior", prior_name="pggan_zoo16.pth")
    finally:
        path.unlink()
    assert "read from: genforce model-zoo .pth, generator_smooth (the moving average)" in info


def test_load_prior_info_names_the_stylegan2_family_and_the_split_shapes(stylegan2_prior):
    checkpoints = pack_module("ganprior_core.checkpoints")
    info = checkpoints.LoadedCheckpoint(stylegan2_prior, "nvidia-sg2ada-pkl", "G_ema").describe("tiny.pkl")
    assert info.splitlines()[0] == "tiny.pkl: 16x16 StyleGAN2, z 8, w 8, 6 style slots, 5 conv layers"
    assert ("read from: NVIDIA stylegan2-ada-pytorch / stylegan3 .pkl, G_ema (the moving average)"
            in info)
    assert "k=2: 16x8x8 + skip image 3x4x4" in info and "k=3: 16x8x8 + skip image 3x8x8" in info
    assert "k=5: 8x16x16 + skip image 3x16x16" in info and "k=6" not in info


def test_a_prior_replaced_on_disk_under_the_same_name_is_loaded_again(models_dir, tmp_path):
    """ComfyUI reuses a node's outputs while its inputs and IS_CHANGED stay the same: IS_CHANGED
    follows the file itself (path, size, modification time, inode), so a retrained or
    re-downloaded prior under the same name gives the new weights."""
    node = load_pack().NODE_CLASS_MAPPINGS["LoadPGGANPrior"]
    path = models_dir / "pggan" / "retrained.safetensors"
    first = save_tiny_prior(path, seed=1)
    try:
        before = node.IS_CHANGED(prior_name="retrained.safetensors")
        assert before == node.IS_CHANGED(prior_name="retrained.safetensors")  # same file: cached
        prior, _ = run_node("LoadPGGANPrior", prior_name="retrained.safetensors")
        assert all(torch.equal(a, b) for a, b in zip(prior.state_dict().values(), first.state_dict().values()))

        # Downloaded again: a new file moved over the old name (a new inode).
        second = save_tiny_prior(tmp_path / "download.safetensors", seed=2)
        (tmp_path / "download.safetensors").replace(path)
        after_download = node.IS_CHANGED(prior_name="retrained.safetensors")
        assert after_download != before
        prior, _ = run_node("LoadPGGANPrior", prior_name="retrained.safetensors")
        assert all(torch.equal(a, b) for a, b in zip(prior.state_dict().values(), second.state_dict().values()))

        # Rewritten in place (same inode, same size): the modification time tells. Set one second
        # on, as a real retraining would, so the file system's clock granularity cannot hide it.
        inode = path.stat().st_ino
        save_tiny_prior(tmp_path / "retrained.safetensors", seed=3)
        path.write_bytes((tmp_path / "retrained.safetensors").read_bytes())
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
        assert path.stat().st_ino == inode and node.IS_CHANGED(prior_name="retrained.safetensors") != after_download
    finally:
        path.unlink()
    # A name that does not resolve is not an error here: the loader reports it when it runs.
    assert node.IS_CHANGED(prior_name="retrained.safetensors").startswith("unavailable")
    assert node.IS_CHANGED(prior_name="../outside.safetensors").startswith("unavailable")
    vgg = load_pack().NODE_CLASS_MAPPINGS["LoadPerceptualModelVGG16"]
    assert vgg.IS_CHANGED(vgg_name="missing.pth").startswith("unavailable")


def test_sample_node_returns_comfy_images_from_the_prior(unchanged_family_prior):
    (images,) = run_node("SamplePGGANPrior", prior=unchanged_family_prior, count=3, seed=2)
    expected = pack_module("ganprior_core.sampling").sample_images(unchanged_family_prior, 3, 2)
    assert torch.equal(images, expected.permute(0, 2, 3, 1))


def test_build_checks_the_split_layer_against_the_prior(unchanged_family_prior):
    last = unchanged_family_prior.config.num_layers
    generator = build(unchanged_family_prior, split_layer=last)
    assert generator.prior is unchanged_family_prior and generator.config.split_layer == last
    with pytest.raises(ValueError, match=f"between 1 and {last}"):
        build(unchanged_family_prior, split_layer=last + 1)


def test_build_node_passes_the_stylegan2_choices_and_the_run_uses_them(unchanged_stylegan2_prior):
    (spec,) = run_node("BuildMultiLatentGenerator", prior=unchanged_stylegan2_prior, num_codes=2, split_layer=2,
                       use_alpha=True, use_beta=True, finetune="all", stylegan2_latent_space="z",
                       stylegan2_g2_styles="average", stylegan2_noise="optimised")
    options = pack_module("ganprior_core").StyleGAN2Options("z", "average", "optimised")
    assert spec.config.stylegan2 == options
    inputs = dict(image=photo(1, 16, 16), mask=box_mask(1, 16, 16, 4, 12, 4, 12), seed=0, fit="resize",
                  optimizer=fast_optimizer())
    filled, _, _, _ = run_node("GANPriorInpaint", generator=spec, **inputs)
    (defaults,) = run_node("BuildMultiLatentGenerator", prior=unchanged_stylegan2_prior, num_codes=2, split_layer=2,
                           use_alpha=True, use_beta=True, finetune="all")
    default_filled, _, _, _ = run_node("GANPriorInpaint", generator=defaults, **inputs)
    assert not torch.equal(filled, default_filled)  # the choices changed the optimisation


def test_build_node_refuses_stylegan2_choices_on_a_pggan_prior():
    pggan = pack_module("ganprior_core.networks.pggan")
    prior = pggan.PGGANGenerator(pggan.PGGANConfig(16, (16, 16, 8), latent_dim=16)).eval()
    with pytest.raises(ValueError, match="apply to StyleGAN2 priors only"):
        run_node("BuildMultiLatentGenerator", prior=prior, num_codes=2, split_layer=2, use_alpha=True,
                 use_beta=True, finetune="all", stylegan2_latent_space="w")


def test_optimizer_node_defaults_are_the_library_defaults_and_values_pass_through():
    config_class = pack_module("ganprior_core.optimize").OptimizerConfig
    input_types = load_pack().NODE_CLASS_MAPPINGS["GANPriorOptimizer"].INPUT_TYPES()
    declared = {**input_types["required"], **input_types["optional"]}
    library_defaults = vars(config_class())
    del library_defaults["auto_stop"]  # the rule's settings are the library's, not widgets
    assert {name: options["default"] for name, (_, options) in declared.items()} == library_defaults
    assert fast_optimizer(steps=7, lr_beta=0.5) == config_class(
        steps=7, lr_latent=0.05, lr_alpha=0.01, lr_beta=0.5, lr_generator=1e-3, schedule="constant",
        mse_weight=1.0, perceptual_weight=0.0, precision="fp32", preview_every=2, compile=False,
        stop="fixed")
    with pytest.raises(ValueError):
        fast_optimizer(preview_every=0)


def test_optimizer_node_freezes_g1_where_asked_and_never_at_0():
    assert fast_optimizer().freeze_g1_at == pack_module("ganprior_core.optimize").OptimizerConfig().freeze_g1_at
    assert fast_optimizer(freeze_g1_at=40).freeze_g1_at == 40
    assert fast_optimizer(freeze_g1_at=0).freeze_g1_at is None


def test_optimizer_node_accepts_the_compile_switch_of_workflows_saved_before_the_combo():
    node = load_pack().NODE_CLASS_MAPPINGS["GANPriorOptimizer"]
    for value in ("auto", "on", "off", True, False):
        assert node.VALIDATE_INPUTS(compile=value) is True
    assert fast_optimizer(compile=True).compile is True
    assert fast_optimizer(compile=False).compile is False
    assert fast_optimizer(compile="auto").compile == "auto"
    assert "auto, on or off" in node.VALIDATE_INPUTS(compile="sometimes")


@pytest.mark.parametrize("changes", [{"lr_latent": float("nan")}, {"mse_weight": float("inf")}])
def test_optimizer_node_refuses_non_finite_settings(changes):
    with pytest.raises(ValueError, match="finite"):
        fast_optimizer(**changes)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("name", ["lr_latent", "lr_alpha", "lr_beta", "lr_generator", "mse_weight",
                                  "perceptual_weight"])
def test_optimizer_node_refuses_nan_settings_at_validation_before_running(name):
    """ComfyUI's min/max check lets NaN through (comparisons with NaN are false): the node's
    VALIDATE_INPUTS refuses it, and since ComfyUI then skips its own check for these inputs,
    it keeps the min/max check too. A linked input arrives as None and is checked at run time."""
    node = load_pack().NODE_CLASS_MAPPINGS["GANPriorOptimizer"]
    declared = node.INPUT_TYPES()["required"][name][1]
    for bad in (NAN, INF, -INF):
        message = node.VALIDATE_INPUTS(**{name: bad})
        assert isinstance(message, str) and name in message and "finite" in message, message
    assert "between" in node.VALIDATE_INPUTS(**{name: declared["max"] * 2 + 1})
    assert "between" in node.VALIDATE_INPUTS(**{name: -0.5})
    for good in (declared["min"], declared["default"], declared["max"], None):
        assert node.VALIDATE_INPUTS(**{name: good}) is True


def test_optimizer_node_validates_every_float_widget():
    import inspect
    node = load_pack().NODE_CLASS_MAPPINGS["GANPriorOptimizer"]
    floats = {name for name, (kind, _) in node.INPUT_TYPES()["required"].items() if kind == "FLOAT"}
    validated = set(inspect.signature(node.VALIDATE_INPUTS).parameters)
    assert floats <= validated
    assert node.VALIDATE_INPUTS(compile="auto", lr_latent=0.05, mse_weight=1.0) is True


def test_preset_node_matches_the_library_preset_and_overrides_steps(prior):
    optimize = pack_module("ganprior_core.optimize")
    generator, optimizer = run_node("GANPriorPreset", prior=prior, preset="mganprior", steps=0, stop="auto")
    assert (generator.config, optimizer) == optimize.preset("mganprior", prior.config)
    _, optimizer = run_node("GANPriorPreset", prior=prior, preset="mganprior", steps=9, stop="fixed")
    assert (optimizer.steps, optimizer.stop) == (9, "fixed")


def test_preset_node_takes_a_stylegan2_prior(unchanged_stylegan2_prior):
    spec, optimizer = run_node("GANPriorPreset", prior=unchanged_stylegan2_prior, preset="paper", steps=STEPS,
                               stop="fixed")
    assert (spec.config.num_codes, spec.config.split_layer, optimizer.steps) == (30, 3, STEPS)


def test_perceptual_model_loads_from_the_vgg_folder_and_trains_under_inference_mode(
        models_dir, unchanged_prior):
    perceptual = pack_module("ganprior_core.method.perceptual")
    weights = {name: value for name, value in perceptual.VGG16Features().named_parameters()}
    (models_dir / "vgg").mkdir(exist_ok=True)
    # torchvision's layout: vgg16().state_dict() names them features.<index>.weight / .bias
    torch.save({f"features.{name}": value for name, value in weights.items()},
               models_dir / "vgg" / "vgg16-test.pth")
    declared = load_pack().NODE_CLASS_MAPPINGS["LoadPerceptualModelVGG16"].INPUT_TYPES()
    assert declared["required"]["vgg_name"][0] == ["vgg16-test.pth"]

    (vgg,) = run_node("LoadPerceptualModelVGG16", vgg_name="vgg16-test.pth")
    assert all(torch.equal(vgg.state_dict()[name], value) for name, value in weights.items())
    optimizer = fast_optimizer(perceptual_weight=0.5)
    image, mask = photo(1, RESOLUTION, RESOLUTION), box_mask(1, 16, 16, 4, 12, 4, 12)
    *_, with_vgg = inpaint(build(unchanged_prior), image, mask, optimizer=optimizer, perceptual_model=vgg)
    *_, without_vgg = inpaint(build(unchanged_prior), image, mask, optimizer=optimizer)
    assert "perceptual" not in with_vgg and "perceptual weight 0.5 ignored" in without_vgg
    assert all(torch.equal(vgg.state_dict()[name], value) for name, value in weights.items())
