import os
from dataclasses import replace

import pytest
import torch

from ganprior_core.method.multi_latent import MultiLatentConfig, MultiLatentModel
from ganprior_core.optimize import OptimizerConfig, Progress, inpaint, preset
from tests.conftest import inpainting_problem, tiny_stylegan2

FAST = OptimizerConfig(steps=6, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                       schedule="constant", perceptual_weight=0.0, precision="fp32", preview_every=3,
                       stop="fixed")


def _state(module):
    return {name: value.clone() for name, value in module.state_dict().items()}


def test_finetuning_changes_the_copy_never_the_prior(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    before = _state(tiny_generator)
    config = MultiLatentConfig(num_codes=3, split_layer=2, finetune="all")
    captured = {}
    original_init = MultiLatentModel.__init__

    def spy(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        captured["model"] = self
    MultiLatentModel.__init__ = spy
    try:
        inpaint(tiny_generator, image, hole, config, FAST, seed=0)
    finally:
        MultiLatentModel.__init__ = original_init
    after = _state(tiny_generator)
    assert all(torch.equal(before[k], after[k]) for k in before)
    tuned = captured["model"].generator.state_dict()
    assert not torch.equal(tuned["layers.0.conv.weight"], before["layers.0.conv.weight"])
    assert not torch.equal(tuned["to_rgb.weight"], before["to_rgb.weight"])


@pytest.mark.parametrize("use_alpha, use_beta, finetune", [
    (False, False, "none"), (True, False, "none"), (False, True, "g2"), (True, True, "all")])
def test_parameters_move_only_when_enabled(tiny_generator, use_alpha, use_beta, finetune):
    image, hole = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=3, split_layer=2, use_alpha=use_alpha, use_beta=use_beta,
                               finetune=finetune)
    model = MultiLatentModel(tiny_generator, config, seed=0)
    start = _state(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    target = image[None] * 2 - 1
    for _ in range(3):
        optimizer.zero_grad()
        ((model() - target) ** 2 * (1 - hole)).mean().backward()
        optimizer.step()
    end = _state(model)
    assert torch.equal(start["alpha"], end["alpha"]) != use_alpha
    assert torch.equal(start["beta"], end["beta"]) != use_beta
    assert not torch.equal(start["latents"], end["latents"])
    g1_weight, g2_weight = "generator.layers.0.conv.weight", "generator.layers.4.conv.weight"
    assert torch.equal(start[g1_weight], end[g1_weight]) == (finetune != "all")
    assert torch.equal(start[g2_weight], end[g2_weight]) == (finetune == "none")


def test_mganprior_preset_is_mean_fusion_of_alpha_weighted_codes(tiny_generator):
    model_config, optimizer_config = preset("mganprior", tiny_generator.config)
    assert (model_config.use_alpha, model_config.use_beta, model_config.finetune) == (True, False, "none")
    model = MultiLatentModel(tiny_generator, replace(model_config, num_codes=4), seed=0)
    image, hole = inpainting_problem(tiny_generator)
    optimizer = torch.optim.Adam([model.latents, model.alpha], lr=0.1)
    for _ in range(3):  # move alpha away from 1 so the check is not trivial
        optimizer.zero_grad()
        ((model() - (image[None] * 2 - 1)) ** 2).mean().backward()
        optimizer.step()
    with torch.no_grad():
        k = model_config.split_layer
        features = tiny_generator.features(model.latents, k) * model.alpha[:, :, None, None]
        expected = tiny_generator.synthesize(features.mean(dim=0, keepdim=True), k)
        torch.testing.assert_close(model(), expected, rtol=1e-5, atol=1e-6)
    assert torch.all(model.beta == 0.25)


def test_presets_scale_the_split_with_resolution():
    from ganprior_core.networks.pggan import PGGANConfig
    official = PGGANConfig.official(256)
    assert preset("paper", official)[0].split_layer == 8
    assert official.feature_shape(8) == (512, 32, 32)
    assert preset("mganprior", official)[0].split_layer == 4
    assert official.feature_shape(4) == (512, 8, 8)
    small = PGGANConfig(64, (32, 32, 32, 16, 8))
    assert small.feature_shape(preset("paper", small)[0].split_layer)[1] == 16  # never below 16x16
    assert preset("paper", small)[0].split_layer == 6
    assert small.feature_shape(preset("mganprior", small)[0].split_layer)[1] == 8  # never below 8x8
    tiny = PGGANConfig(16, (8, 8, 8))
    assert tiny.feature_shape(preset("paper", tiny)[0].split_layer)[1] == 8  # ...nor at the output
    with pytest.raises(ValueError, match="paper, mganprior, single-z"):
        preset("dip", official)


def test_same_seed_same_result_and_seed_matters(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=3, split_layer=2)
    first = inpaint(tiny_generator, image, hole, config, FAST, seed=5)
    second = inpaint(tiny_generator, image, hole, config, FAST, seed=5)
    other = inpaint(tiny_generator, image, hole, config, FAST, seed=6)
    assert torch.equal(first.output, second.output)
    assert first.loss_history == second.loss_history
    assert not torch.equal(first.output, other.output)


def test_optimisation_fits_known_pixels_and_composite_keeps_them(tiny_generator):
    image, hole = inpainting_problem(tiny_generator, seed=1)
    config = MultiLatentConfig(num_codes=4, split_layer=2, finetune="all")
    result = inpaint(tiny_generator, image, hole, config, replace(FAST, steps=60), seed=0)
    assert result.loss_history[-1] < 0.5 * result.loss_history[0]
    known = hole == 0
    assert torch.equal(result.composite[:, known], image[:, known])
    assert torch.equal(result.composite[:, ~known], result.output[:, ~known])
    assert len(result.loss_history) == 60


def test_reconstruction_and_full_hole(tiny_generator):
    image, _ = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=2, split_layer=2)
    rebuilt = inpaint(tiny_generator, image, None, config, FAST, seed=0)
    assert torch.equal(rebuilt.composite, image)  # no hole: every pixel is known and kept
    assert rebuilt.loss_history[-1] < rebuilt.loss_history[0]
    assert rebuilt.notes == []
    blind = inpaint(tiny_generator, image, torch.ones(16, 16), config, FAST, seed=0)
    assert any("whole image" in note for note in blind.notes)
    from ganprior_core.sampling import sample_images
    assert torch.equal(blind.output, sample_images(tiny_generator, 1, 0)[0])
    assert blind.loss_history == []


def test_progress_every_step_with_preview_and_cancel_leaves_prior_untouched(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    before = _state(tiny_generator)
    seen: list[Progress] = []

    def callback(progress):
        seen.append(progress)
        if progress.step == 4:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        inpaint(tiny_generator, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
                FAST, seed=0, callback=callback)
    assert [p.step for p in seen] == [1, 2, 3, 4]
    assert [p.loss is not None for p in seen] == [False, False, True, False]
    assert seen[2].preview.shape == (3, 16, 16) and 0 <= seen[2].preview.min() <= seen[2].preview.max() <= 1
    after = _state(tiny_generator)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_callers_perceptual_model_is_not_changed(tiny_generator):
    from ganprior_core.method.perceptual import VGG16Features
    vgg = VGG16Features(depth=4)
    before = {name: (value.clone(), value.stride()) for name, value in vgg.state_dict().items()}
    image, hole = inpainting_problem(tiny_generator)
    inpaint(tiny_generator, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
            replace(FAST, perceptual_weight=0.1, steps=2), seed=0, perceptual=vgg)
    for name, value in vgg.state_dict().items():
        assert torch.equal(value, before[name][0]) and value.stride() == before[name][1]


def test_perceptual_weight_without_model_is_reported(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    result = inpaint(tiny_generator, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
                     replace(FAST, perceptual_weight=0.1), seed=0)
    assert any("no VGG16 weights" in note for note in result.notes)


def test_bf16_runs_and_stays_close_to_fp32(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=3, split_layer=2)
    fp32 = inpaint(tiny_generator, image, hole, config, replace(FAST, steps=30), seed=0)
    bf16 = inpaint(tiny_generator, image, hole, config, replace(FAST, steps=30, precision="bf16"), seed=0)
    assert bf16.output.dtype == torch.float32
    assert abs(bf16.loss_history[-1] - fp32.loss_history[-1]) < 0.2 * fp32.loss_history[0]


@pytest.mark.parametrize("bad, message", [
    ({"steps": 0}, "steps"), ({"precision": "fp16"}, "fp32, bf16"), ({"schedule": "linear"}, "constant, cosine")])
def test_bad_optimizer_config_is_refused(tiny_generator, bad, message):
    image, hole = inpainting_problem(tiny_generator)
    with pytest.raises(ValueError, match=message):
        inpaint(tiny_generator, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
                replace(FAST, **bad), seed=0)


def test_wrong_image_size_names_the_fix(tiny_generator):
    with pytest.raises(ValueError, match="fit_to_resolution"):
        inpaint(tiny_generator, torch.rand(3, 20, 16), None, MultiLatentConfig(num_codes=1, split_layer=2),
                FAST, seed=0)


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


@pytest.mark.parametrize("fit", ["resize", "pad"])
def test_any_size_keeps_known_pixels_and_blends_soft_edges(tiny_generator, fit):
    from ganprior_core.optimize import inpaint_any_size
    torch.manual_seed(3)
    image = torch.rand(3, 12, 20)
    hole = torch.zeros(12, 20)
    hole[3:9, 5:15] = 1.0
    hole[3:9, 4] = 0.5  # a feathered edge
    result = inpaint_any_size(tiny_generator, image, hole, MultiLatentConfig(num_codes=2, split_layer=2),
                              FAST, seed=0, fit=fit)
    assert result.output.shape == result.composite.shape == image.shape
    known = hole == 0
    assert torch.equal(result.composite[:, known], image[:, known])
    inside = hole == 1
    assert torch.equal(result.composite[:, inside], result.output[:, inside])
    torch.testing.assert_close(result.composite[:, 3:9, 4],
                               0.5 * image[:, 3:9, 4] + 0.5 * result.output[:, 3:9, 4])


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


@pytest.mark.parametrize("family", ["pggan", "stylegan2"])
@pytest.mark.usefixtures("requires_compiler")
def test_compiled_step_has_no_accumulating_scatter(tiny_generator, family, monkeypatch):
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
    generator = tiny_generator if family == "pggan" else tiny_stylegan2()
    image, hole = inpainting_problem(tiny_generator, seed=0)
    config = OptimizerConfig(steps=40, stop="auto", compile=True, perceptual_weight=0.0,
                             precision="fp32")
    result = inpaint(generator, image, hole, MultiLatentConfig(num_codes=2, split_layer=3), config, seed=0)
    assert not any("ran eagerly" in note for note in result.notes), result.notes
    assert "aten.convolution_backward.default" in traced_ops, "the backward graph was not traced"
    accumulating = ("index_put", "index_add", "scatter_add", "scatter_reduce")
    scatters = sorted(op for op in traced_ops if any(name in op for name in accumulating))
    assert not scatters, f"accumulating scatters in the compiled step: {scatters}"


def test_the_run_asks_cudnn_for_repeatable_kernels_and_restores_the_hosts_flags(tiny_generator):
    cudnn = torch.backends.cudnn
    image, hole = inpainting_problem(tiny_generator, seed=0)
    config = MultiLatentConfig(num_codes=2, split_layer=3)
    seen = []

    def watch(progress):
        seen.append((cudnn.deterministic, cudnn.benchmark))
        if progress.step == 2 and cancel:
            raise InterruptedError("cancelled")

    saved = cudnn.deterministic, cudnn.benchmark
    try:
        cudnn.deterministic, cudnn.benchmark = False, True  # a host that times its kernels
        cancel = False
        inpaint(tiny_generator, image, hole, config, FAST, seed=0, callback=watch)
        assert seen and set(seen) == {(True, False)}
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
        cancel = True
        with pytest.raises(InterruptedError):
            inpaint(tiny_generator, image, hole, config, FAST, seed=0, callback=watch)
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def test_overlapping_runs_keep_repeatable_kernels_and_give_the_host_its_flags_back(tiny_generator):
    """Run A begins, run B begins, A ends while B is still stepping, then B ends: B keeps the
    run's flags to its end, and the host's come back only after B."""
    import threading
    cudnn = torch.backends.cudnn
    image, hole = inpainting_problem(tiny_generator, seed=0)
    config = MultiLatentConfig(num_codes=2, split_layer=3)
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()
    seen_by_b_after_a, errors = [], []

    def wait(event):
        if not event.wait(timeout=120):
            raise TimeoutError("the other run never got there")

    def watch_a(progress):
        if progress.step == 1:
            a_inside.set()
            wait(b_inside)

    def watch_b(progress):
        if progress.step == 1:
            b_inside.set()
            wait(a_done)
        else:
            seen_by_b_after_a.append((cudnn.deterministic, cudnn.benchmark))

    def run(callback):
        try:
            inpaint(tiny_generator, image, hole, config, FAST, seed=0, callback=callback)
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            errors.append(error)
            a_inside.set(), b_inside.set(), a_done.set()

    saved = cudnn.deterministic, cudnn.benchmark
    try:
        cudnn.deterministic, cudnn.benchmark = False, True
        first = threading.Thread(target=run, args=(watch_a,))
        first.start()
        wait(a_inside)
        second = threading.Thread(target=run, args=(watch_b,))
        second.start()
        first.join()
        a_done.set()
        second.join()
        assert not errors, errors
        assert seen_by_b_after_a and set(seen_by_b_after_a) == {(True, False)}
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


@pytest.mark.parametrize("meta", ["image", "hole mask"])
def test_tensors_without_values_are_refused_with_one_clear_error(tiny_generator, meta):
    from ganprior_core.optimize import inpaint_any_size
    image, hole = inpainting_problem(tiny_generator)
    config = MultiLatentConfig(num_codes=2, split_layer=3)
    message = f"{meta} is on the meta device: it holds no values; pass a tensor with data"
    if meta == "image":
        image = image.to("meta")
    else:
        hole = hole.to("meta")
    with pytest.raises(ValueError, match=message):
        inpaint(tiny_generator, image, hole, config, FAST, seed=0)
    with pytest.raises(ValueError, match=message):
        inpaint_any_size(tiny_generator, image, hole, config, FAST, seed=0)


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


def test_inductor_cache_folder_with_a_space_is_moved_for_cpu_builds_only(monkeypatch, tmp_path):
    from ganprior_core.method import compiler_cache
    monkeypatch.setattr(compiler_cache, "_replacements", {})
    spaced = str(tmp_path / "cache with space")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", spaced)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    notes = []
    assert compiler_cache.prepare_cache_dir(notes)  # importing the compiler stack copes with it
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == spaced and notes == []
    assert compiler_cache.prepare_cache_dir(notes, for_cpu_build=True)
    moved = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    assert " " not in moved and len(notes) == 1 and "has a space" in notes[0]


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
