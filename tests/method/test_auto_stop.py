"""Auto-stop: the held-out pixels, the stopping rule and the best iterate, with values."""
from dataclasses import replace

import pytest
import torch

from ganprior_core.method.auto_stop import AutoStopConfig, StopRule, holdout_mask
from ganprior_core.method.multi_latent import MultiLatentConfig
from ganprior_core.optimize import OptimizerConfig, Progress, inpaint
from tests.tiny_priors import inpainting_problem, tiny_stylegan2

pytestmark = pytest.mark.usefixtures("one_thread")

# Every check is a step, nothing smoothed, the best check's own image returned: the rule's choices
# can be recomputed from the previews.
EVERY_STEP = AutoStopConfig(check_every=1, patience=3, smoothing=0.0, holdout_fraction=0.1, rewind=1.0)
AUTO = OptimizerConfig(steps=40, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                       schedule="constant", perceptual_weight=0.0, precision="fp32",
                       preview_every=1, stop="auto", auto_stop=EVERY_STEP)
MODEL = MultiLatentConfig(num_codes=3, split_layer=2)


def _box_hole(resolution: int) -> torch.Tensor:
    hole = torch.zeros(resolution, resolution)
    quarter = resolution // 4
    hole[quarter:3 * quarter, quarter:2 * quarter] = 1
    return hole


def test_holdout_is_seeded_known_tiles_that_scale_with_resolution():
    config = AutoStopConfig()
    for resolution in (64, 256, 1024):
        hole = _box_hole(resolution)
        held = holdout_mask(hole, seed=3, config=config)
        assert torch.equal(held, holdout_mask(hole, seed=3, config=config))
        assert not torch.equal(held, holdout_mask(hole, seed=4, config=config))
        assert (held * hole).sum() == 0  # only known pixels are held out
        # The same share of the known pixels at every resolution (whole tiles: rounding only).
        share = held.sum() / (hole == 0).sum()
        assert abs(share - config.holdout_fraction) < 0.01, resolution
        # Whole tiles of side resolution/32 on the tile grid.
        tile = resolution // 32
        tiles = held.reshape(32, tile, 32, tile).sum(dim=(1, 3))
        assert set(tiles.unique().tolist()) <= {0.0, float(tile * tile)}
        # Spread over the known region, not bunched in one place.
        rows, cols = held.nonzero(as_tuple=True)
        assert rows.max() - rows.min() > resolution // 2 and cols.max() - cols.min() > resolution // 2


def test_reconstruction_holds_out_tiles_anywhere_and_tiny_known_areas_hold_out_nothing():
    held = holdout_mask(torch.zeros(64, 64), seed=0, config=AutoStopConfig())
    assert abs(held.mean() - 0.05) < 0.01
    rows, cols = held.nonzero(as_tuple=True)
    assert rows.max() - rows.min() > 40 and cols.max() - cols.min() > 40
    almost_all_hole = torch.ones(64, 64)
    almost_all_hole[:2, :2] = 0
    assert holdout_mask(almost_all_hole, seed=0, config=AutoStopConfig()).sum() == 0


def test_stop_rule_stops_after_patience_checks_without_a_new_best():
    rule = StopRule(AutoStopConfig(check_every=10, patience=2, smoothing=0.0))
    errors = [5.0, 4.0, 3.0, 3.5, 2.9, 3.1, 3.2, 1.0]
    stopped_at = None
    for index, error in enumerate(errors):
        rule.record(index * 10, error)
        if rule.should_stop:
            stopped_at = index * 10
            break
    assert (stopped_at, rule.best_step) == (60, 40)


def test_stop_rule_smooths_and_never_picks_a_non_finite_error():
    rule = StopRule(AutoStopConfig(patience=5, smoothing=0.5))
    assert rule.record(0, 4.0) and rule.smoothed == 4.0
    assert rule.record(25, 2.0) and rule.smoothed == 3.0  # 0.5 * 4 + 0.5 * 2
    assert not rule.record(50, float("nan"))
    assert not rule.record(75, 4.0) and rule.smoothed == 3.5
    assert rule.best_step == 25 and rule.checks_since_best == 2


def test_stop_rule_returns_the_check_nearest_the_rewound_step_and_keeps_only_those_it_may_return():
    rule = StopRule(AutoStopConfig(check_every=10, patience=3, smoothing=0.0, rewind=0.75))
    errors = [9.0, 8.0, 7.0, float("inf"), 6.0, 5.0, 4.0, 3.0, 3.5, 3.6, 3.7]
    for index, error in enumerate(errors):
        rule.record(index * 10, error, torch.full((1,), float(index * 10)))
    # best check 70 -> target 52.5: checks 50 and 60 remain candidates, 50 is nearer
    assert rule.should_stop and (rule.best_step, rule.returned_step) == (70, 50)
    assert rule.returned_image.item() == 50
    assert min(rule.candidates) == 50  # 0 ... 40 can never be returned again: dropped
    assert StopRule(AutoStopConfig()).returned_step is None
    tie = StopRule(AutoStopConfig(check_every=10, smoothing=0.0, rewind=0.5))
    for step, error in ((0, 3.0), (10, 2.0), (20, 1.0), (30, 0.5)):
        tie.record(step, error)
    assert tie.returned_step == 20  # 15 is as near to 10 as to 20: the later one


def test_a_rewound_run_returns_the_image_of_the_check_nearest_that_step(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    config = replace(AUTO, lr_generator=0.05, lr_latent=0.3, auto_stop=replace(EVERY_STEP, rewind=0.5))
    previews = {}

    def collect(progress: Progress):
        if progress.preview is not None and not progress.stopped_early:
            previews[progress.step - 1] = progress.preview

    result = inpaint(tiny_generator, image, hole, MODEL, config, seed=0, callback=collect)
    lowest = result.held_out_best_step
    assert result.best_step == round(0.5 * lowest + 0.25) < lowest  # the later of two equally near
    assert torch.equal(result.output, previews[result.best_step])
    assert f"image of step {result.best_step} (held-out error lowest at step {lowest})" in \
        result.describe_stop()


def test_held_out_pixels_get_no_gradient(tiny_generator):
    """Changing the held-out pixels of the target changes nothing the optimiser sees."""
    image, hole = inpainting_problem(tiny_generator)
    never_stops = replace(AUTO, steps=12, auto_stop=replace(EVERY_STEP, patience=10 ** 6))
    held = holdout_mask(hole, seed=0, config=EVERY_STEP).bool()
    assert held.sum() > 0
    scrambled = image.clone()
    scrambled[:, held] = 1 - scrambled[:, held]
    first = inpaint(tiny_generator, image, hole, MODEL, never_stops, seed=0)
    second = inpaint(tiny_generator, scrambled, hole, MODEL, never_stops, seed=0)
    assert first.loss_history == second.loss_history
    assert first.steps_run == second.steps_run == 12


def test_returns_the_best_checks_image_not_the_last_steps(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    # A generator learning rate this high overfits within a few steps: the best check comes early.
    config = replace(AUTO, lr_generator=0.05, lr_latent=0.3)
    held = holdout_mask(hole, seed=0, config=EVERY_STEP)
    previews = {}

    def collect(progress: Progress):
        if progress.preview is not None and not progress.stopped_early:
            previews[progress.step - 1] = progress.preview  # the image after step - 1 updates

    result = inpaint(tiny_generator, image, hole, MODEL, config, seed=0, callback=collect)
    errors = {step: float(((preview - image) ** 2 * held).sum() / (held.sum() * 3))
              for step, preview in previews.items()}
    best = min(errors, key=errors.get)
    assert result.best_step == best < result.steps_run - 1
    assert torch.equal(result.output, previews[best])
    assert not torch.equal(result.output, previews[result.steps_run - 1])
    assert result.steps_run == best + EVERY_STEP.patience
    assert len(result.loss_history) == result.steps_run < config.steps
    assert result.stop_reason.startswith("stopped early")
    known = hole == 0
    assert torch.equal(result.composite[:, known], image[:, known])  # held-out pixels are known


def test_a_run_whose_held_out_error_keeps_falling_runs_to_the_maximum(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    # A small, steady step: the fit (and the held-out error with it) improves all the way.
    gentle = replace(AUTO, steps=15, lr_latent=0.01, lr_alpha=0.01, lr_beta=0.01, lr_generator=1e-4,
                     auto_stop=replace(EVERY_STEP, check_every=5, patience=1))
    result = inpaint(tiny_generator, image, hole, MODEL, gentle, seed=0)
    assert result.steps_run == 15 and result.best_step == 15
    assert result.stop_reason == "reached the 15-step maximum"


def test_fixed_runs_exactly_the_steps_and_same_seed_gives_the_same_stop(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    fixed = inpaint(tiny_generator, image, hole, MODEL, replace(AUTO, stop="fixed"), seed=0)
    assert fixed.steps_run == len(fixed.loss_history) == 40 and fixed.best_step is None
    config = replace(AUTO, lr_generator=0.05, lr_latent=0.3)
    first = inpaint(tiny_generator, image, hole, MODEL, config, seed=2)
    second = inpaint(tiny_generator, image, hole, MODEL, config, seed=2)
    assert (first.steps_run, first.best_step) == (second.steps_run, second.best_step)
    assert torch.equal(first.output, second.output) and first.loss_history == second.loss_history


def test_early_stop_completes_the_progress_and_cancel_still_works(tiny_generator):
    image, hole = inpainting_problem(tiny_generator)
    config = replace(AUTO, lr_generator=0.05, lr_latent=0.3)
    seen: list[Progress] = []
    result = inpaint(tiny_generator, image, hole, MODEL, config, seed=0, callback=seen.append)
    assert result.steps_run < config.steps
    last = seen[-1]
    assert last.stopped_early and (last.step, last.total) == (config.steps, config.steps)
    assert torch.equal(last.preview, result.output)
    assert [p.step for p in seen[:-1]] == list(range(1, result.steps_run + 1))

    before = {name: value.clone() for name, value in tiny_generator.state_dict().items()}

    def cancel(progress):
        if progress.step == 2:
            raise KeyboardInterrupt("cancelled")
    with pytest.raises(KeyboardInterrupt):
        inpaint(tiny_generator, image, hole, MODEL, config, seed=0, callback=cancel)
    assert all(torch.equal(value, tiny_generator.state_dict()[name]) for name, value in before.items())


@pytest.mark.parametrize("bad, message", [
    ({"stop": "sometimes"}, "stop must be one of auto, fixed"),
    ({"auto_stop": AutoStopConfig(holdout_fraction=0.0)}, "holdout fraction"),
    ({"auto_stop": AutoStopConfig(patience=0)}, "patience"),
    ({"auto_stop": AutoStopConfig(smoothing=float("nan"))}, "smoothing"),
    ({"auto_stop": AutoStopConfig(holdout_fraction="0.1")}, "holdout fraction must be a finite number"),
    ({"auto_stop": AutoStopConfig(check_every=2.5)}, "check every must be an integer"),
    ({"auto_stop": {"patience": 3}}, "auto_stop must be an AutoStopConfig"),
])
def test_bad_stop_settings_are_refused(tiny_generator, bad, message):
    image, hole = inpainting_problem(tiny_generator)
    with pytest.raises(ValueError, match=message):
        inpaint(tiny_generator, image, hole, MODEL, replace(AUTO, **bad), seed=0)


def test_a_reconstruction_runs_all_its_steps_and_says_why(tiny_generator):
    image, _ = inpainting_problem(tiny_generator)
    config = replace(AUTO, steps=12, lr_generator=0.05, lr_latent=0.3)  # would stop early with a hole
    result = inpaint(tiny_generator, image, None, MODEL, config, seed=0)
    assert result.steps_run == 12 and result.best_step is None
    assert result.stop_reason == "all 12 steps: auto-stop had nothing to watch"
    assert any("reconstruction runs all 12 steps" in note for note in result.notes)


def test_without_a_chosen_rule_a_run_uses_its_familys_rule(tiny_generator, monkeypatch):
    from ganprior_core.families import STYLEGAN2, auto_stop_rule

    assert auto_stop_rule(tiny_generator.config) == AutoStopConfig(max_steps=600)
    assert auto_stop_rule(tiny_stylegan2().config) == STYLEGAN2.auto_stop
    assert STYLEGAN2.auto_stop != AutoStopConfig()
    assert auto_stop_rule(tiny_stylegan2().config, EVERY_STEP) == EVERY_STEP

    # The StyleGAN2 rule, made fast enough to test, reaches a run that leaves auto_stop unset.
    fast = replace(EVERY_STEP, rewind=0.5)
    monkeypatch.setattr(STYLEGAN2, "auto_stop", fast)
    prior = tiny_stylegan2()
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    hole = _box_hole(16)
    config = replace(AUTO, lr_generator=0.05, lr_latent=0.3)
    family = inpaint(prior, image, hole, MODEL, replace(config, auto_stop=None), seed=0)
    chosen = inpaint(prior, image, hole, MODEL, replace(config, auto_stop=fast), seed=0)
    other = inpaint(prior, image, hole, MODEL, replace(config, auto_stop=EVERY_STEP), seed=0)
    assert family.steps_run < config.steps and family.best_step == chosen.best_step
    assert torch.equal(family.output, chosen.output)
    assert other.best_step == other.held_out_best_step == family.held_out_best_step > family.best_step


def test_auto_stop_says_when_it_returns_the_starting_image():
    from ganprior_core import imaging
    from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
    from ganprior_core.optimize import preset
    torch.manual_seed(1234)
    prior = PGGANGenerator(PGGANConfig(64, (16, 16, 8, 8, 8), latent_dim=16)).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        image = imaging.to_unit_range(prior(torch.randn(1, 16))[0])
    hole = torch.zeros(64, 64)
    hole[16:48, 16:48] = 1
    model, optimizer = preset("paper", prior.config)
    optimizer = replace(optimizer, steps=300, precision="fp32", compile=False, lr_generator=5.0,
                        lr_latent=5.0)
    result = inpaint(prior, image, hole, replace(model, num_codes=2, split_layer=2), optimizer, 0)
    assert result.best_step == 0
    assert any("starting image (step 0)" in note for note in result.notes), result.notes


def test_a_step_cap_ends_the_run_with_the_rules_choice_so_far(tiny_generator):
    """A run that keeps improving is ended at the cap's check; it returns the image the rule
    chose among the checks up to there, the same image an uncapped run had at that step."""
    image, hole = inpainting_problem(tiny_generator)
    patient = replace(EVERY_STEP, check_every=5, patience=100, rewind=0.5)
    previews = {}

    def collect(progress: Progress):
        if progress.preview is not None and not progress.stopped_early:
            previews[progress.step - 1] = progress.preview

    uncapped = inpaint(tiny_generator, image, hole, MODEL, replace(AUTO, auto_stop=patient), seed=0,
                       callback=collect)
    assert uncapped.steps_run == 40
    capped = inpaint(tiny_generator, image, hole, MODEL,
                     replace(AUTO, auto_stop=replace(patient, max_steps=22)), seed=0)
    assert capped.steps_run == 25  # the first check at or after 22
    assert capped.best_step <= 25 and capped.best_step % 5 == 0
    assert torch.equal(capped.output, previews[capped.best_step])
    assert "25-step" not in capped.stop_reason and "22-step limit" in capped.stop_reason
    rule = StopRule(replace(patient, max_steps=22))
    rule.record(0, 1.0)
    assert not rule.should_stop and rule.state().stops_at == 25
    rule.record(25, 0.5)
    assert rule.should_stop and rule.reached_max_steps


def test_a_bad_step_cap_is_refused():
    with pytest.raises(ValueError, match="max steps"):
        AutoStopConfig(max_steps=0).validate()
