"""Ctrl-C and SIGTERM end any command with one line and exit code 130 (143), nothing written and
the inputs untouched; the commands run in a subprocess where a signal must reach them."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli_harness import files_under, inpaint_argv, interrupt_when, run_cli, subprocess_env
from tests.pack_under_test import ROOT


def test_ctrl_c_in_inpaint_is_one_line_exit_130_and_nothing_written(ws):
    argv = inpaint_argv(ws)
    argv[argv.index("--steps") + 1] = "1000000"
    argv += ["--stop", "fixed", "--log-every", "1"]
    before = files_under(ws["in"])
    completed = interrupt_when(argv, lambda line: line.startswith("step "))
    assert completed.returncode == 130, completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines() == [completed.stderr.strip()]
    assert completed.stderr.startswith("interrupted")
    assert list(ws["out"].iterdir()) == [] and files_under(ws["in"]) == before


def test_sigterm_in_inpaint_unwinds_like_ctrl_c(ws):
    argv = inpaint_argv(ws)
    argv[argv.index("--steps") + 1] = "1000000"
    argv += ["--stop", "fixed", "--log-every", "1"]
    process = subprocess.Popen([sys.executable, "-m", "ganprior_core", *map(str, argv)], cwd=ROOT,
                               env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if line.startswith("step "):
                break
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, stderr
    assert stderr.strip().startswith("terminated") and len(stderr.strip().splitlines()) == 1
    assert list(ws["out"].iterdir()) == []


@pytest.mark.parametrize("command", ["convert", "generate"])
def test_ctrl_c_in_any_command_is_one_line_and_exit_130(ws, monkeypatch, command):
    from ganprior_core import cli

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "convert_checkpoint" if command == "convert" else "generate", interrupt)
    argv = (["convert", ws["checkpoint"], ws["out"] / "c.safetensors"] if command == "convert"
            else ["generate", ws["checkpoint"], "--count", "2", "--out", ws["out"] / "g.png"])
    code, _, err = run_cli(argv)
    assert code == 130 and err.startswith("interrupted") and len(err.strip().splitlines()) == 1
    assert list(ws["out"].iterdir()) == []
