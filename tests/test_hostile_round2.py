"""Careless and hostile use, round 2 (issue #17): outputs over inputs, full disks, checks that
came after the work, interrupted / concurrent / changed runs, a broken environment, Ctrl-C,
silent no-progress, one hole rule, hostile VGG16 files.

CLI cases assert the exit code, one `error:` line, nothing written or left behind and the
user's files byte-identical. Where a process could die or hang (Ctrl-C, kill -9, the compiler
cache) the command runs in a subprocess. Full disks are a small tmpfs (skipped where it cannot
be mounted)."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_builders import write_good_inputs
from PIL import Image
from safetensors.torch import save_file

from ganprior_core import imaging, metrics
from ganprior_core.checkpoints import save_generator
from ganprior_core.cli import main
from ganprior_core.files import NAME_MAX, UserFileError, check_output_file, temporary_path, write_atomically
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps", "2", "--codes", "2", "--precision", "fp32", "--preset", "mganprior",
        "--compile", "off"]


pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(argv) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(arg) for arg in argv])
    return code, stdout.getvalue(), stderr.getvalue()


def files_under(*folders: Path) -> dict[Path, bytes | None]:
    found = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_symlink() or path.is_fifo():
                found[path] = ("link", os.readlink(path)) if path.is_symlink() else "fifo"
            else:
                found[path] = path.read_bytes() if path.is_file() else None
    return found


def assert_refused(argv, watched: list[Path], *expected: str) -> str:
    before = files_under(*watched)
    code, _, err = run_cli(argv)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0], lines[0]
    assert files_under(*watched) == before, "something was written, changed or left behind"
    return lines[0]


def no_partials(folder: Path) -> None:
    left = [p for p in Path(folder).rglob("*") if p.name.endswith((".partial", ".tmp"))]
    assert not left, left


def subprocess_env(**extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}
    return env


@pytest.fixture
def tiny_prior() -> PGGANGenerator:
    torch.manual_seed(1234)
    return PGGANGenerator(PGGANConfig(16, (32, 32, 16), latent_dim=32)).eval()


@pytest.fixture
def ws(tmp_path, tiny_prior):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    write_good_inputs(inputs, tiny_prior)
    return {"in": inputs, "out": outputs, "root": tmp_path, "checkpoint": inputs / "tiny.safetensors"}


def inpaint_argv(ws, **overrides):
    options = {"--checkpoint": ws["checkpoint"], "--image": ws["in"] / "image.png",
               "--mask": ws["in"] / "mask.png", "--out": ws["out"] / "result.png"}
    options.update(overrides)
    argv = ["inpaint", *FAST]
    for option, value in options.items():
        if value is not None:
            argv += [option, value]
    return argv


# --- 1: an output is never one of the inputs -------------------------------------------------

def test_generate_latents_out_over_latents_is_refused(ws):
    z = ws["in"] / "z.npy"
    assert_refused(["generate", ws["checkpoint"], "--latents", z, "--out", z], [ws["root"]],
                   "is the --latents file")


def test_generate_over_a_checkpoint_named_like_an_image_is_refused(ws):
    disguised = ws["in"] / "c.png"
    disguised.write_bytes(ws["checkpoint"].read_bytes())
    assert_refused(["generate", disguised, "--count", "2", "--out", disguised], [ws["root"]],
                   "is the checkpoint file")


@pytest.mark.parametrize("link", ["same", "hard", "symbolic", "dotted"])
def test_convert_onto_its_source_is_refused_however_named(ws, link):
    source = ws["checkpoint"]
    destination = {"same": source, "dotted": ws["in"] / ".." / "in" / source.name,
                   "hard": ws["out"] / "hard.safetensors",
                   "symbolic": ws["out"] / "link.safetensors"}[link]
    if link == "hard":
        os.link(source, destination)
    elif link == "symbolic":
        destination.symlink_to(source)
    assert_refused(["convert", source, destination], [ws["root"]], "is the source file")


@pytest.mark.parametrize("output, target", [("--out", "image.png"), ("--out", "mask.png"),
                                            ("--raw-out", "image.png")])
@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_inpaint_outputs_linked_to_an_input_are_refused(ws, output, target, link):
    alias = ws["out"] / f"alias-{link}.png"
    if link == "hard":
        os.link(ws["in"] / target, alias)
    else:
        alias.symlink_to(ws["in"] / target)
    assert_refused(inpaint_argv(ws, **{output: alias}), [ws["root"]], "destroy an input")


def test_inpaint_raw_out_hard_linked_to_out_is_refused(ws):
    out = ws["out"] / "a.png"
    out.write_bytes(b"keep")
    os.link(out, ws["out"] / "b.png")
    assert_refused(inpaint_argv(ws, **{"--out": out, "--raw-out": ws["out"] / "b.png"}),
                   [ws["root"]], "the same file")


def test_bench_out_inside_its_images_and_train_out_inside_its_data_are_refused(ws):
    images = ws["in"] / "images"
    images.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "a.png")
    assert_refused(["bench", "--checkpoint", ws["checkpoint"], "--images", images,
                    "--methods", "mean-fill", "--out", images], [ws["root"]], "overlap")
    assert_refused(["bench", "--checkpoint", ws["checkpoint"], "--images", images,
                    "--methods", "mean-fill", "--out", images / "run"], [ws["root"]], "overlap")
    assert_refused(["train", "--data", images, "--out", images / "run"], [ws["root"]],
                   "inside --data")


def test_written_safetensors_and_images_honour_the_umask(ws):
    previous = os.umask(0o022)
    try:
        assert run_cli(["convert", ws["checkpoint"], ws["out"] / "c.safetensors"])[0] == 0
        assert run_cli(["generate", ws["checkpoint"], "--count", "2", "--out", ws["out"] / "g.png"])[0] == 0
    finally:
        os.umask(previous)
    for name in ("c.safetensors", "g.png"):
        assert (ws["out"] / name).stat().st_mode & 0o777 == 0o644, name


# --- 2: full disks and write failures --------------------------------------------------------

@pytest.fixture
def full_disk(tmp_path):
    """A tmpfs with no free space left, holding `old.png`; skipped where mounting is impossible."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root?)")
    try:
        (folder / "old.png").write_bytes(b"previous result")
        (folder / "old.safetensors").write_bytes(b"previous model")
        with open(folder / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def full_disk_refused(argv, disk: Path, watched: list[Path]) -> str:
    before = files_under(disk)
    line = assert_refused(argv, watched, "No space left on device")
    assert files_under(disk) == before, "the full disk holds something new or changed"
    return line


def test_inpaint_on_a_full_disk_keeps_the_previous_result(ws, full_disk):
    line = full_disk_refused(inpaint_argv(ws, **{"--out": full_disk / "old.png"}), full_disk,
                             [ws["root"] / "in"])
    assert "the previous file is unchanged" in line


@pytest.mark.parametrize("out", ["g.png", "z.npy"])
def test_generate_on_a_full_disk(ws, full_disk, out):
    extra = ["--latents", ws["in"] / "z.npy"] if out.endswith(".npy") else ["--count", "2"]
    full_disk_refused(["generate", ws["checkpoint"], *extra, "--out", full_disk / out], full_disk,
                      [ws["in"]])


def test_convert_on_a_full_disk_keeps_the_previous_model(ws, full_disk):
    full_disk_refused(["convert", ws["checkpoint"], full_disk / "old.safetensors"], full_disk,
                      [ws["in"]])


@pytest.mark.parametrize("command", ["demo", "bench", "train"])
def test_folder_commands_on_a_full_disk_leave_no_folder(ws, full_disk, command):
    argv = {"demo": ["demo", "--steps", "1", "--stop", "fixed"],
            "bench": ["bench", "--checkpoint", ws["checkpoint"], "--procedural", "1",
                      "--methods", "mean-fill"],
            "train": ["train", "--data", "procedural", "--resolution", "8", "--channels", "8,8",
                      "--latent-dim", "8", "--images-per-phase", "8,8", "--batch-sizes", "4,4",
                      "--final-stable-images", "8", "--precision", "fp32"]}[command]
    full_disk_refused([*argv, "--out", full_disk / "run"], full_disk, [ws["in"]])


def test_a_failed_write_is_one_error_naming_the_file(tmp_path):
    target = tmp_path / "kept.json"
    target.write_text("old")

    def full(file):
        file.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(UserFileError, match="kept.json: cannot write the file .No space left"):
        write_atomically(target, full)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]


def test_every_write_in_the_project_goes_through_the_one_helper():
    """No second atomic writer, and no plain write_text / torch.save-to-a-path / save_file."""
    allowed = {ROOT / "ganprior_core" / "files.py"}
    pattern = re.compile(r"\.write_text\(|\.write_bytes\(|torch\.save\([^)]*(path|temporary)|"
                         r"save_file\(|os\.replace\(|open\([^)]*[\"'][wa]b?[\"']")
    offenders = []
    for path in sorted((ROOT / "ganprior_core").rglob("*.py")):
        if path in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


# --- 3: checks that came after the work ------------------------------------------------------

@pytest.mark.parametrize("length", [238, 250, 255])
def test_output_names_up_to_name_max_are_written(ws, length):
    name = "r" * (length - 4) + ".png"
    assert len(temporary_path(ws["out"] / name).name.encode()) <= NAME_MAX
    code, _, err = run_cli(inpaint_argv(ws, **{"--out": ws["out"] / name}))
    assert code == 0, err
    assert (ws["out"] / name).is_file()
    no_partials(ws["out"])


def test_long_multibyte_names_get_a_temporary_name_that_fits():
    name = "é" * 126 + ".png"  # 256 bytes: over the limit, refused up front; 254 bytes fits
    with pytest.raises(UserFileError, match="bytes"):
        check_output_file(Path("/tmp") / name, (".png",))
    assert len(temporary_path(Path("/x") / ("é" * 125 + ".png")).name.encode()) <= NAME_MAX


def test_a_too_long_name_under_a_missing_folder_is_refused_up_front(ws):
    assert_refused(inpaint_argv(ws, **{"--out": ws["out"] / "new" / ("x" * 256 + ".png")}),
                   [ws["root"]], "too long")


@pytest.mark.parametrize("suffix, width", [(".jpg", 65536), (".webp", 16384)])
def test_an_image_too_large_for_its_format_is_refused_before_the_run(ws, suffix, width):
    wide = ws["in"] / "wide.png"
    Image.fromarray(np.zeros((8, width, 3), np.uint8)).save(wide)
    argv = inpaint_argv(ws, **{"--image": wide, "--mask": None, "--out": ws["out"] / f"o{suffix}"})
    started = time.perf_counter()
    assert_refused(argv, [ws["root"]], "pixels a side")
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize("suffix, count", [(".webp", 1000), (".jpg", 4000)])
def test_generate_refuses_a_grid_too_large_for_its_format_before_sampling(ws, suffix, count):
    assert_refused(["generate", ws["checkpoint"], "--count", count, "--columns", count,
                    "--out", ws["out"] / f"grid{suffix}"], [ws["root"]], "pixels a side")


def test_library_save_refuses_an_oversized_webp_without_a_temporary_file(tmp_path):
    with pytest.raises(UserFileError, match="WEBP holds at most 16383"):
        imaging.save_image(torch.zeros(3, 8, 16384), tmp_path / "x.webp")
    assert list(tmp_path.iterdir()) == []


# --- 4: interrupted, concurrent and changed runs ---------------------------------------------

def bench_argv(ws, out, *extra):
    return ["bench", "--checkpoint", ws["checkpoint"], "--procedural", "2", "--methods",
            "mean-fill,diffusion-fill", "--threads", "1", "--out", out, *extra]


def csv_rows(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


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


TRAIN = ["train", "--data", "procedural", "--resolution", "8", "--channels", "8,8", "--latent-dim",
         "8", "--images-per-phase", "8,8", "--batch-sizes", "4,4", "--final-stable-images", "8",
         "--precision", "fp32", "--threads", "1"]


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
        Path("/tmp/ganprior-vgg-payload-ran").unlink(missing_ok=True)
        torch.save({"config": {}, "generator": Payload()}, checkpoint)
    else:
        torch.save([1, 2, 3], checkpoint)
    line = assert_refused([*TRAIN, "--final-stable-images", "16", "--out", trained],
                          [ws["root"]], "checkpoint.pt", "--restart")
    assert len(line) < 400
    assert not Path("/tmp/ganprior-vgg-payload-ran").exists()  # nothing in it was run


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


# --- 5: the environment ----------------------------------------------------------------------

@pytest.mark.parametrize("cache", ["file", "proc"])
def test_an_unusable_compiler_cache_never_breaks_inpaint(ws, cache):
    folder = {"file": str(ws["in"] / "image.png"), "proc": "/proc/ganprior-cache"}[cache]
    argv = inpaint_argv(ws)
    for setting in ("off", "auto") if cache == "file" else ("off",):
        argv[argv.index("--compile") + 1] = setting
        completed = subprocess.run([sys.executable, "-m", "ganprior_core", *map(str, argv)],
                                   cwd=ROOT, capture_output=True, text=True, timeout=300,
                                   env=subprocess_env(TORCHINDUCTOR_CACHE_DIR=folder,
                                                      HOME="/proc/no-home"))
        assert completed.returncode == 0, completed.stderr[-2000:]
        assert "Traceback" not in completed.stderr
        note = [line for line in completed.stdout.splitlines() if "TORCHINDUCTOR_CACHE_DIR" in line]
        assert note and "/proc/no-home" not in note[0].split("using", 1)[1], completed.stdout


def test_the_cache_check_names_what_is_wrong(tmp_path, monkeypatch):
    from ganprior_core.method import compiler_cache
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "a file" in compiler_cache._folder_problem(str(afile))
    assert "/proc" in compiler_cache._folder_problem("/proc/x")
    assert compiler_cache._folder_problem(str(tmp_path / "new" / "cache")) is None
    assert not (tmp_path / "new").exists()  # checked, not created
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(afile))
    monkeypatch.setenv("HOME", str(afile))
    notes: list[str] = []
    assert compiler_cache.prepare_cache_dir(notes)
    assert "TORCHINDUCTOR_CACHE_DIR" in notes[0]
    replacement = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    assert str(afile) not in replacement and compiler_cache._folder_problem(replacement) is None


# --- 6: Ctrl-C -------------------------------------------------------------------------------

def interrupt_when(argv, ready, cwd=ROOT) -> subprocess.CompletedProcess:
    process = subprocess.Popen([sys.executable, "-m", "ganprior_core", *map(str, argv)], cwd=cwd,
                               env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if ready(line):
                break
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


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


# --- 7: silent no-progress -------------------------------------------------------------------

def test_auto_stop_says_when_it_returns_the_starting_image():
    from dataclasses import replace

    from ganprior_core.optimize import inpaint, preset
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


# --- 10: one rule per decision ---------------------------------------------------------------

def test_a_mask_value_of_exactly_one_half_is_a_hole_everywhere(tmp_path, tiny_prior):
    from ganprior_core.lab import baselines
    from ganprior_core.lab.dip import DIPConfig, dip_inpaint
    from ganprior_core.method.auto_stop import AutoStopConfig, holdout_mask
    from ganprior_core.optimize import inpaint, preset
    half = torch.full((16, 16), 0.5)
    assert imaging.hole_pixels(half).all()
    assert imaging.resize_mask(half, (8, 8)).eq(1).all()
    assert imaging.resize_mask(half, (16, 16)).eq(1).all()
    Image.fromarray(np.full((16, 16), 0.5, np.float32), "F").save(tmp_path / "half.tif")
    assert imaging.load_mask(tmp_path / "half.tif").eq(1).all()
    assert holdout_mask(half, 0, AutoStopConfig()).eq(0).all()
    model, optimizer = preset("mganprior", tiny_prior.config)
    image = torch.rand(3, 16, 16)
    result = inpaint(tiny_prior, image, half, model, optimizer, 0)
    assert any("covers the whole image" in note for note in result.notes)
    dip = dip_inpaint(image, half, DIPConfig(steps=1, precision="fp32"), 0)
    assert any("covers the whole image" in note for note in dip.notes)
    one = torch.zeros(16, 16)
    one[3, 3] = 0.5
    filled = baselines.mean_fill(image, one)
    assert not torch.equal(filled[:, 3, 3], image[:, 3, 3])
    assert metrics.measure(image, image, one).psnr_hole is not None


def code_lines(path: Path) -> dict[int, str]:
    """Each line's code without strings and comments (docstrings may quote the rule)."""
    import tokenize
    lines: dict[int, str] = {}
    with open(path, "rb") as stream:
        for token in tokenize.tokenize(stream.readline):
            if token.type in (tokenize.STRING, tokenize.COMMENT, tokenize.ENCODING):
                continue
            lines[token.start[0]] = lines.get(token.start[0], "") + " " + token.string
    return lines


def test_no_second_hole_threshold_or_range_conversion_in_the_code():
    checks = ROOT / "ganprior_core" / "imaging" / "checks.py"
    pattern = re.compile(r"[<>]=?\s*0\.5\b|[<>]=?\s*HOLE_THRESHOLD|\*\s*2\s*-\s*1\b|\+\s*1\)\s*/\s*2|"
                         r"^HOLE_THRESHOLD\s*=|\b(IMAGE_SUFFIXES|EXTENSIONS)\s*=\s*[({\[]\s*,")
    offenders = []
    for path in [*sorted((ROOT / "ganprior_core").rglob("*.py")), *sorted((ROOT / "nodes").glob("*.py"))]:
        if path == checks:
            continue
        for number, code in code_lines(path).items():
            code = re.sub(r"\s+", " ", code).replace("( ", "(").replace(" )", ")").strip()
            if pattern.search(code) and "rng . random" not in code and "_COLS + 0.5" not in code:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {code.strip()}")
    # load_mask compares a NumPy array with HOLE_THRESHOLD (>=, the same rule).
    allowed = ("imaging/image_files.py", "IMAGE_SUFFIXES = tuple(")
    assert [o for o in offenders if not any(a in o for a in allowed)] == []


def test_the_nodes_step_limits_are_the_cores():
    from ganprior_core.method.config import MAX_STEPS
    source = (ROOT / "nodes" / "model_nodes.py").read_text()
    limits = re.findall(r'"steps": \("INT", \{[^}]*"max": (\d+)', source)
    assert limits and all(int(limit) == MAX_STEPS for limit in limits)


# --- 11: hostile VGG16 files -----------------------------------------------------------------

VGG_SHAPES = {"0": (64, 3, 3, 3), "2": (64, 64, 3, 3), "5": (128, 64, 3, 3), "7": (128, 128, 3, 3),
              "10": (256, 128, 3, 3), "12": (256, 256, 3, 3), "14": (256, 256, 3, 3)}


def vgg_state(scale: float = 0.01) -> dict[str, torch.Tensor]:
    state = {}
    for index, shape in VGG_SHAPES.items():
        state[f"features.{index}.weight"] = torch.full(shape, scale)
        state[f"features.{index}.bias"] = torch.zeros(shape[0])
    return state


def test_vgg_format_comes_from_the_content_not_the_suffix(tmp_path):
    from ganprior_core.method.perceptual import load_vgg16_features
    save_file(vgg_state(), str(tmp_path / "really-safetensors.pth"))
    torch.save(vgg_state(), tmp_path / "really-torch.safetensors")
    for name in ("really-safetensors.pth", "really-torch.safetensors"):
        model = load_vgg16_features(tmp_path / name)
        assert float(model[0].weight[0, 0, 0, 0]) == pytest.approx(0.01)


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/ganprior-vgg-payload-ran",))


def hostile_vgg_files(directory: Path) -> dict[str, tuple[Path, str]]:
    files = {}

    def add(name, data, message):
        path = directory / name
        path.write_bytes(data) if isinstance(data, bytes) else data(path)
        files[name] = (path, message)

    header = b'{"features.0.weight":{"dtype":"F32","shape":[64,3,3,3],"data_offsets":[0,4]}}'
    add("huge-header.safetensors", (1 << 40).to_bytes(8, "little") + b"{" + b" " * 32,
        "header claims")
    add("short-data.safetensors", len(header).to_bytes(8, "little") + header + b"\0\0\0\0",
        "not a readable .safetensors")
    wrong = vgg_state()
    wrong["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    add("wrong-shape.safetensors", lambda p: save_file(wrong, str(p)), "features.0.weight")
    add("wrong-shape.pth", lambda p: torch.save(wrong, p), "wrong shapes")
    integers = {k: v.to(torch.int32) for k, v in vgg_state().items()}
    add("integers.safetensors", lambda p: save_file(integers, str(p)), "floating-point")
    nan = vgg_state()
    nan["features.2.weight"][0, 0, 0, 0] = math.nan
    add("nan.pth", lambda p: torch.save(nan, p), "NaN")
    add("payload.pth", lambda p: torch.save({"features.0.weight": Payload()}, p), "nothing in it was run")
    good = io.BytesIO()
    torch.save(vgg_state(), good)
    add("truncated.pth", good.getvalue()[: len(good.getvalue()) // 2], "damaged")
    add("empty.pth", b"", "empty")
    add("text.safetensors", b"hello, not weights", "cannot read VGG16 weights")
    add("generator.safetensors", lambda p: save_generator(
        PGGANGenerator(PGGANConfig(16, (32, 32, 16), latent_dim=32)), p), "not a VGG16 state dict")
    return files


def test_hostile_vgg_files_are_one_line_refusals(tmp_path):
    from ganprior_core.method.perceptual import PerceptualModelError, load_vgg16_features
    marker = Path("/tmp/ganprior-vgg-payload-ran")
    marker.unlink(missing_ok=True)
    for name, (path, message) in hostile_vgg_files(tmp_path).items():
        with pytest.raises(PerceptualModelError) as caught:
            load_vgg16_features(path)
        text = str(caught.value)
        assert message in text and "\n" not in text and len(text) < 500, (name, text)
    assert not marker.exists()


def test_a_vgg_file_larger_than_any_vgg16_is_refused_unread(tmp_path, monkeypatch):
    from ganprior_core.method import perceptual
    path = tmp_path / "big.pth"
    torch.save(vgg_state(), path)
    monkeypatch.setattr(perceptual, "MAX_VGG_FILE_BYTES", 1024)
    with pytest.raises(perceptual.PerceptualModelError, match="far more than VGG16"):
        perceptual.load_vgg16_features(path)


def test_inpaint_with_a_hostile_vgg_file_is_one_error_line(ws, tmp_path):
    files = hostile_vgg_files(tmp_path)
    for name in ("huge-header.safetensors", "payload.pth", "truncated.pth"):
        assert_refused(inpaint_argv(ws, **{"--vgg": files[name][0]}), [ws["root"]], name)


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


def test_ctrl_c_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.png"
    target.write_bytes(b"old")

    def interrupted(file):
        file.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, interrupted)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["result.png"]


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
                             stderr=subprocess.STDOUT, text=True)
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
