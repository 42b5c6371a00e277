"""The speed benchmark (lab/speed.py, `bench-speed`): a reference implementation that computes the
same optimisation as the project for each family, FLOP counts and the report."""
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from ganprior_core.lab import speed
from ganprior_core.method.multi_latent import MultiLatentConfig
from ganprior_core.method.perceptual import VGG16Features
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
from ganprior_core.networks.stylegan2 import StyleGAN2Config
from ganprior_core.optimize import OptimizerConfig, inpaint
from tests.pack_under_test import ROOT
from tests.tiny_priors import inpainting_problem

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("finetune, use_beta", [("all", True), ("none", False)])
def test_reference_and_project_compute_the_same_pggan_optimisation_in_fp32(tiny_generator, finetune, use_beta):
    torch.manual_seed(3)
    image = torch.rand(3, 16, 16)
    hole = torch.zeros(16, 16)
    hole[4:11, 5:12] = 1
    model_config = MultiLatentConfig(num_codes=3, split_layer=3, use_beta=use_beta, finetune=finetune)
    optimizer_config = OptimizerConfig(steps=5, precision="fp32", perceptual_weight=0.1, stop="fixed",
                                       lr_generator=1e-3 if finetune != "none" else 0.0)
    perceptual = VGG16Features(depth=4)
    reference = speed.ReferenceInpainting(tiny_generator, image, hole, model_config, optimizer_config,
                                          seed=2, perceptual=perceptual)
    reference_losses = [reference.step() for _ in range(optimizer_config.steps)]
    project = inpaint(tiny_generator, image, hole, model_config, optimizer_config, seed=2,
                      perceptual=perceptual)
    assert reference_losses[0] == pytest.approx(project.loss_history[0], rel=1e-5)
    assert reference_losses == pytest.approx(project.loss_history, rel=1e-5)
    assert reference_losses[-1] < reference_losses[0]  # it optimises, so the agreement means something
    with torch.no_grad():
        reference_image = ((reference.image()[0] + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(reference_image, project.output, atol=1e-5, rtol=0)


def test_flop_counts_show_the_cheaper_upsampling_convolution():
    case = replace(speed.quick_cases()[0], generator=speed.BUNDLED_PRIOR_SHAPE, perceptual_depth=4)
    reference, project = speed.step_flops(case, speed.REFERENCE), speed.step_flops(case, speed.PROJECT)
    assert 0 < project < reference
    # Only the upsampling convs differ, so the project cannot save more than 20/36 of all FLOPs.
    assert project > reference * 16 / 36


def test_quick_benchmark_report(tmp_path):
    out = tmp_path / "speed.json"
    command = [sys.executable, "-m", "ganprior_core", "bench-speed", "--quick", "--threads", "1",
               "--json", str(out)]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "speed-up over (a): (b)" in completed.stdout and "GFLOP/s" in completed.stdout
    report = json.loads(out.read_text())
    # The machine is named: ratios between the variants differ by CPU kind (AMX, AVX-512 bf16).
    machine_line = next(line for line in completed.stdout.splitlines() if line.startswith("machine: "))
    assert machine_line == f"machine: {report['machine']}"
    assert "AMX " in machine_line and "AVX-512 bf16 " in machine_line and "1 threads" in machine_line
    assert f"torch {torch.__version__}" in machine_line
    assert report["conv_flops_per_second"]["fp32"] > 0 and report["conv_flops_per_second"]["bf16"] > 0
    (case,) = report["cases"]
    reference, project, frozen, never_frozen = case["variants"]
    assert [v["variant"] for v in case["variants"]] == ["reference", "project", "project-frozen",
                                                        "project-never-frozen"]
    # The tiny case fine-tunes everything, so it has a late phase, and the report projects a run.
    assert frozen["flops_per_step"] < project["flops_per_step"] == never_frozen["flops_per_step"]
    projection = speed.RunProjection(**case["projection"])
    assert (f"default paper run at 16x16: projected {projection.seconds:.0f} s"
            in completed.stdout)
    assert (f"never frozen paper run at 16x16 (--freeze-g1-at never): projected "
            f"{projection.never_frozen_seconds:.0f} s" in completed.stdout)
    # Same maths from the same seed: the step-0 losses differ only by the project's bf16 rounding.
    assert project["first_loss"] == pytest.approx(reference["first_loss"], rel=0.02)
    for variant in (reference, project, frozen, never_frozen):
        assert variant["steps_per_second"] > 0
        assert variant["step_seconds"] == pytest.approx(1 / variant["steps_per_second"])
        assert variant["flops_per_step"] > 0
        assert variant["effective_flops_per_second"] == pytest.approx(
            reference["flops_per_step"] * variant["steps_per_second"])
        assert variant["peak_memory_growth"] is None or variant["peak_memory_growth"] >= 0
        assert variant["warmup_seconds"] > 0
    assert project["flops_per_step"] <= reference["flops_per_step"]


def test_time_to_quality_reports_the_first_step_within_the_margin_of_the_final_psnr():
    torch.manual_seed(0)
    # The bundled prior's resolution (the procedural facades are 64x64) with few channels: the
    # report's logic does not depend on the width, and bf16 is slow on CPUs without bf16 units.
    prior = PGGANGenerator(PGGANConfig(64, (32, 32, 16, 16, 8), latent_dim=32)).eval()
    runs = speed.time_to_quality(prior, steps=30, precisions=("bf16", "fp32"), every=10,
                                 budgets=(10,), log=lambda line: None)
    assert [run.precision for run in runs] == ["bf16", "fp32"]
    for run in runs:
        assert [step for step, _, _ in run.curve] == [10, 20, 30]
        first = next(step for step, _, psnr in run.curve
                     if psnr >= run.final_psnr - speed.QUALITY_MARGIN_DB)
        assert run.steps_to_quality == first
        assert 0 < run.seconds_to_quality <= run.seconds
        assert run.auto_stop.stop == "auto" and 1 <= run.auto_stop.steps <= 30
        assert [(b.stop, b.steps) for b in run.budgets] == [("fixed", 10)]
    lines = speed.format_quality(runs)
    assert any(line.startswith("bf16 - fp32 final PSNR") for line in lines)
    bf16 = [run for run in runs if run.precision == "bf16"]
    auto_line = next(line for line in lines if line.startswith("  bf16 auto-stop (max 30)"))
    assert f"PSNR {bf16[0].auto_stop.psnr:6.2f} dB" in auto_line
    assert f"steps {bf16[0].auto_stop.steps:6.0f} (max {bf16[0].auto_stop.steps})" in auto_line
    assert any(line.startswith("  bf16 fixed 10 ") for line in lines)


def test_machine_description_names_the_cpu_and_its_bf16_features():
    amx = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
           "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    epyc = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx512f avx512_bf16\n"
    assert speed.cpu_model_and_flags(amx) == ("Intel(R) Xeon(R) Platinum 8480+",
                                              {"fpu", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    assert speed.cpu_model_and_flags(epyc)[0] == "AMD EPYC 9R14"
    assert "amx_tile" not in speed.cpu_model_and_flags(epyc)[1]
    described = speed.machine_description("cpu")
    assert described.startswith("CPU ") and f"{torch.get_num_threads()} threads" in described
    assert ("AMX yes" in described) != ("AMX no" in described)


def test_bench_variant_b_compiles_as_auto_would_for_the_full_run():
    paper, _, bundled, _ = speed.full_cases()[0]
    assert speed.wants_compile_for(paper, 3000) and not speed.wants_compile_for(paper, 50)
    assert not speed.wants_compile_for(bundled, 300)


def _variant(name, step_seconds, warmup_seconds, compiled=False):
    return speed.VariantReport(variant=name, steps_per_second=1 / step_seconds, step_seconds=step_seconds,
                               warmup_seconds=warmup_seconds, first_loss=0.0, peak_memory_growth=None,
                               flops_per_step=1, effective_flops_per_second=1.0,
                               executed_flops_per_second=1.0, compile=compiled)


def test_projection_adds_set_up_and_the_steps_of_each_phase():
    paper = speed.full_cases()[0][0]
    variants = {speed.PROJECT: _variant(speed.PROJECT, 2.0, 50.0),
                speed.PROJECT_FROZEN: _variant(speed.PROJECT_FROZEN, 0.25, 62.25, compiled=True),
                speed.PROJECT_NEVER_FROZEN: _variant(speed.PROJECT_NEVER_FROZEN, 1.5, 61.5, compiled=True)}
    freeze_at = paper.configs()[1].freeze_g1_at
    projection = speed.project_run(paper, variants, {"frozen": freeze_at + 400, "never frozen": 480})
    assert projection.run == "paper run at 256x256" and projection.freeze_at == freeze_at
    assert (projection.steps_before_freeze, projection.steps_after_freeze) == (freeze_at, 400)
    # (f)'s warm-up is one step of each phase plus set-up and both compilations: 60 s here.
    assert projection.set_up_seconds == pytest.approx(60.0)
    assert projection.seconds == pytest.approx(60 + freeze_at * 2.0 + 400 * 0.25)
    assert projection.never_frozen_seconds == pytest.approx(60 + 480 * 1.5)
    short = speed.project_run(paper, variants, {"frozen": freeze_at // 2, "never frozen": 480})
    assert (short.steps_before_freeze, short.steps_after_freeze) == (freeze_at // 2, 0)
    lines = speed.format_projection(projection)
    assert lines[0].startswith(f"  default paper run at 256x256: projected {projection.seconds:.0f} s (")
    assert "set-up and compilation" in lines[0] and "--freeze-g1-at never" in lines[1]


# The StyleGAN2 runs of tests/method/test_fit.py.
FAST = OptimizerConfig(steps=8, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                       schedule="constant", perceptual_weight=0.0, precision="fp32",
                       preview_every=3, stop="fixed", compile=False)


@pytest.mark.parametrize("split, finetune", [(3, "all"), (2, "g2")])
def test_speed_reference_and_project_compute_the_same_stylegan2_optimisation(sg2, split, finetune):
    image, hole = inpainting_problem(sg2, seed=2)
    model_config = MultiLatentConfig(num_codes=3, split_layer=split, finetune=finetune)
    optimizer_config = replace(FAST, steps=5, schedule="cosine")
    reference = speed.reference_for(sg2, image, hole, model_config, optimizer_config, seed=2,
                                    perceptual=None)
    assert isinstance(reference, speed.ReferenceStyleGAN2Inpainting)
    losses = [reference.step() for _ in range(5)]
    project = inpaint(sg2, image, hole, model_config, optimizer_config, seed=2)
    assert losses == pytest.approx(project.loss_history, rel=1e-5) and losses[-1] < losses[0]
    with torch.no_grad():
        torch.testing.assert_close(((reference.image()[0] + 1) / 2).clamp(0, 1), project.output,
                                   atol=1e-5, rtol=0)


def test_speed_has_a_stylegan2_256_case_counted_on_the_meta_device():
    (case,) = speed.stylegan2_cases()
    assert case.name == "stylegan2-paper"
    assert case.generator == StyleGAN2Config.official(256)
    assert "256x256 StyleGAN2" in case.describe() and "N=30, k=7" in case.describe()
    reference, project = speed.step_flops(case, speed.REFERENCE), speed.step_flops(case, speed.PROJECT)
    assert project == pytest.approx(reference, rel=0.01)  # same maths, no cheaper conv here


def test_batched_case_times_both_and_finds_the_batch_equal(tiny_generator):
    images = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(seed)) for seed in range(3)]
    hole = torch.zeros(16, 16)
    hole[4:11, 5:12] = 1
    config = OptimizerConfig(steps=6, freeze_g1_at=3, precision="fp32", perceptual_weight=0.0,
                             stop="fixed", compile=False)
    run = speed.batched_speed(tiny_generator, images, [hole] * 3,
                              MultiLatentConfig(num_codes=2, split_layer=3), config, rounds=2)
    assert (run.members, run.steps, run.freeze_at, run.threads) == (3, 6, 3, 1)
    assert len(run.sequential_seconds) == len(run.batched_seconds) == 2
    assert run.max_abs_difference == 0.0 and run.same_steps
    assert run.batched_images_per_second == 3 / sorted(run.batched_seconds)[1]
    line = speed.format_batched([run])[0]
    assert "3 fills of 6 steps, G1 frozen after 3" in line and "max |diff| 0.0e+00, same steps" in line


def test_batched_command_reports_images_per_second(tmp_path):
    out = tmp_path / "batched.json"
    command = [sys.executable, "-m", "ganprior_core", "bench-speed", "--batched", "2",
               "--batched-steps", "2", "--families", "stylegan2", "--rounds", "1", "--threads", "1",
               "--json", str(out)]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "bundled StyleGAN2 64x64: 2 fills of 2 steps" in completed.stdout
    assert "images/s" in completed.stdout and "same steps" in completed.stdout
    assert json.loads(out.read_text())[0]["members"] == 2


def test_batched_fills_of_a_speed_case_with_its_perceptual_loss():
    """--batched with --cases/--quick: the case's configuration, VGG16 loss included, batched
    against sequential, and the batch still equal to the sequential fills."""
    case = speed.quick_cases()[0]
    run = speed.case_batched_speed(case, members=2, steps=4, rounds=1)
    assert (run.prior, run.members, run.steps, run.freeze_at) == ("tiny-paper PGGAN 16x16", 2, 4, 2)
    assert run.max_abs_difference == 0.0 and run.same_steps
