"""The shipped workflows as a new user meets them (issue 35): each runs on a fresh install (only the
bundled priors, its pictures copied into ComfyUI's input folder, the model folders created), ends in
a result or one instruction, shows its Inpaint or Restore info, fits a 1600x1000 window at its saved zoom,
and its file name reads as the template card's title (ComfyUI's template browser, frontend 1.35,
shows a pack's workflow by its file name, as title and description).

tests/nodes/test_workflows.py checks every workflow against the nodes' inputs; this file adds what
the new fields and the frontend's behaviour ask of them."""
from __future__ import annotations

import json
import re
import types

import pytest

from tests.nodes.test_workflows import (
    BUNDLED_MODELS,
    BYPASSED,
    LOADER_FOLDERS,
    MUTED,
    NOTE_NODES,
    RESULT_NODES,
    UI_FILES,
    WORKFLOWS,
    drawn_height,
    drawn_top,
    run_prompt,
    validate_prompt,
)
from tests.pack_under_test import ROOT, FakeComfyUIHost, forget, import_copy, pack_module

pytestmark = pytest.mark.usefixtures("one_thread")

# Measured in ComfyUI 0.8.0 / frontend 1.35.9 (headless Chromium, 1600x1000): below a zoom of 0.6
# the canvas draws nodes without any text. Grown heights: test_workflows.drawn_height.
MIN_READABLE_ZOOM = 0.6
WINDOW = (1600, 1000)
# What the frontend draws over the canvas in that window (screen pixels): the sidebar, the tabs
# and the Run bar, the queue panel while a run goes, the minimap.
SIDEBAR, TOP_BAR = 60, 90
OVERLAYS = {"queue panel": (1250, 0, 1600, 170), "minimap": (1340, 740, 1600, 1000)}
CARD_TITLE_CHARACTERS = 30  # what a template card shows on one line before it cuts the title off


def workflow(path):
    return json.loads(path.read_text())


def active(node) -> bool:
    return node.get("mode", 0) not in (BYPASSED, MUTED)


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_the_file_name_is_the_cards_title(path):
    name = path.stem
    assert len(name) <= CARD_TITLE_CHARACTERS, f"{name!r} is cut off on its card"
    assert not re.search(r'[<>:"/\\|?*_]', name), f"{name!r}: no underscores (shown raw), nothing Windows refuses"
    assert name[0].isupper() and (WORKFLOWS / "api" / path.name).is_file()
    assert (WORKFLOWS / f"{name}.jpg").is_file()  # the card's thumbnail


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_every_inpaint_or_restore_node_shows_its_info_in_a_text_preview(path):
    nodes = {node["id"]: node for node in workflow(path)["nodes"]}
    links = {link[0]: link for link in workflow(path)["links"]}
    runs = [node for node in nodes.values() if node["type"] in RESULT_NODES]
    assert runs
    for node in runs:
        info = next(output for output in node["outputs"] if output["name"] == "info")
        targets = [nodes[links[link][3]]["type"] for link in info["links"] or []]
        assert "PreviewAny" in targets, f"node {node['id']}'s info is shown nowhere in {path.name}"


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_every_workflow_runs_as_installed(path):
    """Active loaders name only the bundled priors, Load Image only the pictures the pack copies
    into ComfyUI's input folder, a bypassed node feeds only optional inputs, and no node lists a
    file for the frontend's Missing Models dialog (it would open on a workflow that runs)."""
    host = pack_module("nodes.host")
    data = workflow(path)
    nodes = {node["id"]: node for node in data["nodes"]}
    for node in data["nodes"]:
        if node["type"] in LOADER_FOLDERS and active(node):
            assert node["widgets_values"][0] in BUNDLED_MODELS, f"{path.name}: node {node['id']}"
        if node["type"] == "LoadImage":
            assert node["widgets_values"][0] in host.EXAMPLE_INPUTS
            assert (WORKFLOWS / node["widgets_values"][0]).is_file()
        selected = {value for value in node.get("widgets_values", []) if isinstance(value, str)}
        assert not [entry for entry in node.get("properties", {}).get("models", [])
                    if entry.get("name") in selected], f"{path.name}: node {node['id']} opens Missing Models"
        if not active(node):
            assert node["mode"] == BYPASSED and node["type"] in LOADER_FOLDERS
            for link in data["links"]:
                if link[1] == node["id"]:
                    target = nodes[link[3]]
                    assert target["inputs"][link[4]].get("shape") == 7, "a bypassed node feeds an optional input"


@pytest.fixture
def fresh_install(tmp_path, monkeypatch):
    """A models folder with nothing in it: what a new user has besides the bundled priors."""
    (tmp_path / "pggan").mkdir()
    (tmp_path / "vgg").mkdir()
    monkeypatch.setenv(pack_module("nodes.host").MODELS_DIR_ENV, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("path", sorted((WORKFLOWS / "api").glob("*.json")), ids=lambda p: p.stem)
def test_every_api_copy_is_accepted_and_runs_on_a_fresh_install(path, fresh_install):
    prompt = workflow(path)
    assert validate_prompt(prompt) == []
    outputs = run_prompt(prompt)  # two steps per optimisation
    for node_id, node in prompt.items():
        if node["class_type"] in RESULT_NODES:
            assert outputs[node_id][-1].startswith("image 1:")


@pytest.mark.parametrize("folder, node_type, name", [
    ("pggan", "LoadPGGANPrior", "pggan_church256.pth"),
    ("vgg", "LoadPerceptualModelVGG16", "vgg16-397923af.pth")])
def test_a_missing_model_stops_the_run_with_one_instruction(folder, node_type, name, fresh_install):
    """What the own-prior workflow's note promises: a loader naming a file the install lacks is
    refused before the run, with which file to put into which folder and where to get it."""
    prompt = {"1": {"class_type": node_type, "inputs": {LOADER_INPUT[node_type]: name}}}
    errors = validate_prompt(prompt)
    assert len(errors) == 1
    message = errors[0]
    assert name in message and str(fresh_install / folder) in message and "press R" in message
    assert ("docs/pretrained_priors.md" if folder == "pggan" else "download.pytorch.org") in message
    assert (ROOT / "docs" / "pretrained_priors.md").is_file()
    if folder == "pggan":
        assert "facades64.safetensors" in message  # what is there to choose instead
    good = {"1": {"class_type": "LoadPGGANPrior", "inputs": {"prior_name": "facades64.safetensors"}}}
    assert validate_prompt(good) == []


LOADER_INPUT = {"LoadPGGANPrior": "prior_name", "LoadPerceptualModelVGG16": "vgg_name"}


def drawn_boxes(data: dict):
    for node in data["nodes"]:
        x, width = node["pos"][0], node["size"][0]
        yield node["id"], x, drawn_top(node), x + width, node["pos"][1] + drawn_height(node)


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_the_workflow_fits_a_1600_by_1000_window_at_its_saved_zoom_once_it_ran(path):
    data = workflow(path)
    scale, (left, top) = data["extra"]["ds"]["scale"], data["extra"]["ds"]["offset"]
    assert scale >= MIN_READABLE_ZOOM, "below this zoom the canvas draws no text"
    for node_id, x0, y0, x1, y1 in drawn_boxes(data):
        box = ((x0 + left) * scale, (y0 + top) * scale, (x1 + left) * scale, (y1 + top) * scale)
        assert box[0] >= SIDEBAR and box[1] >= TOP_BAR and box[2] <= WINDOW[0] and box[3] <= WINDOW[1], \
            f"node {node_id} of {path.name} is drawn at {box}, outside the window"
        for what, (ox0, oy0, ox1, oy1) in OVERLAYS.items():
            assert not (box[0] < ox1 and box[2] > ox0 and box[1] < oy1 and box[3] > oy0), \
                f"node {node_id} of {path.name} lies under the {what}"


def crossings(data: dict) -> int:
    """Pairs of links (drawn as the straight line from output to input, which LiteGraph's splines
    follow for forward links) that cross, not counting links from the same output or into the
    same node."""
    nodes = {node["id"]: node for node in data["nodes"]}

    def end(node_id, slot, output):
        node = nodes[node_id]
        x = node["pos"][0] + (node["size"][0] if output else 0)
        return x, node["pos"][1] + 10 + 20 * slot

    segments = [(link[1], link[2], link[3], end(link[1], link[2], True), end(link[3], link[4], False))
                for link in data["links"]]

    def cross(a, b, c, d):
        def side(p, q, r):
            return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
        return side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0

    count = 0
    for index, (source, slot, target, a, b) in enumerate(segments):
        for source2, slot2, target2, c, d in segments[index + 1:]:
            if (source, slot) != (source2, slot2) and target != target2 and cross(a, b, c, d):
                count += 1
    return count


def test_links_seldom_cross():
    """Counted as straight lines: the presets comparison crossed 25 pairs before issue 35 (its
    metrics read the reference from the Load Image on the far left); now each preset's metrics read
    it from their own node (with an empty mask its `image` output is its input), and what is left
    are the three fan-outs of prior, image and mask."""
    counts = {path.stem: crossings(workflow(path)) for path in UI_FILES}
    assert counts.pop("Compare the three presets") <= 19
    assert all(count <= 5 for count in counts.values()), counts


def test_notes_point_to_files_that_exist_and_say_what_the_host_does():
    for path in UI_FILES:
        for node in workflow(path)["nodes"]:
            if node["type"] not in NOTE_NODES:
                continue
            text = node["widgets_values"][0]
            for named in re.findall(r"`((?:docs|ganprior_core)/[^`]+\.md)`", text):
                assert (ROOT / named).is_file(), f"{path.name}'s note names {named}"
            assert "README" not in text or "docs/" in text
            if "Missing Models" in text:  # the frontend opens it only for files a node lists
                assert "lists no files" in text


def fake_comfyui(tmp_path, monkeypatch):
    host = FakeComfyUIHost(tmp_path / "models")
    folder_paths = host.modules["folder_paths"]
    folder_paths.get_input_directory = lambda: str(tmp_path / "input")
    folder_paths.get_folder_paths = lambda name: host.folders[name][0]
    host.install(monkeypatch)
    return host


def test_registering_creates_the_model_folders_and_copies_the_workflows_pictures(tmp_path, monkeypatch):
    fake_comfyui(tmp_path, monkeypatch)
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "ganprior_facade.png").write_bytes(b"the user's own picture")
    package = "pack_registering_on_a_fresh_install"
    try:
        import_copy(ROOT, package)
    finally:
        forget(package)
    assert (tmp_path / "models" / "pggan").is_dir() and (tmp_path / "models" / "vgg").is_dir()
    for name in set(pack_module("nodes.host").EXAMPLE_INPUTS) - {"ganprior_facade.png"}:
        assert (tmp_path / "input" / name).read_bytes() == (WORKFLOWS / name).read_bytes(), name
    assert (tmp_path / "input" / "ganprior_facade.png").read_bytes() == b"the user's own picture"


def test_a_folder_that_cannot_be_made_is_a_warning_not_an_error(tmp_path, monkeypatch, caplog):
    host = pack_module("nodes.host")
    blocker = tmp_path / "models"
    blocker.write_text("a file where the folder would go")
    assert host.create_folder(str(blocker / "pggan")) is False
    assert "could not create the model folder" in caplog.text
    monkeypatch.setattr(host, "folder_paths", types.SimpleNamespace(get_input_directory=lambda: str(blocker)))
    assert host.install_example_inputs() == []
    assert f"copy {', '.join(host.EXAMPLE_INPUTS)} from" in caplog.text
