"""`inpaint --image FOLDER --out FOLDER` (cli.py `_folder_images`): every image file of the folder,
sorted by name, runs as if each were given as an --image (image i with seed + i), its result under
its own name in the --out folder, in groups of what memory holds; masks from one file, a folder of
masks named as the images, or each image's transparency; mistakes are one `error:` line before any
work (tests.cli_harness)."""
from __future__ import annotations

from PIL import Image

from ganprior_core import cli
from tests.cli_harness import FAST, assert_refused, run_cli

SEED = 11


def _inpaint(ws, *options) -> list:
    return ["inpaint", *FAST, "--checkpoint", ws["checkpoint"], "--seed", SEED, *options]


def _one_by_one(ws, out, masks=None) -> list:
    """The same images given as several --image, in sorted order."""
    options = []
    for index, name in enumerate(ws["names"]):
        options += ["--image", ws["photos"] / name, "--out", out / name]
        if masks is not None:
            options += ["--mask", masks[index]]
    return _inpaint(ws, *options)


def _same_files(folder, other, names) -> None:
    assert sorted(path.name for path in folder.iterdir()) == names
    for name in names:
        assert (folder / name).read_bytes() == (other / name).read_bytes(), name


def test_a_folder_runs_as_its_images_given_one_by_one(photos, monkeypatch):
    """Also when memory holds only two runs at a time: groups of 2 and 1, the same files."""
    out = photos["out"] / "new" / "results"  # made, with its parent
    with monkeypatch.context() as patched:
        patched.setattr(cli, "batch_size_that_fits", lambda *args, **kwargs: 2)
        code, stdout, err = run_cli(_inpaint(photos, "--image", photos["photos"], "--out", out))
    assert code == 0, err
    assert "note: 3 images run 2 at a time, what the memory available now holds" in stdout
    note = next(line for line in stdout.splitlines() if "skipped" in line)
    assert note.startswith(f"note: {photos['photos']}: 3 images; skipped 3 other entries (only "
                           "visible files named .png")
    assert note.endswith("not subfolders): .hidden.png, notes.txt, sub.png/")
    assert [line.split()[1] for line in stdout.splitlines() if line.startswith("wrote ")] == \
        [str(out / name) for name in photos["names"]]
    # b.png without a mask: its transparent corner is the hole, as for one --image
    assert "the 36 transparent pixels of b.png" in stdout
    reference = photos["out"] / "one_by_one"
    code, _, err = run_cli(_one_by_one(photos, reference))
    assert code == 0, err
    _same_files(out, reference, photos["names"])
    assert sorted(path.name for path in photos["photos"].iterdir()) == \
        [".hidden.png", "a.jpg", "b.png", "c.png", "notes.txt", "sub.png"]  # nothing written there


def test_a_mask_folder_gives_each_image_the_mask_of_its_name(photos):
    out, raw = photos["out"] / "filled", photos["out"] / "raw"
    code, _, err = run_cli(_inpaint(photos, "--image", photos["photos"], "--mask", photos["masks"],
                                    "--out", out, "--raw-out", raw))
    assert code == 0, err
    assert sorted(path.name for path in raw.iterdir()) == photos["names"]
    reference = photos["out"] / "one_by_one"
    masks = [photos["masks"] / name for name in ("a.png", "b.png", "c.png")]  # a.jpg's is a.png
    code, _, err = run_cli(_one_by_one(photos, reference, masks))
    assert code == 0, err
    _same_files(out, reference, photos["names"])
    # one mask file for all: a.jpg's own, elsewhere than c.png's own
    shared = photos["out"] / "shared"
    code, _, err = run_cli(_inpaint(photos, "--image", photos["photos"], "--mask", masks[0],
                                    "--out", shared))
    assert code == 0, err
    assert (shared / "a.jpg").read_bytes() == (out / "a.jpg").read_bytes()
    assert (shared / "c.png").read_bytes() != (out / "c.png").read_bytes()


def test_a_folder_of_one_image_keeps_the_single_run_and_its_starts(ws):
    folder = ws["in"] / "one"
    folder.mkdir()
    (folder / "image.png").write_bytes((ws["in"] / "image.png").read_bytes())
    code, _, err = run_cli(_inpaint(ws, "--image", folder, "--mask", ws["in"] / "mask.png",
                                    "--out", ws["out"] / "f", "--starts", "2"))
    assert code == 0, err
    code, _, err = run_cli(_inpaint(ws, "--image", ws["in"] / "image.png", "--mask",
                                    ws["in"] / "mask.png", "--out", ws["out"] / "alone.png",
                                    "--starts", "2"))
    assert code == 0, err
    assert (ws["out"] / "f" / "image.png").read_bytes() == (ws["out"] / "alone.png").read_bytes()


def test_mistakes_with_a_folder_are_refused_in_one_line(photos):
    folder, masks, out = photos["photos"], photos["masks"], photos["out"]
    watched = [photos["root"]]
    (out / "taken").write_text("a file")
    (photos["in"] / "empty").mkdir()
    gappy = photos["in"] / "gappy"
    gappy.mkdir()
    (gappy / "a.png").write_bytes((masks / "a.png").read_bytes())
    twice = photos["in"] / "twice"
    twice.mkdir()
    for name in ("b.png", "c.png", "a.png", "a.tif"):
        Image.open(masks / name.replace(".tif", ".png")).save(twice / name)
    cases = [
        (["--image", folder, "--image", photos["in"] / "image.png", "--out", out / "r"],
         "is a folder, which stands for every image in it: give it as the only --image"),
        (["--image", folder, "--out", out / "r", "--out", out / "s"], "give one --out"),
        (["--image", folder, "--out", folder], "is the --image folder"),
        (["--image", folder, "--mask", masks, "--out", masks], "is the --mask folder"),
        (["--image", folder, "--out", out / "result.png"], "must be a folder"),
        (["--image", folder, "--out", out / "taken"], "is a file"),
        (["--image", folder, "--out", out / "r", "--raw-out", out / "r"], "the same folder"),
        (["--image", folder, "--mask", folder, "--out", out / "r"], "read as images too"),
        (["--image", folder, "--mask", folder / "b.png", "--out", out / "r"],
         "lies in the --image folder"),
        (["--image", folder, "--mask", masks, "--mask", masks, "--out", out / "r"],
         "give one --mask"),
        (["--image", photos["in"] / "empty", "--out", out / "r"], "holds no image files"),
        (["--image", folder, "--mask", gappy, "--out", out / "r"], "has no mask for b.png"),
        (["--image", folder, "--mask", twice, "--out", out / "r"],
         "has 2 masks (a.png, a.tif) and none named as it for a.jpg"),
        (["--image", folder, "--out", out / "r", "--starts", "2"], "--starts must be 1"),
    ]
    for options, expected in cases:
        assert_refused(_inpaint(photos, *options), watched, expected)
