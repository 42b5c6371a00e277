"""Every node run the way ComfyUI runs it: keyword inputs as INPUT_TYPES names them, ComfyUI-shaped
tensors (IMAGE [B, H, W, C], MASK [B, H, W], 1 = inpaint), inside torch.inference_mode(), on a tiny
generator loaded from a models folder. ComfyUI itself is not installed: where a test needs its
services (device, progress bar, cancel) it puts stand-ins where the pack looks for them."""
from __future__ import annotations

import math
import os
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from checkpoint_builders import Arch, genforce_zoo_state_dict
from pack_under_test import load_pack, pack_module, run_node

RESOLUTION = 16
STEPS = 4


pytestmark = pytest.mark.usefixtures("one_thread")


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


def fast_optimizer(**changes):
    settings = dict(steps=STEPS, lr_latent=0.05, lr_alpha=0.01, lr_beta=0.01, lr_generator=1e-3,
                    schedule="constant", mse_weight=1.0, perceptual_weight=0.0, precision="fp32",
                    preview_every=2, compile="off", stop="fixed")
    (optimizer,) = run_node("GANPriorOptimizer", **{**settings, **changes})
    return optimizer


def build(prior, **changes):
    settings = dict(num_codes=3, split_layer=4, use_alpha=True, use_beta=True, finetune="all")
    (generator,) = run_node("BuildMultiLatentGenerator", prior=prior, **{**settings, **changes})
    return generator


def inpaint(generator, image, mask, seed=0, fit="resize", **optional):
    optional.setdefault("optimizer", fast_optimizer())
    return run_node("GANPriorInpaint", image=image, mask=mask, generator=generator, seed=seed, fit=fit,
               **optional)


def photo(batch, height, width, seed=0):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def box_mask(batch, height, width, top, bottom, left, right):
    mask = torch.zeros(batch, height, width)
    mask[:, top:bottom, left:right] = 1.0
    return mask


def test_pack_registers_every_node_with_labels_and_tooltips():
    pack = load_pack()
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS.values()) == {
        "Load GAN Prior", "Sample GAN Prior", "Build Multi-Latent Generator",
        "GAN-Prior Optimizer", "GAN-Prior Preset", "Load Perceptual Model (VGG16)",
        "GAN-Prior Inpaint", "GAN-Prior Metrics"}
    assert pack.NODE_CLASS_MAPPINGS.keys() == pack.NODE_DISPLAY_NAME_MAPPINGS.keys()
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        assert callable(getattr(cls(), cls.FUNCTION)) and cls.CATEGORY and cls.DESCRIPTION
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
        for section in cls.INPUT_TYPES().values():
            for name, declaration in section.items():
                if not isinstance(declaration[0], str) or declaration[0] in {"INT", "FLOAT", "BOOLEAN"}:
                    assert declaration[1].get("tooltip"), f"{cls.__name__}.{name} has no tooltip"
    host = pack_module("nodes.host")
    assert host.folder_paths is None and host.model_management is None  # the fallbacks ran


def test_every_input_and_every_output_of_every_node_has_a_tooltip():
    """Sockets too (prior, generator, images, optimizer...), not only widgets: the frontend shows
    an input's `tooltip` and OUTPUT_TOOLTIPS[i] on hover."""
    for node_type, cls in load_pack().NODE_CLASS_MAPPINGS.items():
        declared = cls.INPUT_TYPES()
        assert set(declared) <= {"required", "optional"}, node_type
        for section in ("required", "optional"):
            for name, declaration in declared.get(section, {}).items():
                options = declaration[1] if len(declaration) > 1 else {}
                tooltip = options.get("tooltip")
                assert isinstance(tooltip, str) and tooltip.strip(), f"{node_type}.{name} has no tooltip"
        tooltips = getattr(cls, "OUTPUT_TOOLTIPS", None)
        assert tooltips is not None and len(tooltips) == len(cls.RETURN_TYPES), \
            f"{node_type} needs one OUTPUT_TOOLTIPS entry per output"
        for output, tooltip in zip(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES), tooltips):
            assert isinstance(tooltip, str) and tooltip.strip(), f"{node_type} output {output} has no tooltip"


def test_renamed_nodes_keep_the_ids_types_and_input_names_saved_workflows_use():
    """The display names say GAN, not PGGAN (both families load); what saved workflows and API
    prompts name stays: node IDs, socket types, input names and the models/pggan folder."""
    pack = load_pack()
    assert list(pack.NODE_CLASS_MAPPINGS) == [
        "LoadPGGANPrior", "SamplePGGANPrior", "BuildMultiLatentGenerator", "GANPriorOptimizer",
        "GANPriorPreset", "LoadPerceptualModelVGG16", "GANPriorInpaint", "GANPriorMetrics"]
    load, sample = pack.NODE_CLASS_MAPPINGS["LoadPGGANPrior"], pack.NODE_CLASS_MAPPINGS["SamplePGGANPrior"]
    assert (load.__name__, sample.__name__) == ("LoadGANPrior", "SampleGANPrior")
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["LoadPGGANPrior"] == "Load GAN Prior"
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["SamplePGGANPrior"] == "Sample GAN Prior"
    assert (load.RETURN_TYPES, load.RETURN_NAMES) == (("PGGAN_PRIOR", "STRING"), ("prior", "info"))
    assert list(load.INPUT_TYPES()["required"]) == ["prior_name"]
    assert list(sample.INPUT_TYPES()["required"]) == ["prior", "count", "seed"]
    for node_type in ("SamplePGGANPrior", "BuildMultiLatentGenerator", "GANPriorPreset"):
        assert pack.NODE_CLASS_MAPPINGS[node_type].INPUT_TYPES()["required"]["prior"][0] == "PGGAN_PRIOR"
    assert "pggan" in pack_module("nodes.registration").MODEL_FOLDERS
    model_nodes = pack_module("nodes.model_nodes")  # the classes' old names still import
    assert (model_nodes.LoadPGGANPrior, model_nodes.SamplePGGANPrior) == (load, sample)


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


def test_build_checks_the_split_layer_against_the_prior(prior):
    generator = build(prior, split_layer=6)
    assert generator.prior is prior and generator.config.split_layer == 6
    with pytest.raises(ValueError, match="between 1 and 6"):
        build(prior, split_layer=7)


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


# Every node's inputs when it first shipped (6e76f41, nodes/ in git history).
FIRST_RELEASE_INPUTS = {
    "LoadPGGANPrior": {"prior_name"},
    "SamplePGGANPrior": {"prior", "count", "seed"},
    "BuildMultiLatentGenerator": {"prior", "num_codes", "split_layer", "use_alpha", "use_beta", "finetune"},
    "GANPriorOptimizer": {"steps", "lr_latent", "lr_alpha", "lr_beta", "lr_generator", "schedule",
                          "mse_weight", "perceptual_weight", "precision", "preview_every"},
    "GANPriorPreset": {"prior", "preset", "steps"},
    "LoadPerceptualModelVGG16": {"vgg_name"},
    "GANPriorInpaint": {"image", "mask", "generator", "seed", "fit", "optimizer", "perceptual_model"},
    "GANPriorMetrics": {"image", "reference", "mask"},
}


def test_inputs_added_after_a_node_shipped_are_optional_with_the_old_behaviour(prior):
    """A prompt saved before an input existed lacks it; ComfyUI refuses a missing required input,
    so every input added later is optional, and leaving it out does what the node did before:
    the Optimizer compiles nothing (compile came later) and both the Optimizer and the Preset run
    exactly `steps` (stop came later; auto-stop did not exist)."""
    pack = load_pack()
    assert set(FIRST_RELEASE_INPUTS) == set(pack.NODE_CLASS_MAPPINGS)
    for node_type, cls in pack.NODE_CLASS_MAPPINGS.items():
        declared = cls.INPUT_TYPES()
        assert set(declared["required"]) <= FIRST_RELEASE_INPUTS[node_type], node_type
        assert FIRST_RELEASE_INPUTS[node_type] <= set(declared["required"]) | set(declared.get("optional", {}))
    first = dict(steps=STEPS, lr_latent=0.05, lr_alpha=0.01, lr_beta=0.01, lr_generator=1e-3,
                 schedule="constant", mse_weight=1.0, perceptual_weight=0.0, precision="fp32", preview_every=2)
    (optimizer,) = run_node("GANPriorOptimizer", **first)
    assert (optimizer.compile, optimizer.stop, optimizer.steps) == (False, "fixed", STEPS)
    _, optimizer = run_node("GANPriorPreset", prior=prior, preset="paper", steps=0)
    assert optimizer.stop == "fixed"
    # The widgets a new workflow gets still show the library's defaults.
    options = pack.NODE_CLASS_MAPPINGS["GANPriorOptimizer"].INPUT_TYPES()["optional"]
    config_class = pack_module("ganprior_core.optimize").OptimizerConfig
    assert (options["compile"][1]["default"], options["stop"][1]["default"]) == (
        config_class().compile, config_class().stop)


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


def test_preset_node_matches_the_library_preset_and_overrides_steps(prior):
    optimize = pack_module("ganprior_core.optimize")
    generator, optimizer = run_node("GANPriorPreset", prior=prior, preset="mganprior", steps=0, stop="auto")
    assert (generator.config, optimizer) == optimize.preset("mganprior", prior.config)
    _, optimizer = run_node("GANPriorPreset", prior=prior, preset="mganprior", steps=9, stop="fixed")
    assert (optimizer.steps, optimizer.stop) == (9, "fixed")


def test_inpaint_fills_only_the_mask_at_the_input_size(unchanged_prior):
    image = photo(1, 24, 40)
    alpha = 1.0 - box_mask(1, 12, 20, 3, 9, 5, 12)  # an RGBA file's alpha at half size
    mask = 1.0 - alpha  # what LoadImage gives: 1 = transparent = inpaint
    filled, generated, used_mask, info = inpaint(build(unchanged_prior), image, mask)

    assert filled.shape == generated.shape == image.shape
    expected_mask = torch.nn.functional.interpolate(mask[:, None], size=(24, 40), mode="bilinear")[:, 0]
    assert torch.equal(used_mask, expected_mask)
    known, hole = used_mask == 0, used_mask == 1
    assert torch.equal(filled[known], image[known])  # bit-exact
    assert torch.equal(filled[hole], generated[hole])
    assert not torch.equal(filled[hole], image[hole])
    soft = (used_mask > 0) & (used_mask < 1)
    blend = image * (1 - used_mask[..., None]) + generated * used_mask[..., None]
    assert torch.allclose(filled[soft], blend[soft])
    assert info.startswith("image 1:") and "final loss" in info


def test_pad_mode_keeps_the_aspect_and_the_known_pixels(unchanged_prior):
    image = photo(1, 12, 30)
    mask = box_mask(1, 12, 30, 2, 8, 20, 28)
    filled, generated, used_mask, _ = inpaint(build(unchanged_prior), image, mask, fit="pad")
    assert filled.shape == generated.shape == image.shape
    assert torch.equal(filled[used_mask == 0], image[used_mask == 0])
    assert not torch.equal(filled[used_mask == 1], image[used_mask == 1])


def test_one_mask_serves_a_batch_and_each_image_gets_its_own_seed(unchanged_prior):
    image = photo(1, RESOLUTION, RESOLUTION).expand(2, -1, -1, -1)
    mask = box_mask(1, RESOLUTION, RESOLUTION, 4, 12, 4, 12)
    filled, generated, used_mask, info = inpaint(build(unchanged_prior), image, mask)
    assert filled.shape == (2, RESOLUTION, RESOLUTION, 3) and used_mask.shape == (2, RESOLUTION, RESOLUTION)
    assert torch.equal(filled[used_mask == 0], image[used_mask == 0])
    assert not torch.equal(generated[0], generated[1])  # seed, seed + 1
    assert info.count("\n") == 1


def test_many_masks_for_one_image_and_mismatched_batches(unchanged_prior):
    image = photo(1, RESOLUTION, RESOLUTION)
    masks = torch.cat([box_mask(1, RESOLUTION, RESOLUTION, 0, 8, 0, 16),
                       box_mask(1, RESOLUTION, RESOLUTION, 8, 16, 0, 16)])
    filled, _, used_mask, _ = inpaint(build(unchanged_prior), image, masks)
    assert filled.shape[0] == 2
    assert torch.equal(filled[0, 8:], image[0, 8:]) and torch.equal(filled[1, :8], image[0, :8])
    with pytest.raises(ValueError, match="do not match"):
        inpaint(build(unchanged_prior), photo(2, 16, 16), masks.repeat(2, 1, 1)[:3])


def test_empty_mask_reconstructs_and_returns_the_input_untouched(unchanged_prior):
    image = photo(1, RESOLUTION, RESOLUTION)
    empty = torch.zeros(1, 64, 64)  # LoadImage's mask for a file without alpha
    filled, generated, used_mask, _ = inpaint(build(unchanged_prior), image, empty)
    assert torch.equal(filled, image) and not used_mask.any()
    assert not torch.equal(generated, image)


def test_full_mask_warns_and_returns_a_sample_from_the_prior(unchanged_prior):
    image = photo(1, RESOLUTION, RESOLUTION)
    full = torch.ones(1, RESOLUTION, RESOLUTION)
    filled, generated, _, info = inpaint(build(unchanged_prior), image, full, seed=5)
    sample = pack_module("ganprior_core.sampling").sample_images(unchanged_prior, 1, 5)
    assert torch.equal(generated[0], sample[0].permute(1, 2, 0))
    assert torch.equal(filled, generated)
    assert "unconditional sample" in info


def nan_at(tensor, index):
    spoiled = tensor.clone()
    spoiled[index] = float("nan")
    return spoiled


@pytest.mark.parametrize("image, message", [
    (photo(1, 20, 24).permute(0, 3, 1, 2), "channels-first"),
    (torch.rand(1, 20, 24, 2), "C = 1, 3 or 4"),
    (photo(1, 20, 24)[0], r"\[B, H, W, C\]"),
    (torch.rand(0, 20, 24, 3), "empty"),
    (torch.rand(1, 1, 1, 3), "too small"),
    (nan_at(photo(1, 20, 24), (0, 5, 5, 0)), "NaN"),
    (photo(1, 20, 24) * 255, r"\[0, 255\]"),
    ((photo(1, 20, 24) * 255).to(torch.uint8), "floating-point"),
], ids=["channels-first", "two-channels", "no-batch", "empty-batch", "1x1", "nan", "0-255", "uint8"])
def test_inpaint_refuses_bad_images_and_keeps_the_cached_prior(unchanged_prior, image, message):
    with pytest.raises(ValueError, match=message):
        inpaint(build(unchanged_prior), image, box_mask(1, 20, 24, 4, 10, 4, 10))


@pytest.mark.parametrize("mask, message", [
    (nan_at(box_mask(1, 20, 24, 4, 10, 4, 10), (0, 0, 0)), "NaN"),
    (box_mask(1, 20, 24, 4, 10, 4, 10) * 255, r"\[0, 1\]"),
    (torch.zeros(0, 20, 24), "empty"),
    (torch.zeros(1, 1, 20, 24), r"\[B, H, W\]"),
], ids=["nan", "0-255", "empty-batch", "rank-4"])
def test_inpaint_refuses_bad_masks_and_keeps_the_cached_prior(unchanged_prior, mask, message):
    with pytest.raises(ValueError, match=message):
        inpaint(build(unchanged_prior), photo(1, 20, 24), mask)


def test_inpaint_refuses_a_seed_beyond_the_widget_range(unchanged_prior):
    with pytest.raises(ValueError, match="seed"):
        inpaint(build(unchanged_prior), photo(1, 20, 24), box_mask(1, 20, 24, 4, 10, 4, 10), seed=2 ** 64)


def test_rgba_image_is_inpainted_as_its_rgb(unchanged_prior):
    rgb, mask = photo(1, 20, 24), box_mask(1, 20, 24, 4, 10, 4, 10)
    rgba = torch.cat([rgb, torch.rand(1, 20, 24, 1)], dim=-1)
    generator = build(unchanged_prior)
    assert torch.equal(inpaint(generator, rgba, mask)[0], inpaint(generator, rgb, mask)[0])


@pytest.mark.parametrize("changes", [{"lr_latent": float("nan")}, {"mse_weight": float("inf")}])
def test_optimizer_node_refuses_non_finite_settings(changes):
    with pytest.raises(ValueError, match="finite"):
        fast_optimizer(**changes)


@pytest.mark.parametrize("image, message", [
    (torch.rand(1, 3, 24, 24), "channels-first"),
    (torch.rand(0, 24, 24, 3), "empty"),
    (nan_at(torch.rand(1, 24, 24, 3), (0, 1, 1, 1)), "NaN"),
])
def test_metrics_node_refuses_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        run_node("GANPriorMetrics", image=image, reference=torch.rand(1, 24, 24, 3))


class FakeComfy:
    """Stand-ins for comfy.model_management and comfy.utils that record what the node does."""

    def __init__(self, cancel_after_checks=None, device="cpu"):
        self.updates, self.checks, self.devices = [], 0, 0
        self.freed, self.cache_emptied = [], 0
        self.cancel_after_checks = cancel_after_checks
        self.device = torch.device(device)
        fake = self

        class ProgressBar:
            def __init__(self, total):
                self.total = total

            def update_absolute(self, value, total=None, preview=None):
                fake.updates.append((value, self.total, preview))

        self.utils = SimpleNamespace(ProgressBar=ProgressBar)
        self.model_management = SimpleNamespace(get_torch_device=self.get_torch_device,
                                                throw_exception_if_processing_interrupted=self.check,
                                                free_memory=self.free_memory,
                                                soft_empty_cache=self.soft_empty_cache)

    def get_torch_device(self):
        self.devices += 1
        return self.device

    def free_memory(self, memory_required, device, keep_loaded=()):
        self.freed.append((memory_required, device))
        return []

    def soft_empty_cache(self, force=False):
        self.cache_emptied += 1

    def check(self):
        self.checks += 1
        if self.cancel_after_checks is not None and self.checks > self.cancel_after_checks:
            raise InterruptedError("cancelled by the user")


class FakeClock:
    """host.now: every reading moves time on by `tick` seconds."""

    def __init__(self, tick):
        self.tick, self.time = tick, 1000.0

    def __call__(self):
        self.time += self.tick
        return self.time


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


def test_progress_bar_counts_every_step_of_the_batch_with_previews(unchanged_prior, fake_comfy):
    comfy = fake_comfy()
    inpaint(build(unchanged_prior), photo(2, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15))
    total = 2 * STEPS
    assert [value for value, _, _ in comfy.updates] == list(range(1, total + 1))
    assert {bar_total for _, bar_total, _ in comfy.updates} == {total}
    previews = [preview for _, _, preview in comfy.updates]
    assert [preview is not None for preview in previews[:STEPS]] == [False, True, False, True]
    kind, picture, max_size = previews[1]
    assert (kind, picture.size, picture.mode, max_size) == ("JPEG", (RESOLUTION, RESOLUTION), "RGB", 512)
    assert comfy.devices == 1 and comfy.checks == total


def test_progress_is_throttled_to_ten_updates_a_second_keeping_previews_and_the_end(
        unchanged_prior, fake_comfy):
    # 40 steps 0.01 s apart (the clock is read once per update): 0.4 s, about 4 throttled updates.
    comfy = fake_comfy(tick=0.01)
    steps = 40
    optimizer = fast_optimizer(steps=steps, preview_every=15)
    inpaint(build(unchanged_prior), photo(2, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15),
            optimizer=optimizer)
    values = [value for value, _, _ in comfy.updates]
    with_preview = [value for value, _, preview in comfy.updates if preview is not None]
    assert values == sorted(values) and values[0] == 1 and values[-1] == 2 * steps  # exact end
    assert steps in values  # each image's last step is sent
    # No preview lost: every preview_every steps, and each image's last step (the returned image).
    assert with_preview == [15, 30, steps, steps + 15, steps + 30, 2 * steps]
    plain = [value for value, _, preview in comfy.updates if preview is None]
    assert len(plain) <= 2 * (2 * steps * 0.01 / 0.1 + 2)  # <= 10/s (+ the ends), not 80
    assert comfy.checks == 2 * steps  # cancel is still checked every step


def test_progress_bar_sends_one_update_per_tenth_of_a_second_and_what_it_held_on_flush():
    host = pack_module("nodes.host")
    clock, sent = FakeClock(0.0), []
    bar = host.ProgressBar(100, clock=clock)
    bar._bar = SimpleNamespace(update_absolute=lambda value, preview=None: sent.append(
        (round(clock.time - 1000, 2), value, preview is not None)))
    for value in range(1, 92):
        clock.time += 0.03  # 33 steps a second
        bar.update(value, preview="picture" if value == 50 else None)
    assert (1.5, 50, True) in sent  # a preview is never held back
    assert sent[0] == (0.03, 1, False)  # the first is sent at once
    gaps = [(later[0] - earlier[0], later[2]) for earlier, later in zip(sent, sent[1:])]
    assert all(gap >= 0.1 - 1e-9 for gap, preview in gaps if not preview)  # at most 10 a second
    assert all(gap <= 0.12 + 1e-9 for gap, _ in gaps)  # and never much fewer
    assert sent[-1][1] < 91  # step 91 came too soon after the last one sent...
    bar.flush()
    assert sent[-1][1:] == (91, False)  # ...and flush sends it
    count = len(sent)
    bar.flush()
    assert len(sent) == count  # nothing held: nothing sent twice
    clock.time += 0.001
    bar.update(100)
    assert sent[-1][1:] == (100, False)  # the end is sent however soon it comes


def test_auto_stop_completes_each_images_share_of_the_bar_and_says_why(unchanged_prior, fake_comfy):
    comfy = fake_comfy()
    auto_stop = pack_module("ganprior_core.method.auto_stop")
    # Checked every step with little patience, a generator this eager overfits and stops early.
    optimizer = replace(fast_optimizer(steps=60, lr_generator=0.05, lr_latent=0.3, stop="auto"),
                        auto_stop=auto_stop.AutoStopConfig(check_every=1, patience=3,
                                                            smoothing=0.0, holdout_fraction=0.1))
    *_, info = inpaint(build(unchanged_prior), photo(2, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15),
                       optimizer=optimizer)
    lines = info.splitlines()
    assert len(lines) == 2 and all("stopped early" in line and "image of step" in line for line in lines)
    values = [value for value, _, _ in comfy.updates]
    assert values[-1] == 2 * 60 and 60 in values  # each image's share completes
    assert len(values) < 2 * 60  # ...though fewer steps ran


def test_cancel_stops_within_a_step_and_leaves_the_cached_prior_alone(unchanged_prior, fake_comfy):
    comfy = fake_comfy(cancel_after_checks=2)
    generator = build(unchanged_prior)
    with pytest.raises(InterruptedError):
        inpaint(generator, photo(1, RESOLUTION, RESOLUTION), box_mask(1, 16, 16, 4, 12, 4, 12),
                optimizer=fast_optimizer(steps=50))
    assert comfy.checks == 3 and len(comfy.updates) == 2
    assert generator.prior is unchanged_prior


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


def test_sample_node_returns_comfy_images_from_the_prior(prior):
    (images,) = run_node("SamplePGGANPrior", prior=prior, count=3, seed=2)
    expected = pack_module("ganprior_core.sampling").sample_images(prior, 3, 2)
    assert torch.equal(images, expected.permute(0, 2, 3, 1))


def test_metrics_node_scores_whole_image_and_masked_area():
    reference = photo(1, 20, 20).clamp(0.2, 0.8)
    psnr, ssim, report = run_node("GANPriorMetrics", image=reference, reference=reference)
    assert math.isinf(psnr) and ssim == pytest.approx(1.0) and "hole only" not in report

    shifted = reference.clone()
    shifted[:, :10] += 0.1  # error 0.1 on half of the pixels: MSE 0.005
    mask = box_mask(1, 10, 10, 0, 5, 0, 10)  # the top half, at half size
    psnr, _, report = run_node("GANPriorMetrics", image=shifted, reference=reference, mask=mask)
    assert psnr == pytest.approx(10 * math.log10(1 / 0.005), abs=1e-3)
    assert "hole only:   PSNR 20.00 dB" in report

    batch_psnr, _, report = run_node("GANPriorMetrics", image=torch.cat([reference, shifted]), reference=reference)
    assert math.isinf(batch_psnr) and report.count("image ") == 2


def test_model_folders_join_comfyui_folder_paths_keeping_the_users_own(monkeypatch, tmp_path):
    table = {"pggan": (["/from/extra_model_paths.yaml"], set())}  # the user's yaml came first

    def add_model_folder_path(name, path, is_default=False):
        paths, extensions = table.setdefault(name, ([], set()))
        if path not in paths:
            paths.append(path)

    fake = SimpleNamespace(models_dir=str(tmp_path), folder_names_and_paths=table,
                           add_model_folder_path=add_model_folder_path)
    host = pack_module("nodes.host")
    monkeypatch.setattr(host, "folder_paths", fake)
    monkeypatch.setattr(host, "_registered", {})
    bundled = pack_module("ganprior_core.priors").PRIORS_DIR
    host.register_model_folder("pggan", (".pth", ".safetensors"), bundled)
    host.register_model_folder("vgg", (".pth",))
    assert table["pggan"] == (["/from/extra_model_paths.yaml", str(tmp_path / "pggan"), str(bundled)],
                              {".pth", ".safetensors"})
    assert table["vgg"] == ([str(tmp_path / "vgg")], {".pth"})




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


@pytest.mark.parametrize("name", ["../outside.safetensors", "../../etc/passwd", "/etc/passwd",
                                  "sub/../../outside.safetensors", "..", "\\\\server\\share\\x.pth",
                                  "..\\outside.safetensors", "C:\\models\\x.pth", ""])
def test_model_names_that_leave_the_models_folder_are_refused(models_dir, name):
    outside = models_dir / "outside.safetensors"
    outside.write_bytes(b"not a model")
    try:
        with pytest.raises(ValueError, match="outside its model folder|not a file name"):
            pack_module("nodes.host").model_path("pggan", name)
        with pytest.raises(ValueError):
            run_node("LoadPGGANPrior", prior_name=name)
    finally:
        outside.unlink()


def test_model_names_inside_the_folder_still_resolve(models_dir):
    host = pack_module("nodes.host")
    (models_dir / "pggan" / "sub").mkdir(exist_ok=True)
    assert host.model_path("pggan", "tiny16.safetensors") == str(models_dir / "pggan" / "tiny16.safetensors")
    assert host.model_path("pggan", "sub/../tiny16.safetensors").endswith("tiny16.safetensors")
    with pytest.raises(FileNotFoundError):
        host.model_path("pggan", "missing.safetensors")


def test_inpaint_asks_comfyui_to_make_room_on_a_gpu_and_empties_the_cache_after(
        unchanged_prior, fake_comfy, models_dir):
    host = pack_module("nodes.host")
    comfy = fake_comfy(device="cuda")
    generator = build(unchanged_prior)
    vgg = pack_module("ganprior_core.method.perceptual").VGG16Features()
    needed = pack_module("nodes.inpaint_nodes").working_memory(generator, fast_optimizer(
        perceptual_weight=0.1), vgg)
    # At least the prior, its gradients and Adam's moments, and a VGG16 copy.
    assert needed >= 4 * host.module_bytes(unchanged_prior) + host.module_bytes(vgg)
    host.make_room(needed, host.torch_device())
    assert comfy.freed == [(needed, torch.device("cuda"))]

    comfy = fake_comfy(device="cpu")  # --cpu: nothing to unload, RAM is not freed by unloading
    inpaint(generator, photo(1, 16, 16), box_mask(1, 16, 16, 4, 12, 4, 12))
    assert comfy.freed == [] and comfy.cache_emptied == 1
    with pytest.raises(ValueError):  # a refused input unloads nothing, yet the cache is tidied
        inpaint(generator, photo(1, 16, 16) * 255, box_mask(1, 16, 16, 4, 12, 4, 12))
    assert comfy.freed == [] and comfy.cache_emptied == 2


def test_inpaint_on_a_gpu_makes_room_before_it_runs(unchanged_prior, fake_comfy, monkeypatch):
    """The call order the node makes on a GPU: free_memory (with the estimate), the run, then
    soft_empty_cache, also when the run fails."""
    comfy = fake_comfy(device="cuda")
    nodes = pack_module("nodes.inpaint_nodes")
    calls = []

    def fake_run(*args, **kwargs):
        calls.append(("run", list(comfy.freed), comfy.cache_emptied))
        raise RuntimeError("CUDA out of memory (pretend)")

    monkeypatch.setattr(nodes, "inpaint_any_size", fake_run)
    generator = build(unchanged_prior)
    with pytest.raises(RuntimeError, match="pretend"):
        inpaint(generator, photo(1, 16, 16), box_mask(1, 16, 16, 4, 12, 4, 12))
    expected = nodes.working_memory(generator, fast_optimizer(), None)
    assert calls == [("run", [(expected, torch.device("cuda"))], 0)]
    assert comfy.cache_emptied == 1


def test_host_falls_back_without_comfyui():
    host = pack_module("nodes.host")
    assert host.model_management is None
    host.make_room(10 ** 12, torch.device("cuda"))  # nothing to ask: no error
    host.release_memory()


def test_example_workflows_are_served_under_a_folder_name_with_a_space():
    """ComfyUI's static template route breaks for a folder name that URLs quote; the pack then
    adds a GET route for exactly that name, serving only the workflow folder's own files."""
    import re
    host = pack_module("nodes.host")
    registered = []

    class Routes:
        def get(self, path):
            return lambda handler: registered.append((path, handler)) or handler

    server = SimpleNamespace(PromptServer=SimpleNamespace(instance=SimpleNamespace(routes=Routes())))
    assert host.serve_example_workflows(server, "ganprior") is None  # the host's route works
    assert host.serve_example_workflows(server, "gan{prior}") is None  # not a route name
    assert registered == []
    path = host.serve_example_workflows(server, "GAN prior (copy)")
    assert registered and registered[0][0] == path
    pattern = re.fullmatch(r"/workflow_templates/\{pack:(.*)\}/\{filename\}", path).group(1)
    assert re.fullmatch(pattern, "GAN prior (copy)") and not re.fullmatch(pattern, "GAN prior")
    assert host.serve_example_workflows(None, "GAN prior") is None  # no ComfyUI server here

    assert host.template_file("ganprior_bundled_prior_facade.json").is_file()
    assert host.template_file("ganprior_bundled_prior_facade.jpg").is_file()
    for name in ("../pyproject.toml", "api/ganprior_bundled_prior_facade.json", ".hidden.json",
                 "missing.json", "ganprior_facade.txt", ""):
        assert host.template_file(name) is None, name


def test_metrics_node_scores_the_smallest_image_inpaint_accepts(unchanged_prior):
    side = pack_module("ganprior_core.imaging").MIN_IMAGE_SIDE
    image, mask = photo(1, side, side), box_mask(1, side, side, 2, 6, 2, 6)
    filled, *_ = inpaint(build(unchanged_prior), image, mask)
    psnr, ssim, report = run_node("GANPriorMetrics", image=filled, reference=image, mask=mask)
    assert math.isfinite(psnr) and -1 <= ssim <= 1 and "hole only" in report
    assert "SSIM window 7x7" in report  # says it is not the standard 11x11 window
    with pytest.raises(ValueError, match=r"image 8x9 and reference 9x8 \(width x height\)"):
        run_node("GANPriorMetrics", image=photo(1, 9, 8), reference=photo(1, 8, 9))


def test_registry_metadata_names_the_repository_an_icon_and_a_license():
    import tomllib
    from pack_under_test import ROOT
    from PIL import Image
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    repository = project["project"]["urls"]["Repository"]
    assert repository.startswith("https://github.com/")
    icon_url = project["tool"]["comfy"]["Icon"]
    owner_repo = repository.removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{owner_repo}/main/"
    assert icon_url.startswith(prefix)
    with Image.open(ROOT / icon_url.removeprefix(prefix)) as icon:  # the file the URL names
        assert icon.width == icon.height <= 400 and icon.format == "PNG"
    license_text = (ROOT / "LICENSE").read_text()
    assert project["project"]["license"] == {"text": "MIT"} and license_text.startswith("MIT License")
    assert "the ganprior authors" in license_text


def test_importing_the_node_modules_registers_nothing_and_the_pack_registers_once(monkeypatch, tmp_path):
    """Importing any module of nodes/ (host.py, model_nodes.py, ...) registers nothing with
    ComfyUI; the pack's __init__ registers the model folders pggan and vgg and, for a folder name
    that URLs quote, the example-workflow route, and only once."""
    import importlib
    import sys

    from pack_under_test import ROOT, FakeComfyUIHost, forget, import_copy
    fake = FakeComfyUIHost(tmp_path / "models")
    fake.install(monkeypatch)
    link = tmp_path / "GAN prior (copy)"  # a folder name the pack serves its workflows under itself
    link.symlink_to(ROOT, target_is_directory=True)
    package = "custom_nodes_registration_check"
    modules = ["nodes", *sorted(f"nodes.{path.stem}" for path in (ROOT / "nodes").glob("*.py")
                                if path.stem != "__init__")]
    assert {"nodes.host", "nodes.model_nodes", "nodes.inputs", "nodes.registration"} <= set(modules)
    try:
        import_copy(link, package, run_init=False)
        for module in modules:
            importlib.import_module(f"{package}.{module}")
        assert fake.folders == {} and fake.routes == []
        assert sys.modules[f"{package}.nodes.host"].folder_paths is fake.modules["folder_paths"]
    finally:
        forget(package)
    try:
        import_copy(link, package)
        core = importlib.import_module(f"{package}.ganprior_core")
        assert fake.folders == {
            "pggan": ([str(tmp_path / "models" / "pggan"), str(core.PRIORS_DIR)], set(core.CHECKPOINT_EXTENSIONS)),
            "vgg": ([str(tmp_path / "models" / "vgg")], set(core.VGG_EXTENSIONS))}
        assert len(fake.routes) == 1 and "GAN\\ prior\\ \\(copy\\)" in fake.routes[0]
        registration = importlib.import_module(f"{package}.nodes.registration")
        assert registration.register() is False  # done once, by the pack's __init__
        assert len(fake.routes) == 1 and len(fake.folders["pggan"][0]) == 2
    finally:
        forget(package)


def test_registry_metadata_names_the_comfyui_it_needs_the_os_and_the_accelerators():
    """[tool.comfy] requires-comfyui: a lower bound that admits the ComfyUI the pack was tested on
    (0.8.0) and none without a core node the example workflows use (ImageStitch: 0.3.40).
    Classifiers: the OS and the accelerators, from the Registry's lists. The Icon fits the
    Registry's limit of 800x400 pixels."""
    import tomllib
    from pack_under_test import ROOT
    from packaging.specifiers import SpecifierSet
    from PIL import Image
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    required = SpecifierSet(project["tool"]["comfy"]["requires-comfyui"])
    assert "0.8.0" in required and "0.3.40" in required and "0.3.39" not in required
    classifiers = project["project"]["classifiers"]
    registry_os = {"Operating System :: OS Independent", "Operating System :: Microsoft :: Windows",
                   "Operating System :: POSIX :: Linux", "Operating System :: MacOS"}
    registry_accelerators = {"Environment :: GPU :: NVIDIA CUDA", "Environment :: GPU :: AMD ROCm",
                             "Environment :: GPU :: Intel Arc", "Environment :: NPU :: Huawei Ascend",
                             "Environment :: GPU :: Apple Metal"}
    assert "Operating System :: OS Independent" in classifiers
    assert "Environment :: GPU :: NVIDIA CUDA" in classifiers
    assert set(classifiers) <= registry_os | registry_accelerators
    icon_url = project["tool"]["comfy"]["Icon"]
    with Image.open(ROOT / icon_url.rsplit("/main/", 1)[1]) as icon:
        assert icon.width <= 800 and icon.height <= 400


def save_tiny_prior(path, seed):
    network = pack_module("ganprior_core.networks.pggan")
    torch.manual_seed(seed)
    generator = network.PGGANGenerator(network.PGGANConfig(RESOLUTION, (16, 16, 8), latent_dim=16))
    pack_module("ganprior_core.checkpoints").save_generator(generator, path)
    return generator


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


def test_model_list_follows_symlinked_subfolders_and_skips_loops(models_dir, tmp_path, caplog):
    """Outside ComfyUI the list searches subfolders, symbolic links to folders too (as ComfyUI's
    own listing does); a link back into a folder it is in is skipped with a warning naming it,
    instead of being followed without end."""
    import threading
    shared = tmp_path / "shared priors"
    (shared / "deeper").mkdir(parents=True)
    save_tiny_prior(shared / "deeper" / "elsewhere.safetensors", seed=4)
    link = models_dir / "pggan" / "linked"
    link.symlink_to(shared, target_is_directory=True)
    loop = shared / "deeper" / "back up"
    loop.symlink_to(shared, target_is_directory=True)  # linked/deeper/back up -> linked
    node = load_pack().NODE_CLASS_MAPPINGS["LoadPGGANPrior"]
    found = []
    try:
        with caplog.at_level("WARNING"):
            lister = threading.Thread(target=lambda: found.append(node.INPUT_TYPES()["required"]["prior_name"][0]),
                                      daemon=True)
            lister.start()
            lister.join(timeout=60)
        assert not lister.is_alive() and found, "the listing did not finish"
        name = os.path.join("linked", "deeper", "elsewhere.safetensors")
        assert name in found[0] and "tiny16.safetensors" in found[0]
        assert not any("back up" in listed for listed in found[0])
        assert any(str(models_dir / "pggan" / "linked" / "deeper" / "back up") in record.getMessage()
                   and "loop" in record.getMessage() for record in caplog.records)
        _, info = run_node("LoadPGGANPrior", prior_name=name)
        assert info.startswith(f"{name}: 16x16 PGGAN")
    finally:
        loop.unlink()
        link.unlink()
