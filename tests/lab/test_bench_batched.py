"""`bench --batch B` (lab/bench.py `_run_batch`): a GAN method's rows on several images run as one
inpaint_batch (restore_batch for sr) and write what `--batch 1` writes (only the times differ), resume from the rows a
folder lacks, and shard under torchrun; every other row runs alone."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest

from ganprior_core.lab.bench import BenchConfig, Variant, _units
from tests.cli_harness import assert_refused, no_partials, run_cli, subprocess_env
from tests.lab.test_bench_torchrun import (
    LIMIT,
    TIME_COLUMNS,
    _report_without_times,
    needs_torchrun,
)
from tests.pack_under_test import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGES = ["000-seed10000000", "001-seed10000001", "002-seed10000002"]
# Table order of one image's rows; the random-init ablation runs on a generator of its own.
METHODS = ["paper", "single-z", "mean-fill", "paper-random-init"]


def _bench(checkpoint, out, batch: int, *extra) -> list[str]:
    return ["bench", "--checkpoint", checkpoint, "--procedural", "3", "--methods",
            "paper,single-z,mean-fill", "--ablation", "random-init", "--steps", "3",
            "--precision", "fp32", "--seed", "5", "--threads", "1", "--log-every", "2",
            "--batch", str(batch), "--out", out, *extra]


@pytest.fixture(scope="module")
def one_by_one(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "out"
    code, _, err = run_cli(_bench(checkpoint, out, 1))
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def batched(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("batched") / "out"
    code, stdout, err = run_cli(_bench(checkpoint, out, 3))
    assert code == 0, err
    return out, stdout


def _csv(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _without_times(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in TIME_COLUMNS} for row in rows]


def _aggregates_without_times(path) -> dict:
    aggregates = json.loads(path.read_text())["aggregates"]
    return {method: {key: value for key, value in stats.items() if key not in TIME_COLUMNS}
            for method, stats in aggregates.items()}


def _same_results(out, reference) -> None:
    """Every score, step and composite of `reference`, row for row; only the times differ."""
    assert _without_times(_csv(out / "results.csv")) == _without_times(_csv(reference / "results.csv"))
    assert _report_without_times(out / "report.md") == _report_without_times(reference / "report.md")
    assert _aggregates_without_times(out / "summary.json") == \
        _aggregates_without_times(reference / "summary.json")
    pictures = sorted(p.relative_to(reference) for p in reference.rglob("*.png"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == pictures
    for name in pictures:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    no_partials(out)


def test_a_batched_bench_writes_what_one_row_at_a_time_writes(batched, one_by_one):
    out, stdout = batched
    _same_results(out, one_by_one)
    rows = _csv(out / "results.csv")
    assert [(row["image"], row["method"]) for row in rows] == [
        (image, method) for image in IMAGES for method in METHODS]
    for method in ("paper", "single-z", "paper-random-init"):
        assert f"] {method}: running in a batch of images 1, 2, 3" in stdout
        assert f"{method}: the batch of images 1, 2, 3 ran in" in stdout
        # Members of equal steps share their batch's time equally, at its member-steps per second.
        members = [row for row in rows if row["method"] == method]
        seconds = {float(row["seconds"]) for row in members}
        assert len(seconds) == 1 and min(seconds) > 0
        for row in members:
            assert float(row["steps_per_second"]) == pytest.approx(3 / float(row["seconds"]))
    assert "[image 3/3 002-seed10000002] paper: step 2/3" in stdout  # each member's progress
    assert stdout.count("mean-fill: running\n") == 3  # the fills run row by row
    assert "--batch 3: only the GAN methods run batched; mean-fill run one row at a time" in stdout
    assert "batch" not in json.loads((out / "run.json").read_text())  # it changes no result


def test_a_batched_resume_runs_the_missing_rows_of_each_method_as_one_batch(checkpoint, one_by_one,
                                                                            tmp_path):
    out = tmp_path / "out"
    shutil.copytree(one_by_one, out)
    rows = _csv(one_by_one / "results.csv")
    kept = [row for row in rows if row["image"] == IMAGES[0] or row["method"] == "mean-fill"]
    with open(out / "results.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    code, stdout, err = run_cli(_bench(checkpoint, out, 3))  # made with --batch 1: resumes
    assert code == 0, err
    assert stdout.count(": running") == len(rows) - len(kept) == 6
    for method in ("paper", "single-z", "paper-random-init"):
        assert f"{method}: the batch of images 2, 3 ran in" in stdout
    assert f"skipped {len(kept)} image x method row(s)" in stdout
    resumed = _csv(out / "results.csv")
    # The rows that were there, then the new ones in the table's order, as --batch 1 adds them.
    assert [(row["image"], row["method"]) for row in resumed] == \
        [(row["image"], row["method"]) for row in kept] + \
        [(image, method) for image in IMAGES[1:] for method in METHODS if method != "mean-fill"]
    by_key = {(row["image"], row["method"]): row for row in _without_times(rows)}
    assert {(row["image"], row["method"]): row for row in _without_times(resumed)} == by_key
    assert _report_without_times(out / "report.md") == _report_without_times(one_by_one / "report.md")


@pytest.mark.parametrize("task, method", [(["--task", "reconstruct"], "single-z"),
                                          (["--task", "sr", "--scale", "2"], "paper")])
def test_a_batched_reconstruction_or_super_resolution_equals_one_row_at_a_time(
        checkpoint, tmp_path, task, method):
    folders = []
    for batch in (1, 2):
        out = tmp_path / f"batch{batch}"
        argv = _bench(checkpoint, out, batch)
        argv[argv.index("--procedural") + 1] = "2"
        argv[argv.index("--methods") + 1] = method
        argv.remove("--ablation")
        argv.remove("random-init")
        code, stdout, err = run_cli([*argv, *task])
        assert code == 0, err
        folders.append(out)
    assert f"{method}: the batch of images 1, 2 ran in" in stdout
    _same_results(folders[1], folders[0])


def test_batch_must_be_a_positive_count(checkpoint, tmp_path):
    assert_refused(_bench(checkpoint, tmp_path / "out", 0), [tmp_path], "--batch must be at least 1")


def test_only_gan_rows_are_grouped():
    gan, dip, fill = Variant("paper", "", "gan"), Variant("dip", "", "dip"), Variant("mean-fill", "", "fill")
    todo = [(image, variant) for image in range(5) for variant in (gan, dip, fill)]
    config = BenchConfig("prior", "out", procedural=5, batch=2)
    assert [(variant.name, indices) for variant, indices in _units(todo, config)] == [
        ("paper", [0, 1]), ("dip", [0]), ("mean-fill", [0]), ("dip", [1]), ("mean-fill", [1]),
        ("paper", [2, 3]), ("dip", [2]), ("mean-fill", [2]), ("dip", [3]), ("mean-fill", [3]),
        ("paper", [4]), ("dip", [4]), ("mean-fill", [4])]
    alone = [(variant.name, [image]) for image, variant in todo]
    assert [(v.name, i) for v, i in _units(todo, BenchConfig("prior", "out", procedural=5))] == alone
    sr = BenchConfig("prior", "out", procedural=5, task="sr", scale=2, batch=2)
    assert _units(todo, sr) == _units(todo, config)  # restore_batch groups them as inpaint_batch


@needs_torchrun
def test_two_processes_batch_their_own_shares(checkpoint, one_by_one, tmp_path):
    """Round-robin over the variant-major list of 12 rows: rank 0 gets images 1 and 3 of paper,
    rank 1 those of single-z and paper-random-init, and each batches them."""
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "ganprior_core", *map(str, _bench(checkpoint, out, 3))]
    result = subprocess.run(argv, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                            timeout=LIMIT)
    assert result.returncode == 0, result.stdout + result.stderr
    _same_results(out, one_by_one)
    assert not (out / "ranks").exists()
    batches = sorted(line.split(": the batch", 1)[0] for line in result.stdout.splitlines()
                     if ": the batch of images 1, 3 ran in" in line)
    assert batches == ["[rank 0/2] paper", "[rank 1/2] paper-random-init", "[rank 1/2] single-z"]
