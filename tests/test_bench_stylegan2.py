"""`bench` on a StyleGAN2 prior: every method and ablation runs, and the report names the
StyleGAN2 choices of each row."""
import csv

import pytest
import torch
from test_stylegan2_method import tiny_stylegan2

from ganprior_core import imaging
from ganprior_core.checkpoints import save_generator
from ganprior_core.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_runs_every_method_and_ablation_on_a_stylegan2_prior(tmp_path):
    prior = tmp_path / "sg2.safetensors"
    save_generator(tiny_stylegan2(), prior)
    images = tmp_path / "images"
    images.mkdir()
    for index in range(2):
        imaging.save_image(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(index)),
                           images / f"{index}.png")
    out = tmp_path / "bench"
    assert main(["bench", "--checkpoint", str(prior), "--images", str(images), "--masks", "strokes",
                 "--methods", "paper,mganprior,single-z,dip,diffusion-fill", "--ablations",
                 "random-init,frozen,alpha-only", "--stop", "fixed", "--steps", "2", "--threads", "1",
                 "--out", str(out)]) == 0
    with open(out / "results.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    methods = {"paper", "mganprior", "single-z", "dip", "diffusion-fill", "paper-random-init",
               "paper-frozen", "paper-alpha-only"}
    assert {row["method"] for row in rows} == methods and len(rows) == 2 * len(methods)
    report = (out / "report.md").read_text()
    assert "k=3 (16×8×8 features), codes in w+, G₂ styles learnt, noise const" in report
    assert "`single-z`: N=1, k=5 (8×16×16 features), codes in w+, noise const, no α" in report
    assert "`paper-random-init`: randomly initialised generator" in report


def test_a_directory_made_under_another_auto_stop_rule_is_not_resumed(tmp_path, capsys):
    import json

    from ganprior_core.families import STYLEGAN2
    prior = tmp_path / "sg2.safetensors"
    save_generator(tiny_stylegan2(), prior)
    images = tmp_path / "images"
    images.mkdir()
    imaging.save_image(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)), images / "0.png")
    out = tmp_path / "bench"
    args = ["bench", "--checkpoint", str(prior), "--images", str(images), "--methods", "single-z",
            "--steps", "2", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    settings = json.loads((out / "run.json").read_text())
    assert settings["auto_stop"]["rewind"] == STYLEGAN2.auto_stop.rewind
    assert f"{STYLEGAN2.auto_stop.rewind:g} × the best one's step returned" in (out / "report.md").read_text()
    del settings["auto_stop"]  # as a directory made before the StyleGAN2 rule existed
    (out / "run.json").write_text(json.dumps(settings))
    capsys.readouterr()
    assert main(args) == 2 and "differs in: auto_stop" in capsys.readouterr().err
