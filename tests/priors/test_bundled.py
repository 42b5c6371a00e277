"""The shipped prior does its job on the demo's facade (never seen in training): with the library's
defaults (preset `paper`, auto-stop) it fills the box over the window grid better than the naive
fills. This is one image, not the average; the 50-image table is in MODEL_CARD.md.

Measured with the defaults on this image (AMD EPYC, bf16), against 9.24 dB for the diffusion fill
and 8.68 dB for the mean fill: with 1 thread auto-stop ended after 350 of at most 3000 steps and
returned the image of step 225 (17.23 dB in the hole); with 2 threads, whose sums run in another
order, after 325 steps with the image of step 200 (16.45 dB)."""
import pytest
import torch

from ganprior_core import metrics
from ganprior_core.checkpoints import load_generator
from ganprior_core.cli import main
from ganprior_core.families import family_of
from ganprior_core.lab.baselines import diffusion_fill, mean_fill
from ganprior_core.lab.demo import demo_problem
from ganprior_core.lab.procedural import EVALUATION_SEED_START
from ganprior_core.optimize import inpaint, preset
from ganprior_core.priors import bundled_prior_path

MARGIN_DB = 4.0  # half the measured gain of 8.0 dB (1 thread): room for bf16 rounding on other CPUs


def test_bundled_prior_with_the_defaults_beats_naive_fills_inside_the_hole():
    prior = load_generator(bundled_prior_path())
    assert prior.config.resolution == 64
    truth, hole = demo_problem(EVALUATION_SEED_START)
    damaged = truth * (1 - hole) + 0.5 * hole
    model_config, optimizer_config = preset("paper", prior.config)
    result = inpaint(prior, damaged, hole, model_config, optimizer_config, seed=0)

    # The default stops by itself (the held-out error, or auto-stop's 600-step cap), far before the
    # paper's 3000 steps, and says so.
    assert result.steps_run <= 600, result.describe_stop()
    assert result.stop_reason.startswith(("stopped early", "stopped at auto-stop's 600-step limit"))
    ours = metrics.psnr(result.composite, truth, hole)
    diffusion = metrics.psnr(diffusion_fill(damaged, hole), truth, hole)
    mean = metrics.psnr(mean_fill(damaged, hole), truth, hole)
    assert ours > max(diffusion, mean) + MARGIN_DB, (ours, diffusion, mean)
    known = hole == 0
    assert torch.equal(result.composite[:, known], damaged[:, known])


@pytest.mark.parametrize("family, name", [("pggan", "PGGAN"), ("stylegan2", "StyleGAN2")])
def test_demo_runs_with_either_bundled_prior(tmp_path, capsys, family, name):
    out = tmp_path / "demo"
    assert main(["demo", "--prior", family, "--stop", "fixed", "--steps", "2", "--out", str(out)]) == 0
    assert f"with the bundled {name} prior" in capsys.readouterr().out
    assert (out / "metrics.txt").read_text().startswith(f"bundled {name} prior, preset paper")
    assert {path.name for path in out.iterdir()} == {"input.png", "mask.png", "result.png", "truth.png",
                                                     "side_by_side.png", "metrics.txt"}


def test_the_bundled_stylegan2_prior_is_a_64_pixel_stylegan2():
    from ganprior_core.checkpoints import load_checkpoint
    loaded = load_checkpoint(bundled_prior_path("stylegan2"))
    assert family_of(loaded.generator).name == "stylegan2"
    assert loaded.generator.config.resolution == 64
    with pytest.raises(ValueError, match="no bundled prior of family 'biggan'"):
        bundled_prior_path("biggan")
