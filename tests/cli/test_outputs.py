"""Where the commands write: output paths are checked before any work (a known extension, not a
directory, a writable folder, a name that fits, a size the format holds, never one of the inputs,
also not through a hard or symbolic link), files keep the umask's permissions, and a full disk
keeps the previous file and leaves nothing behind (a small tmpfs, skipped where it cannot be mounted)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganprior_core import imaging
from ganprior_core.cli import main
from ganprior_core.files import NAME_MAX, temporary_path
from tests.cli_harness import assert_refused, files_under, inpaint_argv, no_partials, refused, run_cli


@pytest.mark.parametrize("option", ["--out", "--raw-out"])
@pytest.mark.parametrize("kind, message", [
    ("directory", "is a directory"),
    ("unknown_extension", "accepted: .png"),
    ("no_extension", "no extension"),
    ("under_a_file", "is a file"),
    ("name_too_long", "too long"),
    ("unwritable", "cannot write files into /proc"),
])
def test_unusable_output_paths_are_refused_before_any_work(ws, option, kind, message):
    path = {"directory": ws["out"],
            "unknown_extension": ws["out"] / "result.xyz",
            "no_extension": ws["out"] / "result",
            "under_a_file": ws["in"] / "image.png" / "result.png",
            "name_too_long": ws["out"] / ("x" * 300 + ".png"),
            "unwritable": Path("/proc/ganprior/result.png")}[kind]
    refused(inpaint_argv(ws, **{option: path}), ws, message)


@pytest.mark.parametrize("option", ["--out", "--raw-out"])
@pytest.mark.parametrize("input_option", ["--image", "--mask"])
def test_outputs_never_overwrite_an_input(ws, option, input_option):
    given = inpaint_argv(ws)
    refused(inpaint_argv(ws, **{option: given[given.index(input_option) + 1]}), ws,
            f"is the {input_option} file")


def test_demo_steps_zero_is_refused_not_replaced_by_the_default(ws):
    refused(["demo", "--steps", "0", "--out", ws["out"] / "demo"], ws, "steps")


def test_raw_out_must_differ_from_out(ws):
    out = ws["out"] / "result.png"
    refused(inpaint_argv(ws, **{"--raw-out": out}), ws, "--out and --raw-out")


@pytest.mark.parametrize("argv, message", [
    (["--count", "2", "--out", "{out}/g.npy"], "--latents"),
    (["--count", "2", "--out", "{out}/g.xyz"], "accepted"),
    (["--count", "2", "--out", "{out}"], "is a directory"),
    (["--count", "0", "--out", "{out}/g.png"], "count"),
    (["--columns", "0", "--out", "{out}/g.png"], "--columns"),
    (["--latents", "{in}/z.npy", "--out", "{in}/image.png/x.npy"], "is a file"),
])
def test_generate_outputs_and_counts_are_checked(ws, argv, message):
    argv = [arg.format(out=ws["out"], **{"in": ws["in"]}) for arg in argv]
    refused(["generate", ws["checkpoint"], *argv], ws, message)


@pytest.mark.parametrize("destination, message", [
    ("{out}", "is a directory"),
    ("{out}/model.png", ".safetensors"),
    ("{in}/image.png/model.safetensors", "is a file"),
])
def test_convert_refuses_bad_destinations_and_leaves_no_partial_file(ws, destination, message):
    destination = destination.format(out=ws["out"], **{"in": ws["in"]})
    refused(["convert", ws["checkpoint"], destination], ws, message)


@pytest.mark.parametrize("command", ["demo", "train", "bench"])
def test_output_folder_that_is_a_file_is_refused(ws, command):
    extra = {"demo": [], "train": ["--data", "procedural"],
             "bench": ["--checkpoint", ws["checkpoint"], "--procedural", "2"]}[command]
    refused([command, *extra, "--out", ws["in"] / "image.png"], ws, "is a file")


def test_inpaint_writes_into_new_folders(ws):
    out = ws["out"] / "new" / "deeper" / "result.png"
    assert main([str(arg) for arg in inpaint_argv(ws, **{"--out": out})]) == 0
    assert imaging.load_image(out).shape == (3, 20, 28)


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


@pytest.mark.parametrize("length", [238, 250, 255])
def test_output_names_up_to_name_max_are_written(ws, length):
    name = "r" * (length - 4) + ".png"
    assert len(temporary_path(ws["out"] / name).name.encode()) <= NAME_MAX
    code, _, err = run_cli(inpaint_argv(ws, **{"--out": ws["out"] / name}))
    assert code == 0, err
    assert (ws["out"] / name).is_file()
    no_partials(ws["out"])


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
