"""The optimiser and the nodes on an accelerator.

Runs on `GANPRIOR_TEST_DEVICE` (e.g. `cuda`, `cuda:1`, or `cpu` to exercise these tests without
one), else on CUDA when this machine has it; skipped otherwise. What must hold there as on the
CPU: same seed -> same result (also for the bundled priors, eager and compiled), the known pixels
bit-exact, the prior never moved or changed, progress and cancel, both families, and the node
asking ComfyUI to make room on the device.
"""
from __future__ import annotations

import os
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from ganprior_core.checkpoints.loading import load_generator
from ganprior_core.method.multi_latent import MultiLatentConfig
from ganprior_core.method.precision import uses_bf16
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
from ganprior_core.optimize import OptimizerConfig, inpaint, inpaint_any_size, preset
from ganprior_core.priors import bundled_prior_path
from tests.pack_under_test import load_pack, pack_module
from tests.tiny_priors import tiny_stylegan2

DEVICE_ENV = "GANPRIOR_TEST_DEVICE"
STEPS = 12


def test_device() -> torch.device | None:
    named = os.environ.get(DEVICE_ENV)
    if named:
        return torch.device(named)
    return torch.device("cuda") if torch.cuda.is_available() else None


test_device.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def device() -> torch.device:
    found = test_device()
    if found is None:
        pytest.skip(f"no accelerator: set {DEVICE_ENV}=cuda (or cpu) to run the device tests")
    return found


def pggan() -> PGGANGenerator:
    torch.manual_seed(0)
    return PGGANGenerator(PGGANConfig(16, (32, 32, 16), latent_dim=32)).eval()


def problem(resolution: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(3, resolution, resolution, generator=torch.Generator().manual_seed(3))
    hole = torch.zeros(resolution, resolution)
    hole[4:11, 3:10] = 1
    return image, hole


FIXED = OptimizerConfig(steps=STEPS, stop="fixed", preview_every=4, compile=False,
                        perceptual_weight=0.0, schedule="constant")


@pytest.mark.parametrize("make_prior, split", [(pggan, 4), (tiny_stylegan2, 3)])
def test_inpaint_on_the_device_is_reproducible_and_leaves_the_prior_alone(device, make_prior, split):
    prior = make_prior()
    before = {name: value.clone() for name, value in prior.state_dict().items()}
    image, hole = problem()
    model = MultiLatentConfig(num_codes=3, split_layer=split)
    first = inpaint(prior, image, hole, model, FIXED, seed=5, device=device)
    second = inpaint(prior, image, hole, model, FIXED, seed=5, device=device)
    assert first.loss_history == second.loss_history and torch.equal(first.output, second.output)
    assert first.loss_history[-1] < first.loss_history[0]
    assert first.output.device.type == "cpu" and first.composite.device.type == "cpu"
    known = hole == 0
    assert torch.equal(first.composite[:, known], image[:, known])
    assert next(prior.parameters()).device.type == "cpu"
    assert all(torch.equal(before[name], value) for name, value in prior.state_dict().items())


@pytest.mark.parametrize("family", ["pggan", "stylegan2"])
def test_the_bundled_priors_repeat_themselves_on_the_device(device, family):
    """At the bundled priors' real sizes, under bf16, compiled or not: tiny networks can pick
    other (deterministic) GPU kernels than real ones. On a GPU the StyleGAN2 prior's fill once
    differed between two runs with the same seed."""
    prior = load_generator(bundled_prior_path(family))
    model, config = preset("paper", prior.config)
    config = replace(config, steps=60, stop="fixed", perceptual_weight=0.0, compile=False)
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(4))
    hole = torch.zeros(64, 64)
    hole[20:44, 12:40] = 1
    for compile_setting in (False, True):
        run = replace(config, compile=compile_setting)
        first = inpaint(prior, image, hole, model, run, seed=3, device=device)
        second = inpaint(prior, image, hole, model, run, seed=3, device=device)
        assert first.loss_history == second.loss_history, f"compile={compile_setting}"
        assert torch.equal(first.output, second.output), f"compile={compile_setting}"


def test_the_device_agrees_with_the_cpu_in_fp32(device):
    prior, (image, hole) = pggan(), problem()
    model = MultiLatentConfig(num_codes=3, split_layer=4)
    config = replace(FIXED, precision="fp32", steps=3)
    on_device = inpaint(prior, image, hole, model, config, seed=1, device=device)
    on_cpu = inpaint(prior, image, hole, model, config, seed=1, device="cpu")
    # Same codes (drawn on the CPU from the seed), same maths; kernels differ in rounding only.
    assert on_device.loss_history[0] == pytest.approx(on_cpu.loss_history[0], rel=1e-3)
    assert (on_device.output - on_cpu.output).abs().max() < 1e-2


def test_auto_stop_precision_auto_and_progress_on_the_device(device):
    prior, (image, hole) = pggan(), problem(40)
    reports = []
    config = OptimizerConfig(steps=200, preview_every=25, compile=False, perceptual_weight=0.0)
    result = inpaint_any_size(prior, image, hole, MultiLatentConfig(num_codes=2, split_layer=4), config,
                              seed=0, device=device, callback=reports.append)
    assert result.composite.shape == image.shape
    assert reports and reports[-1].step == reports[-1].total == 200
    assert all(report.preview is None or report.preview.shape == (3, 16, 16) for report in reports)
    choice = "bf16" if uses_bf16("auto", device) else "fp32"
    assert any(note.startswith(f"precision auto: {choice}") for note in result.notes), result.notes


def test_cancel_on_the_device_propagates_and_the_next_run_is_unaffected(device):
    prior, (image, hole) = pggan(), problem()
    model = MultiLatentConfig(num_codes=2, split_layer=4)

    def cancel(progress):
        if progress.step == 3:
            raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        inpaint(prior, image, hole, model, FIXED, seed=2, device=device, callback=cancel)
    again = inpaint(prior, image, hole, model, FIXED, seed=2, device=device)
    reference = inpaint(prior, image, hole, model, FIXED, seed=2, device=device)
    assert again.loss_history == reference.loss_history


def test_the_inpaint_node_runs_on_the_device_comfyui_names_and_makes_room_there(device, monkeypatch):
    host = pack_module("nodes.host")
    freed, emptied = [], []
    monkeypatch.setattr(host, "model_management", SimpleNamespace(
        get_torch_device=lambda: device, throw_exception_if_processing_interrupted=lambda: None,
        free_memory=lambda needed, where, keep_loaded=(): freed.append((needed, where)) or [],
        soft_empty_cache=lambda force=False: emptied.append(1)))
    monkeypatch.setattr(host, "comfy_utils", None)
    network = pack_module("ganprior_core.networks.pggan")  # the pack's own copy of the core
    torch.manual_seed(0)
    prior = network.PGGANGenerator(network.PGGANConfig(16, (32, 32, 16), latent_dim=32)).eval()
    before = {name: value.clone() for name, value in prior.state_dict().items()}
    nodes = load_pack().NODE_CLASS_MAPPINGS
    (spec,) = nodes["BuildMultiLatentGenerator"]().build(prior=prior, num_codes=2, split_layer=4,
                                                          use_alpha=True, use_beta=True, finetune="all")
    (optimizer,) = nodes["GANPriorOptimizer"]().configure(
        steps=STEPS, lr_latent=0.05, lr_alpha=0.01, lr_beta=0.01, lr_generator=1e-3, schedule="constant",
        mse_weight=1.0, perceptual_weight=0.0, precision="auto", preview_every=4, compile="off", stop="fixed")
    image = torch.rand(1, 20, 24, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 20, 24)
    mask[:, 5:15, 6:18] = 1
    with torch.inference_mode():
        filled, _, _, info = nodes["GANPriorInpaint"]().inpaint(image=image, mask=mask, generator=spec, seed=0,
                                                                 fit="resize", optimizer=optimizer)
    assert filled.device.type == "cpu" and torch.equal(filled[mask == 0], image[mask == 0])
    assert all(torch.equal(before[name], value) for name, value in prior.state_dict().items())
    if device.type != "cpu":  # on the CPU there is nothing to unload
        assert freed and all(where == device for _, where in freed) and emptied


@pytest.mark.parametrize("make_prior, split", [(pggan, 4), (tiny_stylegan2, 3)])
def test_a_vectorised_batch_on_the_device_follows_its_single_runs(device, make_prior, split):
    """vectorize="vmap" (what "auto" picks on CUDA): each member close to its own run on the
    device, the same result twice, the prior left alone."""
    from ganprior_core.method.batched import inpaint_batch
    prior = make_prior()
    before = {name: value.clone() for name, value in prior.state_dict().items()}
    images = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(seed)) for seed in range(3)]
    _, hole = problem()
    model = MultiLatentConfig(num_codes=3, split_layer=split)
    config = replace(FIXED, precision="fp32")
    alone = [inpaint(prior, image, hole, model, config, seed=seed, device=device)
             for seed, image in enumerate(images)]
    together = inpaint_batch(prior, images, [hole] * 3, model, config, [0, 1, 2], device,
                             vectorize="vmap")
    again = inpaint_batch(prior, images, [hole] * 3, model, config, [0, 1, 2], device,
                          vectorize="vmap")
    for one, member, repeat in zip(alone, together, again):
        assert not any("member after member" in note for note in member.notes)  # vmap ran
        assert member.loss_history == pytest.approx(one.loss_history, rel=1e-3)
        assert (member.output - one.output).abs().max() < 1e-3
        assert torch.equal(member.output, repeat.output)
    assert all(torch.equal(before[name], value) for name, value in prior.state_dict().items())


@pytest.mark.parametrize("make_prior, split", [(pggan, 4), (tiny_stylegan2, 3)])
def test_starts_side_by_side_on_the_device_follow_one_after_another(device, make_prior, split):
    """Several starts of one image with vectorize "auto" (side by side on CUDA): the same choice
    and fills as one start after another up to float rounding, the same result twice."""
    from ganprior_core.method.starts import StartsConfig
    prior = make_prior()
    before = {name: value.clone() for name, value in prior.state_dict().items()}
    image, hole = problem()
    model = MultiLatentConfig(num_codes=3, split_layer=split)
    config = replace(FIXED, precision="fp32")
    together, again, apart = (
        inpaint(prior, image, hole, model, config, seed=2, device=device,
                starts=StartsConfig(starts=4, choose_at=5, candidates=2, vectorize=vectorize))
        for vectorize in ("vmap", "vmap", "loop"))
    assert [c.seed for c in together.candidates()] == [c.seed for c in apart.candidates()]
    for member, repeat, one in zip(together.candidates(), again.candidates(), apart.candidates()):
        assert any("side by side" in note for note in member.notes)
        assert not any("member after member" in note for note in member.notes)  # vmap ran
        assert (member.output - one.output).abs().max() < 1e-3
        assert torch.equal(member.output, repeat.output)
    assert all(torch.equal(before[name], value) for name, value in prior.state_dict().items())
