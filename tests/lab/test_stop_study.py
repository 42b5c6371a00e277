"""`stop-study`: auto-stop rules replayed on recorded runs. A replay must reproduce what the rule
does in a real run, and its arithmetic is checked on a hand-made recording."""
import json

import pytest
import torch

from ganprior_core import metrics
from ganprior_core.checkpoints import save_generator
from ganprior_core.cli import main
from ganprior_core.families import STYLEGAN2
from ganprior_core.lab import stop_study
from ganprior_core.method.auto_stop import AutoStopConfig
from ganprior_core.method.presets import preset
from ganprior_core.networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from ganprior_core.optimize import inpaint
from tests.tiny_priors import tiny_stylegan2

pytestmark = pytest.mark.usefixtures("one_thread")

# Held-out error falls to its best at step 75 and rises; the hole is best at step 25.
RUN = {"seed": 1, "hole": "box", "checks": [
    [0, 3.0, 10.0, 0.1], [25, 2.0, 16.0, 0.4], [50, 1.0, 15.0, 0.3], [75, 0.5, 14.0, 0.2],
    [100, 0.6, 13.0, 0.2], [125, 0.7, 12.0, 0.1], [150, 0.8, 11.0, 0.1]]}


def test_a_replay_stops_and_rewinds_as_the_rule_says_on_a_hand_made_recording():
    rule = AutoStopConfig(patience=2, smoothing=0.0, rewind=0.5)
    replayed = stop_study.replay(RUN, rule)
    # Best at 75; 100 and 125 do not improve: stop at 125. 0.5 x 75 = 37.5 is as near to 25 as
    # to 50: the later one.
    assert (replayed.stopped_at, replayed.returned, replayed.psnr_hole) == (125, 50, 15.0)
    early = stop_study.replay(RUN, AutoStopConfig(patience=1, smoothing=0.0, rewind=0.25))
    assert (early.stopped_at, early.returned, early.psnr_hole, early.ssim_hole) == (100, 25, 16.0, 0.4)
    assert stop_study.fixed_steps(RUN, 60) == stop_study.Replayed(50, 50, 15.0, 0.3)


def test_the_report_pairs_each_rule_with_the_reference_on_the_same_runs():
    other = {**RUN, "hole": "strokes", "checks": [[s, e, p + 1, q] for s, e, p, q in RUN["checks"]]}
    config = stop_study.StudyConfig("p", "o", facades=1, fixed=(25,))
    reference = AutoStopConfig(patience=2, smoothing=0.0, rewind=0.5)  # returns step 50 on both
    report = stop_study.format_report(config, [RUN, other], reference,
                                      [("early", AutoStopConfig(patience=1, smoothing=0.0, rewind=0.25))])
    fixed = next(line for line in report.splitlines() if line.startswith("| fixed 25 steps"))
    early = next(line for line in report.splitlines() if line.startswith("| early"))
    # step 25 against step 50: +1 dB on both runs, SSIM +0.1 (x100 = +10)
    assert fixed == "| fixed 25 steps | +1.00 ± 0.00 | +1.00 | +1.00 | +10.00 ± 0.00 | 25 | 25 |"
    assert early == "| early | +1.00 ± 0.00 | +1.00 | +1.00 | +10.00 ± 0.00 | 100 | 25 |"
    assert "hole PSNR 15.50 dB, stops at step 125 and returns step 50" in report
    assert "would give +1.00 ± 0.00 dB" in report  # the best check, step 25, on both runs


def test_a_replay_of_the_recording_reproduces_the_real_run(monkeypatch):
    fast = AutoStopConfig(check_every=2, patience=3, smoothing=0.5, holdout_fraction=0.1, rewind=0.5)
    monkeypatch.setattr(STYLEGAN2, "auto_stop", fast)  # the family rule, made quick
    prior = tiny_stylegan2()
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    hole = torch.zeros(16, 16)
    hole[4:12, 3:9] = 1
    checks = stop_study.record_run(prior, image, hole, "paper", seed=3, until=300)
    model_config, optimizer_config = preset("paper", prior.config)
    real = inpaint(prior, image, hole, model_config, optimizer_config, seed=3)
    replayed = stop_study.replay({"checks": checks}, fast)
    assert real.steps_run < 300 and "stopped early" in real.stop_reason
    assert (replayed.stopped_at, replayed.returned) == (real.steps_run, real.best_step)
    assert replayed.psnr_hole == pytest.approx(metrics.measure(real.composite, image, hole).psnr_hole)


def test_cli_records_resumes_and_refuses_another_preset_in_the_same_folder(tmp_path, capsys):
    torch.manual_seed(0)
    prior = tmp_path / "sg2_64.safetensors"
    save_generator(StyleGAN2Generator(StyleGAN2Config(64, (8, 8, 8, 8, 8), z_dim=8, w_dim=8,
                                                      mapping_layers=1)).eval(), prior)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"late": {"rewind": 0.5}, "eager": {"patience": 1}}))
    args = ["stop-study", "--checkpoint", str(prior), "--facades", "1", "--until", "60",
            "--fixed", "25,50", "--rules", str(rules), "--threads", "1", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr().out
    recorded = sorted((tmp_path / "out" / "runs").glob("*.json"))
    assert [path.name.split("_")[1] for path in recorded] == ["box.json", "strokes.json"]
    assert all(len(json.loads(path.read_text())["checks"]) == 3 for path in recorded)  # 0, 25, 50
    assert "2 recorded runs" in out and "| late |" in out and "| fixed 50 steps |" in out
    before = [path.read_bytes() for path in recorded]
    assert main(args) == 0 and "checks recorded" not in capsys.readouterr().out  # resumed
    assert [path.read_bytes() for path in recorded] == before
    assert main([*args[:-2], "--preset", "single-z", *args[-2:]]) == 2
    assert "differs in: preset" in capsys.readouterr().err


@pytest.mark.parametrize("rules, message", [
    ({"x": {"holdout_fraction": 0.1}}, "a replay can change only patience, smoothing, rewind"),
    ({"x": {"rewind": 2}}, "rule 'x': auto-stop rewind must be in"),
    ([1, 2], "must map rule names to settings"),
])
def test_cli_refuses_rules_a_replay_cannot_honour(tmp_path, capsys, rules, message):
    prior = tmp_path / "sg2.safetensors"
    save_generator(tiny_stylegan2(), prior)
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    code = main(["stop-study", "--checkpoint", str(prior), "--rules", str(path), "--out", str(tmp_path / "o")])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_prior_the_facades_cannot_be_scored_on_before_writing(tmp_path, capsys):
    prior = tmp_path / "sg2.safetensors"
    save_generator(tiny_stylegan2(), prior)  # 16x16: the held-out facades are 64x64
    code = main(["stop-study", "--checkpoint", str(prior), "--out", str(tmp_path / "o")])
    assert code == 2 and "procedural facades are 64x64" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
