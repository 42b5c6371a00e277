"""A `bench` folder is resumable and claimed by its settings (lab/bench.py, lab/run_folder.py): a
rerun repairs what a cut run left, refuses other settings, images or threads, takes a stale lock,
refuses a live one, and a run killed mid-way resumes with every row once."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.cli_harness import (
    assert_refused,
    bench_argv,
    csv_rows,
    ctrl_c_reaches_it,
    no_partials,
    run_cli,
    subprocess_env,
)
from tests.pack_under_test import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("cut", ["inside_a_number", "whole_line_without_newline", "empty_file"])
def test_bench_rerun_repairs_a_cut_or_empty_results_csv(ws, cut):
    out = ws["out"] / "bench"
    assert run_cli(bench_argv(ws, out))[0] == 0
    complete = csv_rows(out / "results.csv")
    text = (out / "results.csv").read_text()
    damaged = {"inside_a_number": text[:-8], "whole_line_without_newline": text.rstrip("\n"),
               "empty_file": ""}[cut]
    (out / "results.csv").write_text(damaged)
    code, stdout, err = run_cli(bench_argv(ws, out))
    assert code == 0, err
    rows = csv_rows(out / "results.csv")
    assert len(rows) == 4
    key = lambda row: (row["image"], row["method"])  # noqa: E731
    assert {key(r): (r["psnr"], r["ssim"]) for r in rows} == \
        {key(r): (r["psnr"], r["ssim"]) for r in complete}


def test_bench_rerun_accepts_an_empty_run_json_without_rows(ws):
    out = ws["out"] / "bench"
    out.mkdir()
    (out / "run.json").write_text("")
    code, _, err = run_cli(bench_argv(ws, out))
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["task"] == "inpaint"


def test_bench_refuses_an_out_locked_by_a_live_process_and_takes_a_stale_lock(ws):
    out = ws["out"] / "bench"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".bench.lock").write_text(f"{sleeper.pid}\n")
        assert_refused(bench_argv(ws, out), [ws["root"]], f"pid {sleeper.pid}")
    finally:
        sleeper.kill()
        sleeper.wait()
    code, _, err = run_cli(bench_argv(ws, out))  # the pid is gone now: a stale lock
    assert code == 0, err
    assert not (out / ".bench.lock").exists()


def test_bench_resume_with_other_threads_is_refused(ws):
    out = ws["out"] / "bench"
    assert run_cli(bench_argv(ws, out))[0] == 0
    argv = bench_argv(ws, out)
    argv[argv.index("--threads") + 1] = "2"
    assert_refused(argv, [ws["root"]], "threads")


def test_bench_rerun_keeps_the_notes_of_finished_rows(ws):
    out = ws["out"] / "bench"
    argv = ["bench", "--checkpoint", ws["checkpoint"], "--procedural", "1", "--methods", "single-z",
            "--steps", "2", "--precision", "fp32", "--out", out]
    assert run_cli(argv)[0] == 0
    notes = (out / "report.md").read_text().split("## Notes", 1)
    assert len(notes) == 2 and "`single-z`:" in notes[1]
    code, _, err = run_cli(argv)
    assert code == 0, err
    assert (out / "report.md").read_text().split("## Notes", 1)[1] == notes[1]


@pytest.mark.parametrize("problem, message", [
    (["--checkpoint", "{in}/missing.safetensors"], "no such checkpoint"),
    (["--mask-area", "0"], "--mask-area"),
    (["--mask-area", "1.5"], "--mask-area"),
    (["--mask-area", "nan"], "--mask-area"),
])
def test_bench_checks_its_arguments_before_creating_out(ws, problem, message):
    out = ws["out"] / "bench"
    argv = bench_argv(ws, out)
    problem = [p.format(**{"in": ws["in"]}) for p in problem]
    if problem[0] == "--checkpoint":
        argv[argv.index("--checkpoint") + 1] = problem[1]
    else:
        argv += problem
    assert_refused(argv, [ws["root"]], message)
    assert not out.exists()


def test_bench_killed_mid_run_resumes_with_every_row_once(ws):
    out = ws["out"] / "bench"
    argv = ["bench", "--checkpoint", ws["checkpoint"], "--procedural", "3", "--methods",
            "single-z,mean-fill", "--steps", "60", "--stop", "fixed", "--precision", "fp32",
            "--threads", "1", "--out", out]
    process = subprocess.Popen([sys.executable, "-m", "ganprior_core", *map(str, argv)],
                               cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        for line in process.stdout:
            if "done in" in line:
                break
        process.kill()  # SIGKILL: no cleanup at all, the lock stays behind
    finally:
        process.wait()
    assert (out / ".bench.lock").exists()
    code, stdout, err = run_cli(argv)
    assert code == 0, err
    rows = csv_rows(out / "results.csv")
    assert len(rows) == 6 and len({(r["image"], r["method"]) for r in rows}) == 6
    no_partials(out)


def test_bench_removes_temporaries_a_killed_run_left(ws):
    out = ws["out"] / "bench"
    out.mkdir()
    stale = [out / ".results.csv.0123abcd.partial", out / "results" / ".x.png.deadbeef.partial"]
    stale[1].parent.mkdir()
    for path in stale:
        path.write_bytes(b"half")
    keep = out / ".notes.partial"  # not a name write_atomically makes: not ours to remove
    keep.write_bytes(b"user's")
    assert run_cli(bench_argv(ws, out))[0] == 0
    assert not any(path.exists() for path in stale) and keep.read_bytes() == b"user's"


def test_a_second_bench_process_on_the_same_out_is_refused_while_the_first_runs(ws):
    out = ws["out"] / "bench"
    argv = ["bench", "--checkpoint", ws["checkpoint"], "--procedural", "2", "--methods", "single-z",
            "--steps", "100000", "--stop", "fixed", "--precision", "fp32", "--threads", "1",
            "--log-every", "10", "--out", out]
    first = subprocess.Popen([sys.executable, "-m", "ganprior_core", *map(str, argv)], cwd=ROOT,
                             env=subprocess_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, preexec_fn=ctrl_c_reaches_it)
    try:
        for line in first.stdout:
            if " step " in line:
                break
        code, _, err = run_cli(argv)
        assert code == 2 and f"in use by another bench process (pid {first.pid}," in err, err
        assert not (out / "results.csv").exists()
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert first.returncode == 130 and not (out / ".bench.lock").exists()


@pytest.mark.parametrize("name", ["report.md", "figure.png", "results.csv"])
def test_bench_refuses_a_checkpoint_it_would_overwrite(ws, name):
    out = ws["out"] / "bench"
    out.mkdir()
    checkpoint = out / name
    checkpoint.write_bytes(ws["checkpoint"].read_bytes())
    argv = bench_argv(ws, out)
    argv[argv.index("--checkpoint") + 1] = str(checkpoint)
    assert_refused(argv, [ws["root"]], "is the --checkpoint file")


def test_bench_resume_refuses_an_image_folder_whose_contents_changed(ws):
    images = ws["in"] / "images"
    images.mkdir()
    for name, value in (("a.png", 10), ("b.png", 200)):
        Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(images / name)
    out = ws["out"] / "bench"
    argv = ["bench", "--checkpoint", ws["checkpoint"], "--images", images, "--methods",
            "mean-fill", "--out", out]
    assert run_cli(argv)[0] == 0
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(images / "b.png")  # same name
    assert_refused(argv, [ws["root"]], "images_sha256")
