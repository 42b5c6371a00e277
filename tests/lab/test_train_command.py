"""`train` for both architectures (lab/train_command.py, lab/training_run.py): a run folder that
resumes only with the same settings and data, refuses damaged or foreign checkpoints and bad
arguments before writing anything, is locked while a run lives, and survives kill -9, Ctrl-C and a
disk that fills mid-run."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli_harness import TRAIN, assert_refused, interrupt_when, no_partials, run_cli, subprocess_env
from tests.pack_under_test import ROOT
from tests.vgg_builders import PAYLOAD_MARKER, Payload

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def trained(ws):
    out = ws["out"] / "train"
    code, _, err = run_cli([*TRAIN, "--out", out])
    assert code == 0, err
    return out


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "foreign_torch",
                                    "safetensors", "state_without_config", "payload"])
def test_train_refuses_a_damaged_or_foreign_checkpoint_naming_it(ws, trained, damage):
    checkpoint = trained / "checkpoint.pt"
    data = checkpoint.read_bytes()
    if damage == "garbage":
        checkpoint.write_bytes(b"this is not a checkpoint")
    elif damage == "truncated":
        checkpoint.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        checkpoint.write_bytes(b"")
    elif damage == "foreign_torch":
        torch.save({"weights": torch.zeros(3)}, checkpoint)
    elif damage == "safetensors":
        checkpoint.write_bytes(ws["checkpoint"].read_bytes())
    elif damage == "payload":
        PAYLOAD_MARKER.unlink(missing_ok=True)
        torch.save({"config": {}, "generator": Payload()}, checkpoint)
    else:
        torch.save([1, 2, 3], checkpoint)
    line = assert_refused([*TRAIN, "--final-stable-images", "16", "--out", trained],
                          [ws["root"]], "checkpoint.pt", "--restart")
    assert len(line) < 400
    assert not PAYLOAD_MARKER.exists()  # nothing in it was run


@pytest.mark.parametrize("change, name", [(["--seed", "3"], "seed"), (["--lr-g", "0.01"], "learning_rate_g"),
                                          (["--ema-beta", "0.9"], "ema_beta"),
                                          (["--batch-sizes", "8,8"], "batch_sizes")])
def test_train_resume_with_other_settings_is_refused(ws, trained, change, name):
    assert_refused([*TRAIN, "--final-stable-images", "16", *change, "--out", trained],
                   [ws["root"]], name, "--restart")


def test_train_resume_with_other_data_is_refused(ws, trained):
    data = ws["in"] / "data"
    data.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(data / "a.png")
    argv = [*TRAIN, "--final-stable-images", "16", "--out", trained]
    argv[argv.index("--data") + 1] = str(data)
    assert_refused(argv, [ws["root"]], "data", "--restart")


@pytest.mark.parametrize("option, value", [
    ("--batch-sizes", "0,0"), ("--batch-sizes", "-4,4"), ("--sample-every", "0"),
    ("--log-every", "0"), ("--checkpoint-every", "0"), ("--latent-dim", "0"),
    ("--final-stable-images", "-64"), ("--ema-beta", "2"), ("--ema-beta", "nan"),
    ("--ema-beta", "-1"), ("--lr-g", "0"), ("--lr-d", "nan"), ("--lr-g", "inf"),
    ("--images-per-phase", "0,8"), ("--channels", "0,8"), ("--seed", "-1"), ("--threads", "0"),
])
def test_train_refuses_bad_arguments_before_anything_is_written(ws, option, value):
    out = ws["out"] / "train"
    argv = [*TRAIN, "--out", out]
    if option in argv:
        del argv[argv.index(option):argv.index(option) + 2]
    argv.append(f"{option}={value}")  # the = form: "-4,4" is a value, not an option
    assert_refused(argv, [ws["root"]], option if option != "--seed" else "seed")
    assert not out.exists()


@pytest.mark.parametrize("arch", ["pggan", "stylegan2"])
def test_training_refuses_a_folder_locked_by_a_live_run_and_clears_a_dead_runs_leftovers(ws, arch):
    out = ws["out"] / "train"
    out.mkdir()
    argv = [*TRAIN, "--out", out] if arch == "pggan" else [
        "train", "--arch", "stylegan2", "--data", "procedural", "--resolution", "8", "--channels",
        "8,8", "--z-dim", "8", "--w-dim", "8", "--total-images", "8", "--batch-size", "4", "--precision", "fp32",
        "--threads", "1", "--out", out]
    leftover = out / ".checkpoint.pt.0123abcd.partial"  # what a SIGKILL mid-write leaves
    leftover.write_bytes(b"half a checkpoint")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".train.lock").write_text(f"{sleeper.pid}\n")
        assert_refused(argv, [ws["root"]], f"in use by another training process (pid {sleeper.pid}")
        assert leftover.exists()  # another run's file, while that run lives
    finally:
        sleeper.kill()
        sleeper.wait()
    code, _, err = run_cli(argv)  # the pid is gone now: a stale lock
    assert code == 0, err
    assert not leftover.exists() and not (out / ".train.lock").exists()
    no_partials(out)


def test_train_killed_mid_run_resumes_and_finishes(ws):
    out = ws["out"] / "train"
    argv = [*TRAIN, "--images-per-phase", "400,400", "--final-stable-images", "400",
            "--checkpoint-every", "40", "--log-every", "40", "--out", out]
    process = subprocess.Popen([sys.executable, "-m", "ganprior_core", *map(str, argv)], cwd=ROOT,
                               env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        process.kill()
    finally:
        process.wait()
    # SIGKILL mid-write may leave a temporary file: nothing can remove it at that moment, so the
    # resumed run (holding the folder's lock) does.
    code, stdout, err = run_cli(argv)
    assert code == 0, err
    assert "resumed from" in stdout and (out / "generator.safetensors").is_file()
    no_partials(out)
    assert not (out / ".train.lock").exists()


def test_ctrl_c_in_train_is_one_line_exit_130_and_leaves_a_usable_checkpoint(ws):
    out = ws["out"] / "train"
    argv = [*TRAIN, "--images-per-phase", "4000,4000", "--final-stable-images", "4000",
            "--log-every", "8", "--checkpoint-every", "16", "--out", out]
    completed = interrupt_when(argv, lambda line: line.startswith("kimg") and (out / "checkpoint.pt").exists())
    assert completed.returncode == 130, completed.stderr
    assert "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    no_partials(out)
    assert not (out / "generator.safetensors").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["images_seen"] > 0


def test_train_checkpoint_write_failing_mid_run_keeps_the_previous_checkpoint(ws, trained, monkeypatch):
    """The disk fills while training: the failed save is one error line, the checkpoint from
    before is byte-identical and resumable, and no temporary file is left."""
    before = (trained / "checkpoint.pt").read_bytes()
    calls = []
    real_fsync = os.fsync

    def fsync_filling_up(descriptor):
        calls.append(descriptor)
        if len(calls) >= 2:  # train_config.json is written, the next save finds the disk full
            raise OSError(28, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync_filling_up)
    code, _, err = run_cli([*TRAIN, "--final-stable-images", "16", "--out", trained])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "checkpoint.pt" in err and "No space left on device" in err
    assert (trained / "checkpoint.pt").read_bytes() == before
    no_partials(trained)
    assert run_cli([*TRAIN, "--final-stable-images", "16", "--out", trained])[0] == 0
