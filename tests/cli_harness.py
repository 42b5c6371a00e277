"""Running `python -m ganprior_core` commands in tests, and what a refusal must look like.

A refused command exits with code 2 and one `error:` line naming the problem, no traceback,
nothing written or left behind and the user's files byte-identical (`assert_refused`). Commands
that could die or hang (Ctrl-C, kill -9, the compiler cache) run in a subprocess
(`subprocess_env`). The `ws` and `bad_ws` fixtures (tests/conftest.py) are the workspaces below."""
from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np

from ganprior_core.cli import main
from tests.hostile_builders import write_good_inputs
from tests.pack_under_test import ROOT

FAST = ["--steps", "2", "--codes", "2", "--precision", "fp32", "--preset", "mganprior",
        "--compile", "off"]
# A PGGAN training run of a few images: 8x8, two phases.
TRAIN = ["train", "--data", "procedural", "--resolution", "8", "--channels", "8,8", "--latent-dim",
         "8", "--images-per-phase", "8,8", "--batch-sizes", "4,4", "--final-stable-images", "8",
         "--precision", "fp32", "--threads", "1"]


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
    """Run the CLI; assert exit 2, one error line naming the problem, nothing written or changed
    under `watched`; return the line."""
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


def refused(argv, ws, *expected: str) -> str:
    """assert_refused, watching everything in the workspace `ws`."""
    return assert_refused(argv, [ws["root"]], *expected)


def no_partials(folder: Path) -> None:
    left = [p for p in Path(folder).rglob("*") if p.name.endswith((".partial", ".tmp"))]
    assert not left, left


def subprocess_env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def workspace(tmp_path: Path, prior) -> dict:
    """Inputs in in/ (tests.hostile_builders.write_good_inputs: tiny.safetensors of `prior`, a
    28x20 image.png, its mask.png and z.npy), outputs go to out/."""
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    write_good_inputs(inputs, prior)
    return {"in": inputs, "out": outputs, "root": tmp_path, "checkpoint": inputs / "tiny.safetensors"}


def inpaint_argv(ws, **overrides):
    """`inpaint` of the workspace's image and mask into out/result.png; an option set to None is
    left out."""
    options = {"--checkpoint": ws["checkpoint"], "--image": ws["in"] / "image.png",
               "--mask": ws["in"] / "mask.png", "--out": ws["out"] / "result.png"}
    options.update(overrides)
    argv = ["inpaint", *FAST]
    for option, value in options.items():
        if value is not None:
            argv += [option, value]
    return argv


def png_header_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes that claim width x height pixels: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# What the CLI says of each bad file in write_bad_files.
BAD_FILE_MESSAGES = {
    "missing": "no such",
    "directory": "is a directory",
    "empty": "not an image file",
    "text": "not an image file",
    "truncated": "corrupt, truncated",
    "bomb": "decompression bomb",
    "over_cap": "more than the",
    "fifo": "not a regular file",
    "nan_tiff": "NaN",
}


def write_bad_files(inputs: Path) -> dict[str, Path]:
    """The bad files every input option is tried with, next to the good image.png in `inputs`."""
    from PIL import Image
    good_png = (inputs / "image.png").read_bytes()
    bad = {
        "missing": inputs / "missing.png",
        "directory": inputs,
        "empty": inputs / "empty.png",
        "text": inputs / "text.png",
        "truncated": inputs / "truncated.png",
        "bomb": inputs / "bomb.png",
        "over_cap": inputs / "big.png",
        "fifo": inputs / "pipe.png",
        "nan_tiff": inputs / "nan.tif",
    }
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("not an image\n")
    bad["truncated"].write_bytes(good_png[: len(good_png) // 2])
    bad["bomb"].write_bytes(png_header_claiming(40000, 40000))
    bad["over_cap"].write_bytes(png_header_claiming(9000, 9000))
    os.mkfifo(bad["fifo"])
    nan_pixels = np.full((20, 28), 0.25, np.float32)
    nan_pixels[3, 3] = np.nan
    Image.fromarray(nan_pixels, "F").save(bad["nan_tiff"])
    return bad


def bench_argv(ws, out, *extra):
    return ["bench", "--checkpoint", ws["checkpoint"], "--procedural", "2", "--methods",
            "mean-fill,diffusion-fill", "--threads", "1", "--out", out, *extra]


def csv_rows(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def ctrl_c_reaches_it() -> None:
    """A Popen preexec_fn: SIGINT at its default in the command, so that Python there turns it
    into KeyboardInterrupt even when the tests run from a background shell, whose children start
    with SIGINT ignored (and inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_when(argv, ready, cwd=ROOT) -> subprocess.CompletedProcess:
    """Run the command in a subprocess and send it SIGINT at the first output line `ready` accepts."""
    process = subprocess.Popen([sys.executable, "-m", "ganprior_core", *map(str, argv)], cwd=cwd,
                               env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_reaches_it)
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
