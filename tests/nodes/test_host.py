"""What the nodes ask of ComfyUI and how they do without it (nodes/host.py): the throttled progress
bar, model names that must stay inside their folder, the model list, making room on a GPU, and
the fallbacks outside ComfyUI."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from tests.nodes.node_runs import (
    FakeClock,
    save_tiny_prior,
)
from tests.pack_under_test import load_pack, pack_module, run_node

pytestmark = pytest.mark.usefixtures("one_thread")


def test_progress_bar_sends_one_update_per_tenth_of_a_second_and_what_it_held_on_flush():
    host = pack_module("nodes.host")
    clock, sent = FakeClock(0.0), []
    bar = host.ProgressBar(100, clock=clock)
    bar._bar = SimpleNamespace(update_absolute=lambda value, preview=None: sent.append(
        (round(clock.time - 1000, 2), value, preview is not None)))
    for value in range(1, 92):
        clock.time += 0.03  # 33 steps a second
        bar.update(value, preview="picture" if value == 50 else None)
    assert (1.5, 50, True) in sent  # a preview is never held back
    assert sent[0] == (0.03, 1, False)  # the first is sent at once
    gaps = [(later[0] - earlier[0], later[2]) for earlier, later in zip(sent, sent[1:])]
    assert all(gap >= 0.1 - 1e-9 for gap, preview in gaps if not preview)  # at most 10 a second
    assert all(gap <= 0.12 + 1e-9 for gap, _ in gaps)  # and never much fewer
    assert sent[-1][1] < 91  # step 91 came too soon after the last one sent...
    bar.flush()
    assert sent[-1][1:] == (91, False)  # ...and flush sends it
    count = len(sent)
    bar.flush()
    assert len(sent) == count  # nothing held: nothing sent twice
    clock.time += 0.001
    bar.update(100)
    assert sent[-1][1:] == (100, False)  # the end is sent however soon it comes


def test_host_falls_back_without_comfyui():
    host = pack_module("nodes.host")
    assert host.model_management is None
    host.make_room(10 ** 12, torch.device("cuda"))  # nothing to ask: no error
    host.release_memory()


@pytest.mark.parametrize("name", ["../outside.safetensors", "../../etc/passwd", "/etc/passwd",
                                  "sub/../../outside.safetensors", "..", "\\\\server\\share\\x.pth",
                                  "..\\outside.safetensors", "C:\\models\\x.pth", ""])
def test_model_names_that_leave_the_models_folder_are_refused(models_dir, name):
    outside = models_dir / "outside.safetensors"
    outside.write_bytes(b"not a model")
    try:
        with pytest.raises(ValueError, match="outside its model folder|not a file name"):
            pack_module("nodes.host").model_path("pggan", name)
        with pytest.raises(ValueError):
            run_node("LoadPGGANPrior", prior_name=name)
    finally:
        outside.unlink()


def test_model_names_inside_the_folder_still_resolve(models_dir):
    host = pack_module("nodes.host")
    (models_dir / "pggan" / "sub").mkdir(exist_ok=True)
    assert host.model_path("pggan", "tiny16.safetensors") == str(models_dir / "pggan" / "tiny16.safetensors")
    assert host.model_path("pggan", "sub/../tiny16.safetensors").endswith("tiny16.safetensors")
    with pytest.raises(FileNotFoundError):
        host.model_path("pggan", "missing.safetensors")


def test_model_list_follows_symlinked_subfolders_and_skips_loops(models_dir, tmp_path, caplog):
    """Outside ComfyUI the list searches subfolders, symbolic links to folders too (as ComfyUI's
    own listing does); a link back into a folder it is in is skipped with a warning naming it,
    instead of being followed without end."""
    import threading
    shared = tmp_path / "shared priors"
    (shared / "deeper").mkdir(parents=True)
    save_tiny_prior(shared / "deeper" / "elsewhere.safetensors", seed=4)
    link = models_dir / "pggan" / "linked"
    link.symlink_to(shared, target_is_directory=True)
    loop = shared / "deeper" / "back up"
    loop.symlink_to(shared, target_is_directory=True)  # linked/deeper/back up -> linked
    node = load_pack().NODE_CLASS_MAPPINGS["LoadPGGANPrior"]
    found = []
    try:
        with caplog.at_level("WARNING"):
            lister = threading.Thread(target=lambda: found.append(node.INPUT_TYPES()["required"]["prior_name"][0]),
                                      daemon=True)
            lister.start()
            lister.join(timeout=60)
        assert not lister.is_alive() and found, "the listing did not finish"
        name = os.path.join("linked", "deeper", "elsewhere.safetensors")
        assert name in found[0] and "tiny16.safetensors" in found[0]
        assert not any("back up" in listed for listed in found[0])
        assert any(str(models_dir / "pggan" / "linked" / "deeper" / "back up") in record.getMessage()
                   and "loop" in record.getMessage() for record in caplog.records)
        _, info = run_node("LoadPGGANPrior", prior_name=name)
        assert info.startswith(f"{name}: 16x16 PGGAN")
    finally:
        loop.unlink()
        link.unlink()
