"""`bench` on torchrun (lab/bench.py `_run_distributed`, lab/distributed.py): the real torchrun
with two CPU processes over gloo writes the folder a one-process run writes (only the times
differ), resumes after a rank is killed with another number of processes, and fails promptly
when a rank fails; a plain `bench` never touches torch.distributed."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch.distributed as dist

from ganprior_core.lab import distributed
from ganprior_core.lab.bench import BenchConfig, run_bench
from tests.cli_harness import no_partials, run_cli, subprocess_env
from tests.pack_under_test import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

TORCHRUN_MISSING = (not dist.is_available() or not dist.is_gloo_available()
                    or importlib.util.find_spec("torch.distributed.run") is None)
needs_torchrun = pytest.mark.skipif(TORCHRUN_MISSING, reason="this torch build has no "
                                    "torch.distributed with gloo, or no torchrun")
TIME_COLUMNS = ("seconds", "steps_per_second")  # wall clock: the only values that differ
TIME_TITLES = ("s / image", "steps/s")
# 3 images x 4 methods; single-z runs long enough (200 steps) that a rank can be killed mid-row.
METHODS = "single-z,dip,mean-fill,diffusion-fill"
ROWS = 12
LIMIT = 120  # seconds any torchrun command here may take before it counts as hung


def _bench(checkpoint, out) -> list[str]:
    return ["bench", "--checkpoint", str(checkpoint), "--procedural", "3", "--methods", METHODS,
            "--steps", "200", "--dip-steps", "10", "--stop", "fixed", "--precision", "fp32",
            "--seed", "5", "--threads", "1", "--log-every", "50", "--out", str(out)]


def _torchrun(processes: int, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(processes), "-m", "ganprior_core", *argv]


def _run_torchrun(processes: int, argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_torchrun(processes, argv), cwd=ROOT, env=env or subprocess_env(),
                          capture_output=True, text=True, timeout=LIMIT)


@pytest.fixture(scope="module")
def reference(checkpoint, tmp_path_factory):
    """The one-process run of the same command."""
    out = tmp_path_factory.mktemp("one") / "out"
    code, _, err = run_cli(_bench(checkpoint, out))
    assert code == 0, err
    return out


def _csv_without_times(path) -> list[dict]:
    with open(path, newline="") as stream:
        return [{key: value for key, value in row.items() if key not in TIME_COLUMNS}
                for row in csv.DictReader(stream)]


def _report_without_times(path) -> list[str]:
    """report.md with the cells of the time columns blanked."""
    lines, blank = [], set()
    for line in path.read_text().splitlines():
        if line.startswith("| method |"):
            blank = {i for i, title in enumerate(line.strip("|").split("|")) if title.strip() in TIME_TITLES}
        elif line.startswith("| `"):
            cells = line.strip("|").split("|")
            line = "|".join("" if i in blank else cell for i, cell in enumerate(cells))
        lines.append(line)
    return lines


def _summary_without_times(path) -> dict:
    summary = json.loads(path.read_text())
    summary["config"].pop("out")  # the folders compared are two
    for stats in summary["aggregates"].values():
        for column in TIME_COLUMNS:
            stats.pop(column)
    return summary


def assert_same_folder(out, reference) -> None:
    """Every file byte for byte, but results.csv, report.md and summary.json without their times."""
    assert _csv_without_times(out / "results.csv") == _csv_without_times(reference / "results.csv")
    assert _report_without_times(out / "report.md") == _report_without_times(reference / "report.md")
    assert _summary_without_times(out / "summary.json") == _summary_without_times(reference / "summary.json")
    timed = {"results.csv", "report.md", "summary.json"}
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(reference) for p in reference.rglob("*") if p.is_file())
    for name in files:
        if str(name) not in timed:
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert not (out / "ranks").exists() and not (out / ".bench.lock").exists()
    no_partials(out)


@needs_torchrun
def test_two_processes_write_what_one_process_writes(checkpoint, reference, tmp_path):
    out = tmp_path / "out"
    result = _run_torchrun(2, _bench(checkpoint, out))
    assert result.returncode == 0, result.stdout + result.stderr
    ran = [line for line in result.stdout.splitlines() if line.endswith(": running")]
    assert len(ran) == ROWS
    assert {line.split("]")[0] for line in ran} == {"[rank 0/2", "[rank 1/2"}
    assert "from the rows of 2 processes" in result.stdout
    assert_same_folder(out, reference)


def _rows_on_disk(out) -> set[tuple[str, str]]:
    """The rows a killed run left: results.csv and every rank's file."""
    found = set()
    for path in [out / "results.csv", *sorted((out / "ranks").glob("results-*.csv"))]:
        if path.exists():
            with open(path, newline="") as stream:
                found |= {(row["image"], row["method"]) for row in csv.DictReader(stream)}
    return found


@needs_torchrun
def test_a_killed_rank_stops_the_run_and_a_rerun_with_three_processes_finishes_it(
        checkpoint, reference, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(_torchrun(2, _bench(checkpoint, out)), cwd=ROOT, env=subprocess_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in process.stdout:
            if line.startswith("[rank 0/2]") and " done in " in line:
                break
        rank_0 = int((out / ".bench.lock").read_text())  # the lock holds rank 0's pid
        os.kill(rank_0, 9)  # SIGKILL: no cleanup at all
        started = time.monotonic()
        process.communicate(timeout=LIMIT)
    finally:
        process.kill()
        process.wait()
    assert process.returncode != 0
    assert time.monotonic() - started < 60, "the other rank kept running after rank 0 was killed"
    done = _rows_on_disk(out)
    assert 1 <= len(done) < ROWS, done

    result = _run_torchrun(3, _bench(checkpoint, out))
    assert result.returncode == 0, result.stdout + result.stderr
    ran = [line for line in result.stdout.splitlines() if line.endswith(": running")]
    assert len(ran) == ROWS - len(done)  # only the missing rows, each once
    assert f"({len(done)} already in" in result.stdout
    assert_same_folder(out, reference)


def test_a_plain_rerun_merges_the_rank_files_of_an_interrupted_run(checkpoint, reference, tmp_path):
    """A folder as an interrupted four-process run leaves it (rows in results.csv and in rank
    files), finished by a plain one-process command: nothing runs twice."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    with open(reference / "results.csv", newline="") as stream:
        text = stream.read().splitlines(keepends=True)
    header, rows = text[0], text[1:]
    (out / "results.csv").write_text(header + "".join(rows[:4]))
    (out / "ranks").mkdir()
    (out / "ranks" / "results-3.csv").write_text(header + "".join(rows[4:6]))
    (out / "ranks" / "results-10.csv").write_text(header + rows[7])
    code, stdout, err = run_cli(_bench(checkpoint, out))
    assert code == 0, err
    assert stdout.count(": running") == ROWS - 7
    assert not (out / "ranks").exists()
    got = {(r["image"], r["method"]): r for r in _csv_without_times(out / "results.csv")}
    assert got == {(r["image"], r["method"]): r for r in _csv_without_times(reference / "results.csv")}


@needs_torchrun
def test_a_rank_that_fails_fails_the_command_promptly(checkpoint, tmp_path):
    """Rank 1's mean fill raises (patched in through sitecustomize in rank 1 only): that rank
    says why and the command ends, rank 0 not left waiting."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    from ganprior_core.lab import baselines\n"
        "    def broken(*args, **kwargs):\n"
        "        raise ValueError('injected failure in rank 1')\n"
        "    baselines.mean_fill = broken\n")
    env = subprocess_env(PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    started = time.monotonic()
    result = _run_torchrun(2, _bench(checkpoint, tmp_path / "out"), env)
    assert result.returncode != 0
    assert "error: injected failure in rank 1" in result.stderr
    assert time.monotonic() - started < LIMIT


def test_a_plain_bench_never_touches_torch_distributed(checkpoint, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a plain bench initialised torch.distributed")
    monkeypatch.setattr(dist, "init_process_group", refuse)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    config = BenchConfig(str(checkpoint), str(tmp_path / "plain"), procedural=2,
                         methods=("mean-fill",), threads=1)
    assert run_bench(config, lambda line: None).complete
    # torchrun with one process is a plain run too
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert run_bench(config, lambda line: None).new_rows == 0
    assert not dist.is_initialized()


def test_the_environment_sharding_threads_and_devices_of_ranks():
    assert distributed.from_environment({}) is None
    assert distributed.from_environment({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None
    ranks = distributed.from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                                          "LOCAL_WORLD_SIZE": "2"})
    assert ranks == distributed.Ranks(3, 4, 1, 2) and ranks.label == "rank 3/4"
    for bad in ({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"},
                {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}):
        with pytest.raises(ValueError):
            distributed.from_environment(bad)
    rows = list(range(10))
    shares = [distributed.shard(rows, rank, 3) for rank in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert distributed.fair_threads(2, cpus=16) == 8 and distributed.fair_threads(4, cpus=2) == 1
    assert distributed.rank_device("cpu", 1) == "cpu"
