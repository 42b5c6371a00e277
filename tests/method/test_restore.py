"""Restoration through the optimisation (ganprior_core/method/restore.py): every degradation's
result is consistent with its observation, the operator's gradient reaches the codes, auto-stop's
held-out entries never enter the loss, chains work in one run, the prior is never changed and the
same seed gives the same result; refusals come before any work."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ganprior_core import (
    Downsample,
    Gray,
    Hole,
    StartsConfig,
    preset,
    restoration_chain,
    restore,
    restore_any_size,
)
from ganprior_core.method import restore as restore_module
from ganprior_core.method.auto_stop import AutoStopConfig, holdout_mask
from ganprior_core.method.degradations import luma
from ganprior_core.method.losses import LossWeights, ObservationLoss
from ganprior_core.method.multi_latent import MultiLatentModel
from ganprior_core.method.restore import TASK_CHANGES, _ObservationTarget, restoration_task, task_defaults
from tests.tiny_priors import assert_same_state, inpainting_problem, state_of

pytestmark = pytest.mark.usefixtures("one_thread")

# restore's task defaults as chosen (docs/restoration.md, "Defaults").
CHOSEN = {"sr": ({}, {}), "colorize": ({}, {})}
FIXED = dict(stop="fixed", precision="fp32", compile=False, perceptual_weight=0.0,
             schedule="constant")


def configs(prior, steps=6, **changes):
    model, optimizer = preset("paper", prior.config)
    return replace(model, num_codes=3), replace(optimizer, steps=steps, **{**FIXED, **changes})


def degradations(hole_16: torch.Tensor) -> dict:
    return {"area x2": Downsample(2, "area"), "bicubic x2": Downsample(2, "bicubic"),
            "gray": Gray(), "hole": Hole(hole_16),
            "gray + x2 + hole": restoration_chain(gray=True, scale=2, downsampler="area",
                                                  hole_mask=hole_16[::2, ::2])}


@pytest.mark.parametrize("name", ["area x2", "bicubic x2", "gray", "hole", "gray + x2 + hole"])
def test_each_degradation_fits_and_returns_a_result_consistent_with_its_observation(tiny_prior, name):
    truth, hole = inpainting_problem(tiny_prior)
    degradation = degradations(hole)[name]
    observation = degradation.observe(truth[None])[0]
    before = state_of(tiny_prior)
    model, optimizer = configs(tiny_prior, steps=8)
    result = restore(tiny_prior, observation, degradation, model, optimizer, seed=1)
    assert_same_state(before, tiny_prior)  # the prior is never changed
    assert result.composite.shape == result.output.shape == (3, 16, 16)
    assert result.projection is not None and result.consistent, result.notes
    restored = result.restored[None]
    if name == "area x2":  # the area-downsampled result is the input, to float rounding
        assert (F.avg_pool2d(restored, 2)[0] - observation).abs().max() < 1e-5
    elif name == "gray":  # the result's luma is the input's (no clipping: desaturated instead)
        assert (luma(restored)[0] - observation).abs().max() < 1e-5
    elif name == "hole":  # known pixels bit for bit
        known = hole == 0
        assert torch.equal(result.composite[:, known], observation[:, known])
    elif name == "gray + x2 + hole":
        known = hole[::2, ::2] == 0
        down = F.avg_pool2d(luma(restored), 2)[0, 0]
        assert (down[known] - observation[0][known]).abs().max() < 1e-5
    else:  # bicubic: to half a grey level
        assert result.projection.max_error <= 0.5 / 255
    # The operator's gradient reaches the codes: the fit improves.
    assert len(result.loss_history) == 8 and result.loss_history[-1] < result.loss_history[0]


def test_the_loss_gradient_reaches_the_codes_through_the_operator(tiny_prior):
    truth, _ = inpainting_problem(tiny_prior)
    model_config, _ = configs(tiny_prior)
    model = MultiLatentModel(tiny_prior, model_config, 0, torch.device("cpu"))
    degradation = restoration_chain(gray=True, scale=2, downsampler="bicubic")
    y = degradation.observe(truth[None])
    loss_fn = ObservationLoss(lambda x: degradation.observe(x), y * 2 - 1, torch.ones(1, 1, 8, 8),
                              LossWeights(perceptual=0.0), None)
    loss_fn(model()).backward()
    grads = [p.grad for p in model.latent_parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_held_out_entries_never_enter_the_loss(tiny_generator):
    """Scrambling the observation where auto-stop holds out changes nothing the optimiser sees."""
    truth, _ = inpainting_problem(tiny_generator)
    degradation = Downsample(2, "area")
    observation = degradation.observe(truth[None])[0]
    rule = AutoStopConfig(check_every=1, patience=10 ** 6, smoothing=0.0, holdout_fraction=0.1,
                          rewind=1.0)
    model, optimizer = configs(tiny_generator, steps=10, stop="auto", auto_stop=rule)
    target = _ObservationTarget(degradation, observation[None], lambda x: x, 16, torch.ones(8, 8))
    held = target.holdout(0, rule).bool()
    assert held.any() and not held.all()
    scrambled = observation.clone()
    scrambled[:, held] = 1 - scrambled[:, held]
    first = restore(tiny_generator, observation, degradation, model, optimizer, seed=0)
    second = restore(tiny_generator, scrambled, degradation, model, optimizer, seed=0)
    # (the image returned may differ: auto-stop chooses it by the held-out error, which changed)
    assert first.loss_history == second.loss_history and first.steps_run == 10


def test_holdout_on_a_small_observation_grid_keeps_auto_stop_on():
    """On an 8x8 grid of a 64x64 prior (x8) a few entries are still held out: the minimum counts
    the prior's pixels, each entry covering 64 of them; holdout_mask's own count would be none."""
    rule = AutoStopConfig()
    assert holdout_mask(torch.zeros(8, 8), 0, rule).sum() == 0
    target = _ObservationTarget(Downsample(8, "area"), torch.rand(1, 3, 8, 8), lambda x: x, 64,
                                torch.ones(8, 8))
    assert 0 < target.holdout(0, rule).sum() < 8
    wide = _ObservationTarget(Gray(), torch.rand(1, 1, 10, 30), lambda x: x, 64, torch.ones(10, 30))
    assert wide.holdout(0, rule).shape == (10, 30)  # any aspect


def test_same_seed_same_result_and_auto_stop_runs_for_super_resolution(tiny_prior):
    truth, _ = inpainting_problem(tiny_prior)
    degradation = Downsample(2, "area")
    observation = degradation.observe(truth[None])[0]
    model, optimizer = configs(tiny_prior, steps=30, stop="auto",
                               auto_stop=AutoStopConfig(check_every=5, patience=2))
    first = restore(tiny_prior, observation, degradation, model, optimizer, seed=4)
    second = restore(tiny_prior, observation, degradation, model, optimizer, seed=4)
    assert torch.equal(first.composite, second.composite) and first.loss_history == second.loss_history
    assert first.best_step is not None  # auto-stop watched held-out entries: SR leaves detail unseen


def test_any_size_results_are_scale_times_the_input_and_consistent(tiny_generator):
    observation = torch.rand(3, 6, 9, generator=torch.Generator().manual_seed(0))
    model, optimizer = configs(tiny_generator, steps=3)
    for fit in ("resize", "pad"):
        result = restore_any_size(tiny_generator, observation, Downsample(2, "area"), model,
                                  optimizer, seed=0, fit=fit)
        assert result.composite.shape == result.output.shape == (3, 12, 18)
        assert (F.avg_pool2d(result.composite[None], 2)[0] - observation).abs().max() < 1e-5
    colour = torch.rand(3, 10, 20, generator=torch.Generator().manual_seed(1))
    gray = restore_any_size(tiny_generator, colour, Gray(), model, optimizer, seed=0)
    assert gray.composite.shape == (3, 10, 20)
    assert any("luma" in note for note in gray.notes)  # a colour input is read as its luma
    assert (luma(gray.composite[None])[0] - luma(colour[None])[0]).abs().max() < 1e-5


def test_several_starts_are_ranked_by_agreement_of_their_projected_results(tiny_generator):
    truth, _ = inpainting_problem(tiny_generator)
    observation = Gray().observe(truth[None])[0]
    model, optimizer = configs(tiny_generator, steps=4)
    result = restore(tiny_generator, observation, Gray(), model, optimizer, seed=0,
                     starts=StartsConfig(3, 2, 2))
    assert len(result.starts) == 3 and all(record.agreement is not None for record in result.starts)
    assert len(result.alternatives) == 1 and result.alternatives[0].consistent


@pytest.mark.parametrize("name", ["bicubic x2", "gray + x2 + hole"])
def test_starts_side_by_side_see_their_image_through_the_one_operator(tiny_prior, name):
    # The starts of one restoration share its operator: vmap runs it for all of them.
    truth, hole = inpainting_problem(tiny_prior)
    degradation = degradations(hole)[name]
    observation = degradation.observe(truth[None])[0]
    model, optimizer = configs(tiny_prior, steps=6)
    apart, together = (restore(tiny_prior, observation, degradation, model, optimizer, seed=0,
                               starts=StartsConfig(3, 2, 2, vectorize))
                       for vectorize in ("loop", "vmap"))
    assert [(r.seed, r.continued) for r in together.starts] == [(r.seed, r.continued)
                                                                for r in apart.starts]
    for x, y in zip(apart.candidates(), together.candidates()):
        assert (x.output - y.output).abs().max() < 1e-4 and x.seed == y.seed
        assert x.loss_history == pytest.approx(y.loss_history, rel=1e-4)
    assert not any("member after member" in note for note in together.notes)  # vmap ran


@pytest.mark.parametrize("call, message", [
    (lambda p, m, o: restore(p, torch.rand(3, 16, 16), Downsample(2, "area"), m, o, 0),
     "restores to 32x32 but the prior makes 16x16"),
    (lambda p, m, o: restore(p, torch.rand(16, 16), Gray(), m, o, 0), "observation must be"),
    (lambda p, m, o: restore(p, torch.rand(1, 16, 16), Hole(torch.zeros(16, 16)), m, o, 0),
     "one-channel observation needs a degradation with Gray"),
    (lambda p, m, o: restore(p, torch.rand(3, 16, 16), "gray", m, o, 0), "must be a Degradation"),
    (lambda p, m, o: restore(p, torch.rand(3, 16, 16), Hole(torch.zeros(8, 8)), m, o, 0),
     "must be on the observation's grid"),
    (lambda p, m, o: restore(p, torch.rand(3, 16, 16) + 2, Gray(), m, o, 0), "observation"),
    (lambda p, m, o: restore_any_size(p, torch.rand(3, 3000, 3000), Downsample(8, "area"), m, o, 0),
     "over the"),
    (lambda p, m, o: restore(p, torch.rand(3, 16, 16), Gray(), m, o, -1), "seed"),
])
def test_refusals_come_before_any_work(tiny_generator, call, message):
    model, optimizer = configs(tiny_generator)
    with pytest.raises(ValueError, match=message):
        call(tiny_generator, model, optimizer)



@pytest.mark.parametrize("name, task", [("area x2", "sr"), ("bicubic x2", "sr"), ("gray", "colorize"),
                                        ("gray + x2 + hole", "colorize"), ("hole", None)])
def test_each_degradation_gets_its_tasks_defaults(tiny_generator, name, task):
    _, hole = inpainting_problem(tiny_generator)
    degradation = degradations(hole)[name]
    assert restoration_task(degradation) == task
    model, optimizer = task_defaults(tiny_generator.config, degradation)
    paper_model, paper_optimizer = preset("paper", tiny_generator.config)
    if task is None:  # holes alone: inpainting's settings, unchanged
        assert (model, optimizer) == (paper_model, paper_optimizer)
    else:
        model_changes, optimizer_changes = TASK_CHANGES[task]
        assert model == replace(paper_model, **model_changes)
        assert optimizer == replace(paper_optimizer, **optimizer_changes)


def test_the_chosen_defaults_are_those_the_measurements_support():
    # docs/restoration.md, "Defaults": chosen on held-out facades 10,005,200-.
    assert TASK_CHANGES == CHOSEN


def test_defaults_apply_only_where_the_caller_gives_none(tiny_prior, monkeypatch):
    truth, _ = inpainting_problem(tiny_prior)
    degradation = Downsample(2, "area")
    observation = degradation.observe(truth[None])[0]
    monkeypatch.setitem(restore_module.TASK_CHANGES, "sr", ({"num_codes": 2}, {"steps": 3, **FIXED}))
    paper_model, paper_optimizer = preset("paper", tiny_prior.config)
    chosen_model = replace(paper_model, num_codes=2)
    by_default = restore(tiny_prior, observation, degradation, None, None, seed=1)
    given = restore(tiny_prior, observation, degradation, chosen_model,
                    replace(paper_optimizer, steps=3, **FIXED), seed=1)
    assert by_default.steps_run == 3
    assert torch.equal(by_default.composite, given.composite)
    # Settings given are used as given; the other one still comes from the task.
    own_optimizer = replace(paper_optimizer, steps=5, **FIXED)
    mixed = restore(tiny_prior, observation, degradation, None, own_optimizer, seed=1)
    assert mixed.steps_run == 5
    assert torch.equal(mixed.composite,
                       restore(tiny_prior, observation, degradation, chosen_model, own_optimizer,
                               seed=1).composite)
    own_model = replace(paper_model, num_codes=3)
    other = restore(tiny_prior, observation, degradation, own_model, None, seed=1)
    assert other.steps_run == 3 and not torch.equal(other.composite, by_default.composite)
