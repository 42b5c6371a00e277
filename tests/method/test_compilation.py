"""Whether a run compiles, and the step under torch.compile (ganprior_core/method/compilation.py):
the same result as eager, compiled once, no accumulating scatter, and an eager fallback with one note."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ganprior_core.method.multi_latent import MultiLatentConfig, MultiLatentModel
from ganprior_core.optimize import (
    OptimizerConfig,
    inpaint,
    preset,
)
from tests.tiny_priors import inpainting_problem

FAST = OptimizerConfig(steps=6, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                       schedule="constant", perceptual_weight=0.0, precision="fp32", preview_every=3,
                       stop="fixed")


@pytest.mark.usefixtures("requires_compiler")
def test_compiled_run_matches_eager_and_reuses_nothing_from_the_previous_image(tiny_generator):
    # The second call reuses the first call's compiled graph: it must see the new image.
    config = MultiLatentConfig(num_codes=3, split_layer=3)
    for seed in (0, 1):
        image, hole = inpainting_problem(tiny_generator, seed=seed)
        eager = inpaint(tiny_generator, image, hole, config, replace(FAST, steps=3), seed=seed)
        compiled = inpaint(tiny_generator, image, hole, config, replace(FAST, steps=3, compile=True),
                           seed=seed)
        assert compiled.loss_history == pytest.approx(eager.loss_history, rel=1e-5)
        torch.testing.assert_close(compiled.output, eager.output, atol=1e-5, rtol=0)


@pytest.mark.usefixtures("requires_compiler")
def test_compiled_callable_is_compiled_once_and_reused_for_new_models_and_images(tiny_generator):
    from torch._dynamo.utils import counters

    from ganprior_core.method import compilation
    config = MultiLatentConfig(num_codes=2, split_layer=3, use_beta=False)  # a key no other test uses
    compiled = replace(FAST, steps=2, compile=True)
    image, hole = inpainting_problem(tiny_generator, seed=0)
    first = inpaint(tiny_generator, image, hole, config, compiled, seed=0)
    functions, graphs = compilation.STATS.compiled_functions, counters["stats"]["unique_graphs"]
    for seed in (1, 2):  # new MultiLatentModel copies, new images and masks
        image, hole = inpainting_problem(tiny_generator, seed=seed)
        hole = hole.roll(seed, dims=1)
        result = inpaint(tiny_generator, image, hole, config, compiled, seed=seed)
        eager = inpaint(tiny_generator, image, hole, config, replace(compiled, compile=False), seed=seed)
        assert result.loss_history == pytest.approx(eager.loss_history, rel=1e-5)
    image, hole = inpainting_problem(tiny_generator, seed=0)
    again = inpaint(tiny_generator, image, hole, config, compiled, seed=0)  # same seed, same result
    assert again.loss_history == first.loss_history and torch.equal(again.output, first.output)
    assert compilation.STATS.compiled_functions == functions
    assert counters["stats"]["unique_graphs"] == graphs  # no recompilation


@pytest.mark.usefixtures("requires_compiler")
def test_compiled_step_has_no_accumulating_scatter(tiny_prior, monkeypatch):
    """torch.compile runs an accumulating scatter (interpolate's gradient is one: an index_put
    with accumulation) with atomic adds on CUDA, in an order that changes between runs, and a
    seeded compiled run there did not repeat itself. The whole step (model, fusion, loss with
    held-out pixels) and its backward, traced with inductor's decompositions, must have none;
    select_scatter and slice_scatter write each element once and are fine."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd
    from torch._inductor.decomposition import select_decomp_table

    from ganprior_core.method import compilation

    traced_ops: set[str] = set()

    def recording_compiler(graph, _inputs):
        traced_ops.update(str(node.target) for node in graph.graph.nodes if node.op == "call_function")
        return make_boxed_func(graph.forward)

    backend = aot_autograd(fw_compiler=recording_compiler, bw_compiler=recording_compiler,
                           decompositions=select_decomp_table())
    monkeypatch.setattr(compilation, "_compiled", {})
    monkeypatch.setattr(compilation, "_compile", lambda index: torch.compile(
        compilation._fresh_function(index), backend=backend, dynamic=False))
    generator = tiny_prior
    image, hole = inpainting_problem(generator, seed=0)
    config = OptimizerConfig(steps=40, stop="auto", compile=True, perceptual_weight=0.0,
                             precision="fp32")
    result = inpaint(generator, image, hole, MultiLatentConfig(num_codes=2, split_layer=3), config, seed=0)
    assert not any("ran eagerly" in note for note in result.notes), result.notes
    assert "aten.convolution_backward.default" in traced_ops, "the backward graph was not traced"
    accumulating = ("index_put", "index_add", "scatter_add", "scatter_reduce")
    scatters = sorted(op for op in traced_ops if any(name in op for name in accumulating))
    assert not scatters, f"accumulating scatters in the compiled step: {scatters}"


def test_compile_failure_falls_back_to_eager_with_one_note(tiny_generator, monkeypatch):
    from ganprior_core.method import compilation

    def broken(index):
        def fails(*args):
            raise RuntimeError("C++ compile error: g++ not usable\nsecond line")
        return fails
    monkeypatch.setattr(compilation, "_compile", broken)
    monkeypatch.setattr(compilation, "unavailable_reason", lambda device, notes: None)
    monkeypatch.setattr(compilation, "_compiled", {})
    monkeypatch.setattr(compilation, "_failed", {})
    image, hole = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=3, split_layer=3)
    eager = inpaint(tiny_generator, image, hole, config, FAST, seed=0)
    for _ in range(2):  # the second run does not retry, and says why once again
        fallback = inpaint(tiny_generator, image, hole, config, replace(FAST, compile=True), seed=0)
        assert len(fallback.notes) == 1 and "g++ not usable" in fallback.notes[0]
        assert "ran eagerly" in fallback.notes[0]
        assert fallback.loss_history == eager.loss_history
        assert torch.equal(fallback.output, eager.output)


def test_torch_under_a_path_with_a_space_runs_eagerly_with_a_note(tiny_generator, monkeypatch):
    from ganprior_core.method import compilation
    monkeypatch.setattr(compilation, "_unquoted_paths_with_spaces", lambda: ["/opt/my env/torch/lib"])
    image, hole = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=3, split_layer=3)
    result = inpaint(tiny_generator, image, hole, config, replace(FAST, compile=True), seed=0)
    eager = inpaint(tiny_generator, image, hole, config, FAST, seed=0)
    assert len(result.notes) == 1 and "path with a space" in result.notes[0]
    assert torch.equal(result.output, eager.output)


def test_auto_compile_is_decided_by_the_configuration_and_options_do_not_change_results(tiny_generator):
    from ganprior_core.method import compilation
    from ganprior_core.method.perceptual import VGG16Features
    from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
    assert OptimizerConfig().compile == "auto"
    with torch.device("meta"):
        paper = MultiLatentModel(PGGANGenerator(PGGANConfig.official(256)),
                                     preset("paper", PGGANConfig.official(256))[0], 0, "meta")
    assert compilation.wants_compile("auto", paper, VGG16Features(), 3000)
    assert not compilation.wants_compile("auto", paper, VGG16Features(), 20)
    tiny = MultiLatentModel(tiny_generator, MultiLatentConfig(num_codes=3, split_layer=2), 0)
    assert not compilation.wants_compile("auto", tiny, None, 100000)
    # A short tiny run under "auto" is the eager run, whatever the progress options.
    image, hole = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=3, split_layer=2)
    auto = inpaint(tiny_generator, image, hole, config, replace(FAST, compile="auto", precision="bf16"), seed=0)
    off = inpaint(tiny_generator, image, hole, config, replace(FAST, compile=False, precision="bf16",
                                                               preview_every=1), seed=0, callback=lambda p: None)
    assert auto.notes == off.notes == []
    assert auto.loss_history == off.loss_history and torch.equal(auto.output, off.output)
    assert [compilation.parse_compile_setting(v) for v in ("auto", "on", "off", True)] == ["auto", True, False, True]
    with pytest.raises(ValueError, match="compile"):
        inpaint(tiny_generator, image, hole, config, replace(FAST, compile="sometimes"), seed=0)
