"""The starts study replays multi-start schedules on recorded runs: the start whose fill agrees
best with the others is the one whose result counts, explored starts cost their steps up to the
comparison, and a step cap returns what the stop rule would have returned there."""
import pytest
import torch

from ganprior_core.lab import start_study
from ganprior_core.method.auto_stop import AutoStopConfig

RULE = AutoStopConfig(check_every=25, patience=2, smoothing=0.0, rewind=1.0)


def recorded(start: int, fill_value: float, psnr: float, steps: int, tiles: list[float]) -> dict:
    checks = [{"step": 25 * i, "tiles": error, "psnr_hole": psnr - 1 + 0.1 * i, "ssim_hole": 0.5}
              for i, error in enumerate(tiles)]
    fills = torch.full((len(checks) + 1, 3, 4), fill_value)
    return {"facade": 1, "hole": "box", "start": start, "checks": checks, "fills": fills,
            "steps_run": steps, "psnr_hole": psnr, "ssim_hole": 0.6, "seconds": 1.0}


def test_the_start_closest_to_the_others_is_chosen_and_explored_starts_cost_their_steps():
    runs = [recorded(0, 0.0, 10.0, 300, [5, 4, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            recorded(1, 0.5, 20.0, 200, [5, 4, 3, 2, 1, 1, 1, 1, 1]),
            recorded(2, 0.6, 15.0, 250, [5, 4, 3, 2, 1, 1, 1, 1, 1, 1, 1])]
    (outcome,) = start_study.replay(runs, start_study.Schedule(3, 50), RULE)
    # fill 0.5 is 0.1 from 0.6 and 0.5 from 0.0: the closest to the others
    assert outcome["psnr_hole"] == 20.0 and outcome["steps"] == 200
    assert sorted(outcome["explored"]) == [51, 51]
    single = start_study.replay(runs, start_study.Schedule(), RULE)
    assert [o["psnr_hole"] for o in single] == [10.0, 20.0, 15.0]


def test_a_cap_returns_what_the_rule_would_return_there():
    run = recorded(0, 0.0, 30.0, 300, [5, 4, 3, 3.5, 2, 1, 1, 1, 1, 1, 1, 1, 1])
    (outcome,) = start_study.replay([run], start_study.Schedule(max_steps=80), RULE)
    # checks at 0, 25, 50, 75 seen: best at 50 (rewind 1), whose recorded score is 29 + 0.2
    assert outcome["steps"] == 80 and outcome["psnr_hole"] == pytest.approx(29.2)


def test_the_time_model_recovers_known_costs():
    runs = [dict(recorded(i, 0.0, 10.0, steps, [1]), seconds=2.0 + 0.07 * min(steps, 100)
                 + 0.02 * max(0, steps - 100)) for i, steps in enumerate([80, 150, 400, 900])]
    setup, full, late = start_study.time_model(runs, freeze_at=100)
    assert (setup, full, late) == pytest.approx((2.0, 0.07, 0.02), abs=1e-9)


def test_runs_that_only_recorded_their_ends_after_the_same_full_steps_get_no_time_model():
    # Every run ran the 100 full steps: set-up and a full step are one unknown.
    runs = [dict(recorded(i, 0.0, 10.0, steps, [1]), seconds=2.0 + 0.07 * 100 + 0.02 * (steps - 100))
            for i, steps in enumerate([150, 400, 900])]
    assert start_study.time_model(runs, freeze_at=100) is None
    summary = start_study.summarise(start_study.replay(runs, start_study.Schedule(), RULE), None, 100)
    assert summary["seconds_mean"] is None and summary["steps_mean"] == pytest.approx(1450 / 3)


def test_the_times_checks_were_reached_separate_set_up_full_and_late_steps():
    def at(steps: int) -> float:
        return 2.0 + 0.07 * min(steps, 100) + 0.02 * max(0, steps - 100)

    runs = []
    for i, steps in enumerate([150, 400, 900]):
        run = dict(recorded(i, 0.0, 10.0, steps, [1] * (steps // 25)), seconds=at(steps))
        for check in run["checks"]:
            check["seconds"] = at(check["step"] + 1)
        runs.append(run)
    assert start_study.time_model(runs, freeze_at=100) == pytest.approx((2.0, 0.07, 0.02), abs=1e-9)


def test_a_study_runs_the_preset_with_its_changes_and_names_them():
    from ganprior_core.networks.pggan import PGGANConfig
    prior_config = PGGANConfig(16, (32, 32, 16), latent_dim=32)
    plain = start_study.StartsStudyConfig("prior", "out")
    assert plain.variant() == "preset"
    assert plain.configs(prior_config)[1].freeze_g1_at == 100
    changed = start_study.StartsStudyConfig("prior", "out", lr_generator=0.003, freeze_g1_at=25)
    model, optimizer = changed.configs(prior_config)
    assert (optimizer.lr_generator, optimizer.freeze_g1_at) == (0.003, 25)
    assert changed.variant() == "lr_generator=0.003, freeze_g1_at=25"
    assert start_study.StartsStudyConfig("prior", "out", freeze_g1_at=None).variant() == "freeze_g1_at=None"
    with pytest.raises(ValueError, match="freeze_g1_at"):
        start_study.StartsStudyConfig("prior", "out", freeze_g1_at=0).validate()
