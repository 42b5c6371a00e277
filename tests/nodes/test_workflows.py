"""The example workflows must match the nodes as they are now, and every workflow the project
ever shipped must still run on them.

UI-format files (example_workflows/*.json, what ComfyUI's Save writes and its template browser
lists) are checked node by node against INPUT_TYPES / RETURN_TYPES: input slots, output slots,
links and every positional widget value. Their API-format copies (example_workflows/api/) must be
exactly what the UI file converts to (notes stay in the UI file). Renaming, adding or reordering an
input breaks this test. A loader that names a model the pack does not ship must say where to get it.

tests/nodes/workflow_history/ holds every version of every file example_workflows/ ever had in git
(UI workflows and API prompts, one file per distinct content, named <first commit>_<name>.json and
<first commit>_api_<name>.json). Each must pass ComfyUI's prompt validation against today's nodes
(a required input missing is what "Required input is missing" refuses), and each API prompt runs,
with few steps, on the bundled prior. So an input added to a node that shipped must be optional,
with the old behaviour as its default. After changing example_workflows/, commit, then run
`python tests/nodes/test_workflows.py --collect-history` and commit the new corpus files.
"""
from __future__ import annotations

import inspect
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":  # run as a script: the repository root is not on sys.path then
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.pack_under_test import ROOT, load_pack, pack_module  # noqa: E402

WORKFLOWS = ROOT / "example_workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))
HISTORY = Path(__file__).resolve().parent / "workflow_history"
HISTORY_UI = sorted(path for path in HISTORY.glob("*.json") if "_api_" not in path.name)
HISTORY_API = sorted(HISTORY.glob("*_api_*.json"))

# The ComfyUI core nodes the workflows use, as its /object_info describes them (ComfyUI 2026).
CORE_NODES = {
    "LoadImage": ({"required": {"image": ("COMBO", {"image_upload": True})}},
                  ("IMAGE", "MASK"), ("IMAGE", "MASK")),
    "SaveImage": ({"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {})}}, (), ()),
    "PreviewImage": ({"required": {"images": ("IMAGE",)}}, (), ()),
    "PreviewAny": ({"required": {"source": ("*",)}}, (), ()),
    "SolidMask": ({"required": {"value": ("FLOAT", {"min": 0.0, "max": 1.0}),
                                "width": ("INT", {"min": 1, "max": 16384}),
                                "height": ("INT", {"min": 1, "max": 16384})}}, ("MASK",), ("MASK",)),
    "ImageStitch": ({"required": {"image1": ("IMAGE",),
                                  "direction": (["right", "down", "left", "up"], {}),
                                  "match_image_size": ("BOOLEAN", {}),
                                  "spacing_width": ("INT", {"min": 0, "max": 1024}),
                                  "spacing_color": (["white", "black", "red", "green", "blue"], {})},
                     "optional": {"image2": ("IMAGE",)}}, ("IMAGE",), ("IMAGE",)),
    # Used by workflows the project shipped earlier.
    "ImageBatch": ({"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}, ("IMAGE",), ("IMAGE",)),
}
# Widgets the frontend adds by itself and saves in widgets_values (PreviewAny's text display,
# e.g. [null, null, false]); it also sends them to /prompt, where ComfyUI does not need them.
FRONTEND_ONLY_WIDGETS = {"PreviewAny"}
# Nodes that exist only in the frontend (text on the canvas): never sent to /prompt.
NOTE_NODES = {"Note", "MarkdownNote"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_AFTER_GENERATE = {"fixed", "increment", "decrement", "randomize"}
# Model files the workflows name; a user puts them in models/pggan and models/vgg.
USER_MODELS = {"pggan": ["pggan_church256.pth"], "vgg": ["vgg16-397923af.pth"]}
# ...and the ones workflows shipped earlier named.
EARLIER_USER_MODELS = {"pggan": ["pggan_churchoutdoor256_generator.pth"], "vgg": []}
# The loader nodes and the model folder (ComfyUI/models/<folder>) their file comes from.
LOADER_FOLDERS = {"LoadPGGANPrior": "pggan", "LoadPerceptualModelVGG16": "vgg"}
BUNDLED_MODELS = {path.name for path in (ROOT / "ganprior_core" / "priors").iterdir()}


@pytest.fixture(scope="module", autouse=True)
def user_models(tmp_path_factory):
    """A models folder holding (empty) files with the names the workflows use."""
    root = tmp_path_factory.mktemp("models")
    for folder, names in USER_MODELS.items():
        (root / folder).mkdir()
        for name in [*names, *EARLIER_USER_MODELS[folder]]:
            (root / folder / name).touch()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(pack_module("nodes.host").MODELS_DIR_ENV, str(root))
        yield


def node_spec(node_type: str):
    """(INPUT_TYPES, RETURN_TYPES, RETURN_NAMES) of a node type."""
    ours = load_pack().NODE_CLASS_MAPPINGS
    if node_type in ours:
        cls = ours[node_type]
        return cls.INPUT_TYPES(), cls.RETURN_TYPES, getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
    if node_type in CORE_NODES:
        return CORE_NODES[node_type]
    raise AssertionError(f"unknown node type {node_type!r}")


def declared_inputs(input_types: dict):
    for section in ("required", "optional"):
        for name, declaration in input_types.get(section, {}).items():
            kind = declaration[0]
            options = declaration[1] if len(declaration) > 1 else {}
            yield section, name, kind, options


def is_widget(kind) -> bool:
    return isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES


def widget_slots(input_types: dict) -> list[tuple[str | None, object, dict]]:
    """The positional layout of widgets_values: (input name or None for a frontend extra, kind,
    options). A seed with control_after_generate and an image upload combo add one value each."""
    slots = []
    for _, name, kind, options in declared_inputs(input_types):
        if is_widget(kind):
            slots.append((name, kind, options))
            if options.get("control_after_generate"):
                slots.append((None, "control_after_generate", {}))
            if options.get("image_upload"):
                slots.append((None, "image_upload", {}))
    return slots


def link_inputs(input_types: dict) -> list[tuple[str, str, str]]:
    return [(section, name, kind) for section, name, kind, _ in declared_inputs(input_types)
            if not is_widget(kind)]


def widget_input_slots(input_types: dict) -> list[tuple[str, str]]:
    """The frontend also lists every widget as an input slot (after the link inputs)."""
    slots = []
    for name, kind, _ in widget_slots(input_types):
        if name is not None:
            slots.append((name, kind if isinstance(kind, str) else "COMBO"))
        elif kind == "image_upload":
            slots.append(("upload", "IMAGEUPLOAD"))
    return slots


# LiteGraph node modes the frontend leaves out of /prompt: muted ("never") and bypassed.
MUTED, BYPASSED = 2, 4


def ui_to_api(workflow: dict) -> dict:
    """What ComfyUI's frontend sends to /prompt for a UI-format workflow. A muted or bypassed
    node is left out with the links from it (a bypassed node passes on an input of its output's
    type; the workflows bypass only loaders, which have none)."""
    left_out = {node["id"] for node in workflow["nodes"] if node.get("mode", 0) in (MUTED, BYPASSED)}
    links = {link[0]: link for link in workflow["links"] if link[1] not in left_out}
    prompt = {}
    for node in sorted(workflow["nodes"], key=lambda n: n["id"]):
        if node["type"] in NOTE_NODES or node["id"] in left_out:
            continue
        input_types, _, _ = node_spec(node["type"])
        inputs = {}
        if node["type"] not in FRONTEND_ONLY_WIDGETS:
            for (name, _, _), value in zip(widget_slots(input_types), node["widgets_values"]):
                if name is not None:
                    inputs[name] = value
        for slot in node["inputs"]:
            if slot["link"] in links:
                link = links[slot["link"]]
                inputs[slot["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def check_widget_value(node_type: str, name, kind, options: dict, value) -> None:
    where = f"{node_type}.{name or kind}"
    if kind == "control_after_generate":
        assert value in CONTROL_AFTER_GENERATE, where
    elif kind == "image_upload":
        assert value == "image", where
    elif name == "image" and node_type == "LoadImage":
        assert (WORKFLOWS / value).is_file(), f"{where}: ship {value} next to the workflow"
    elif isinstance(kind, (list, tuple)):
        assert value in kind, f"{where}: {value!r} is not one of {kind}"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    elif kind == "STRING":
        assert isinstance(value, str), where
    else:
        assert isinstance(value, int if kind == "INT" else (int, float)), where
        assert not isinstance(value, bool), where
        assert options.get("min", -math.inf) <= value <= options.get("max", math.inf), where


def test_there_are_the_promised_workflows():
    names = {path.stem for path in UI_FILES}
    # The file names are the template cards' titles (tests/nodes/test_workflows_as_installed.py).
    assert {"Inpaint a facade (PGGAN)", "Inpaint a facade (StyleGAN2)", "Compare the three presets",
            "Inpaint with your own prior", "Super-resolution ×4 (PGGAN)",
            "Colorize a facade (PGGAN)"} <= names
    assert {path.stem for path in (WORKFLOWS / "api").glob("*.json")} == names


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_matches_the_nodes(path):
    workflow = json.loads(path.read_text())
    assert workflow["version"] == 0.4
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert workflow["last_node_id"] >= max(nodes)
    assert workflow["last_link_id"] >= max(link[0] for link in workflow["links"])

    for node in nodes.values():
        if node["type"] in NOTE_NODES:
            assert not node["inputs"] and not node["outputs"], f"note {node['id']}"
            assert [type(value) for value in node["widgets_values"]] == [str], f"note {node['id']}"
            continue
        input_types, return_types, return_names = node_spec(node["type"])
        declared_links = link_inputs(input_types)
        assert [(slot["name"], slot["type"]) for slot in node["inputs"]] == \
            [(name, kind) for _, name, kind in declared_links] + widget_input_slots(input_types), \
            f"input slots of node {node['id']} ({node['type']})"
        for (section, name, _), slot in zip(declared_links, node["inputs"]):
            assert section == "optional" or slot["link"] is not None, \
                f"required input {node['type']}.{name} of node {node['id']} is not connected"
        assert [(slot["name"], slot["type"]) for slot in node["outputs"]] == \
            list(zip(return_names, return_types)), f"output slots of node {node['id']}"
        if node["type"] not in FRONTEND_ONLY_WIDGETS:
            slots = widget_slots(input_types)
            assert len(node["widgets_values"]) == len(slots), \
                f"node {node['id']} ({node['type']}) has {len(node['widgets_values'])} widget values " \
                f"for the widgets {[s[0] or s[1] for s in slots]}"
            for (name, kind, options), value in zip(slots, node["widgets_values"]):
                check_widget_value(node["type"], name, kind, options, value)

    for link_id, source, source_slot, target, target_slot, kind in workflow["links"]:
        output = nodes[source]["outputs"][source_slot]
        target_input = nodes[target]["inputs"][target_slot]
        assert link_id in output["links"] and target_input["link"] == link_id
        assert output["type"] == kind and target_input["type"] in (kind, "*")
    linked = {link[0] for link in workflow["links"]}
    assert linked == {slot["link"] for node in nodes.values() for slot in node["inputs"]
                      if slot["link"] is not None}
    assert linked == {link_id for node in nodes.values() for output in node["outputs"]
                      for link_id in output["links"] or []}


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_api_copy_is_the_ui_workflow_converted(path):
    api = json.loads((WORKFLOWS / "api" / path.name).read_text())
    assert api == ui_to_api(json.loads(path.read_text()))
    for node in api.values():
        input_types, _, _ = node_spec(node["class_type"])
        assert set(input_types["required"]) <= set(node["inputs"]), node["class_type"]


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_models_to_download_say_where_to_get_them(path):
    """A loader that names a file the pack does not ship carries where to get it, twice: as the
    frontend's missing-models entry on the node (properties.models: name, url, directory; the
    frontend uses an entry only when its name is one of the node's widget values) and, because
    the frontend offers a download button only for a few hosts, in a note on the canvas that
    names the file, its folder and the links. A bypassed loader (the workflow runs without it)
    has only the note: an entry would open the Missing Models dialog on a workflow that runs."""
    workflow = json.loads(path.read_text())
    notes = "\n".join(node["widgets_values"][0] for node in workflow["nodes"]
                      if node["type"] in NOTE_NODES)
    for node in workflow["nodes"]:
        folder = LOADER_FOLDERS.get(node["type"])
        if folder is None:
            continue
        name = node["widgets_values"][0]
        if name in BUNDLED_MODELS:
            assert folder == "pggan"
            continue
        assert name in USER_MODELS[folder], f"add {name} to USER_MODELS"
        if node.get("mode", 0) == BYPASSED:
            assert not node["properties"].get("models")
            assert name in notes and f"models/{folder}/" in notes and "https://" in notes
            continue
        entries = [entry for entry in node["properties"].get("models", []) if entry["name"] == name]
        assert len(entries) == 1, f"node {node['id']} ({node['type']}) has no models entry for {name}"
        entry = entries[0]
        assert set(entry) == {"name", "url", "directory"} and entry["directory"] == folder
        assert entry["url"].startswith("https://") and " " not in entry["url"]
        assert name in notes and f"models/{folder}/" in notes and entry["url"] in notes, \
            f"a note in {path.name} must say where to get {name} ({entry['url']}) and where it goes"


TITLE_HEIGHT = 30  # the frontend draws a node's title bar above its saved position
BADGE_HEIGHT = 16  # ...and, for a custom node, the pack's name badge above the title
SLOT_HEIGHT, WIDGET_HEIGHT, NODE_PADDING = 20, 24, 14  # LiteGraph's row heights (frontend 1.35)
# A node showing an image (GAN-Prior Inpaint's progress preview, 512x512) grows to at least the
# top of the image (below its last widget, + 6) + 220 (the frontend's minimum image area), and by
# 58 for its progress line (ComfyUI's progress text). Measured in ComfyUI 0.8.0 / frontend 1.35.9:
# GAN-Prior Inpaint 320x200 grew to 320x398 without the line, 320x400 to 320x456 with it.
# GAN-Prior Restore (the same preview and line) 320x300 grew to 320x576.
IMAGE_TOP_MARGIN, IMAGE_MIN_HEIGHT, PROGRESS_TEXT_HEIGHT = 6, 220, 58
PREVIEW_NODES = {"GANPriorInpaint", "GANPriorRestore"}


def drawn_height(node: dict) -> float:
    """The height the frontend draws a node of this pack with once it ran: it grows a saved size
    that is too small for the node's slots and widgets (to computeSize), and for its preview
    image where it shows one, but never shrinks one."""
    ours = load_pack().NODE_CLASS_MAPPINGS
    if node["type"] not in ours:
        return node["size"][1]
    input_types, return_types, _ = node_spec(node["type"])
    rows = max(len(link_inputs(input_types)), len(return_types))
    widgets = [slot for slot in widget_slots(input_types) if slot[1] != "image_upload"]
    content = rows * SLOT_HEIGHT + len(widgets) * WIDGET_HEIGHT
    height = max(node["size"][1], content + NODE_PADDING)
    if node["type"] in PREVIEW_NODES:
        height = max(height, content + IMAGE_TOP_MARGIN + IMAGE_MIN_HEIGHT + PROGRESS_TEXT_HEIGHT)
    return height


def drawn_top(node: dict) -> float:
    ours = load_pack().NODE_CLASS_MAPPINGS
    return node["pos"][1] - TITLE_HEIGHT - (BADGE_HEIGHT if node["type"] in ours else 0)


def test_the_drawn_height_model_matches_what_the_frontend_drew():
    """The numbers above against the real frontend's: GAN-Prior Inpaint after a run (measured
    before its `starts` and `candidates` widgets came: one widget row each on top), and GAN-Prior
    Restore saved 320x300 in a workflow, grown to 320x576 by its run (frontend 1.35.9)."""
    assert drawn_height({"type": "GANPriorInpaint", "size": [320, 400]}) == 456 + 2 * WIDGET_HEIGHT
    assert drawn_height({"type": "GANPriorRestore", "size": [320, 300]}) == 576
    assert drawn_height({"type": "GANPriorPreset", "size": [300, 110]}) == 126


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_no_node_is_drawn_over_another_even_once_previews_appear(path):
    boxes = []
    for node in json.loads(path.read_text())["nodes"]:
        x, width = node["pos"][0], node["size"][0]
        boxes.append((node["id"], x, drawn_top(node), x + width, node["pos"][1] + drawn_height(node)))
    for index, (first, left, top, right, bottom) in enumerate(boxes):
        for second, left2, top2, right2, bottom2 in boxes[index + 1:]:
            overlap = min(right, right2) > max(left, left2) and min(bottom, bottom2) > max(top, top2)
            assert not overlap, f"nodes {first} and {second} overlap in {path.name}"


# --- Every workflow and API prompt the project ever shipped --------------------------------------

def canonical(document) -> str:
    return json.dumps(document, sort_keys=True)


def shipped_versions(repository: Path = ROOT) -> dict[str, tuple[str, str, object]]:
    """Every distinct JSON file example_workflows/ had in any commit: canonical content ->
    (short hash of the first commit that had it, path, parsed document)."""
    def git(*arguments):
        return subprocess.run(["git", "-C", str(repository), *arguments], check=True,
                              capture_output=True, text=True).stdout

    versions = {}
    for commit in git("log", "--all", "--reverse", "--format=%H", "--", "example_workflows").split():
        # -z: names as they are (git quotes one with a non-ASCII character, e.g. "×4", otherwise)
        for path in git("ls-tree", "-r", "-z", "--name-only", commit, "--", "example_workflows").split("\0"):
            if path.endswith(".json"):
                document = json.loads(git("show", f"{commit}:{path}"))
                versions.setdefault(canonical(document), (commit[:7], path, document))
    return versions


def history_file_name(commit: str, path: str) -> str:
    api = "_api" if "/api/" in path else ""
    return f"{commit}{api}_{Path(path).stem}.json"


def collect_history(repository: Path = ROOT, corpus: Path = HISTORY) -> list[Path]:
    """Write the versions shipped_versions finds that the corpus lacks (compact JSON); the new
    files."""
    corpus.mkdir(exist_ok=True)
    held = {canonical(json.loads(path.read_text())) for path in corpus.glob("*.json")}
    written = []
    for key, (commit, path, document) in shipped_versions(repository).items():
        if key not in held:
            target = corpus / history_file_name(commit, path)
            target.write_text(json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n")
            written.append(target)
    return written


def git_history_available() -> bool:
    if shutil.which("git") is None:
        return False
    result = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%H", "--", "example_workflows"],
                            capture_output=True, text=True)
    return result.returncode == 0 and bool(result.stdout.strip())


@pytest.mark.skipif(not git_history_available(), reason="needs the repository's git history")
def test_the_history_corpus_holds_every_workflow_the_project_ever_shipped():
    held = {canonical(json.loads(path.read_text())): path.name for path in HISTORY.glob("*.json")}
    missing = [history_file_name(commit, path) for key, (commit, path, _) in shipped_versions().items()
               if key not in held]
    assert not missing, (f"{missing} shipped but are not in tests/nodes/workflow_history: run "
                         "`python tests/nodes/test_workflows.py --collect-history` and commit them")
    assert len(held) == len(list(HISTORY.glob("*.json"))), "two corpus files hold the same content"


def test_the_history_corpus_covers_every_workflow_and_both_formats():
    # By content: a file renamed without a change (the API copies of the facade workflows, issue
    # 35) is held under the name it first shipped with.
    held = {canonical(json.loads(path.read_text())) for path in HISTORY.glob("*.json")}
    for path in [*UI_FILES, *sorted((WORKFLOWS / "api").glob("*.json"))]:
        assert canonical(json.loads(path.read_text())) in held, f"{path.name} is not in the corpus"
    names = {path.stem.split("_", 1)[1] for path in HISTORY_UI}
    assert {"api_" + name for name in names} >= {path.stem.split("_", 1)[1] for path in HISTORY_API}
    # Shipped before `compile` (Optimizer) and `stop` (Optimizer and Preset) existed.
    assert any("compile" not in node["inputs"] for path in HISTORY_API
               for node in json.loads(path.read_text()).values() if node["class_type"] == "GANPriorOptimizer")
    assert any("stop" not in node["inputs"] for path in HISTORY_API
               for node in json.loads(path.read_text()).values() if node["class_type"] == "GANPriorPreset")


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def widget_value_error(node_type: str, name: str, kind, options: dict, value) -> str | None:
    """ComfyUI's check of a widget value (execution.validate_inputs): converted to the type,
    within min/max, one of a combo's choices."""
    if node_type == "LoadImage" and name == "image":
        return None if (WORKFLOWS / str(value)).is_file() else f"image {value!r} does not ship"
    if isinstance(kind, (list, tuple)):
        return None if value in kind else f"value {value!r} not in list {list(kind)}"
    if kind == "COMBO":
        return None
    try:
        value = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}[kind](value)
    except (TypeError, ValueError):
        return f"failed to convert {value!r} to {kind}"
    if kind in ("INT", "FLOAT"):
        if "min" in options and value < options["min"]:
            return f"value {value} smaller than min of {options['min']}"
        if "max" in options and value > options["max"]:
            return f"value {value} bigger than max of {options['max']}"
    return None


def validate_prompt(prompt: dict) -> list[str]:
    """What ComfyUI's /prompt refuses in an API prompt, checked against today's nodes: an unknown
    node type, a required input missing, a link to a missing node or output or of the wrong
    type, a widget value of the wrong type, outside min/max or not in the list (except where the
    node's VALIDATE_INPUTS takes the input over, as ComfyUI does), and VALIDATE_INPUTS' refusals.
    Optional inputs may be missing; inputs the node no longer declares are ignored."""
    ours = load_pack().NODE_CLASS_MAPPINGS
    errors = []
    for node_id, node in prompt.items():
        node_type = node["class_type"]
        if node_type not in ours and node_type not in CORE_NODES:
            errors.append(f"node {node_id}: unknown node type {node_type}")
            continue
        input_types, _, _ = node_spec(node_type)
        validate = getattr(ours.get(node_type), "VALIDATE_INPUTS", None)
        taken_over = set(inspect.signature(validate).parameters) if validate else set()
        to_validate = {}
        for section, name, kind, options in declared_inputs(input_types):
            where = f"node {node_id} ({node_type}) input {name}"
            if name not in node["inputs"]:
                if section == "required":
                    errors.append(f"{where}: Required input is missing")
                continue
            value = node["inputs"][name]
            if is_link(value):
                source = prompt.get(value[0])
                if source is None:
                    errors.append(f"{where}: linked node {value[0]} does not exist")
                    continue
                _, return_types, _ = node_spec(source["class_type"])
                if value[1] >= len(return_types):
                    errors.append(f"{where}: node {value[0]} has no output {value[1]}")
                elif kind != "*" and return_types[value[1]] != kind:
                    errors.append(f"{where}: return type mismatch, {return_types[value[1]]} is not {kind}")
                continue
            if not is_widget(kind):
                errors.append(f"{where}: a {kind} input takes a link, got {value!r}")
                continue
            if name in taken_over:
                to_validate[name] = value
                continue
            error = widget_value_error(node_type, name, kind, options, value)
            if error:
                errors.append(f"{where}: {error}")
        if validate and (outcome := validate(**to_validate)) is not True:
            errors.append(f"node {node_id} ({node_type}): {outcome}")
    return errors


def history_ui_to_api(workflow: dict) -> dict:
    """What today's frontend sends to /prompt for a workflow saved earlier: widget values by
    position, and where the saved node has fewer values than today's node has widgets (widgets
    added since), the new widgets' defaults."""
    padded = json.loads(json.dumps(workflow))
    for node in padded["nodes"]:
        if node["type"] in NOTE_NODES or node["type"] in FRONTEND_ONLY_WIDGETS:
            continue
        slots = widget_slots(node_spec(node["type"])[0])
        for name, kind, options in slots[len(node["widgets_values"]):]:
            assert name is not None, f"{node['type']}: a frontend-only widget value is missing"
            node["widgets_values"].append(options.get("default", kind[0] if isinstance(kind, list) else None))
    return ui_to_api(padded)


@pytest.mark.parametrize("path", HISTORY_UI, ids=lambda p: p.stem)
def test_a_workflow_the_project_shipped_is_accepted_by_todays_nodes(path):
    workflow = json.loads(path.read_text())
    prompt = history_ui_to_api(workflow)
    assert {node["class_type"] for node in prompt.values()} & set(load_pack().NODE_CLASS_MAPPINGS)
    assert validate_prompt(prompt) == []


@pytest.mark.parametrize("path", HISTORY_API, ids=lambda p: p.stem)
def test_an_api_prompt_the_project_shipped_is_accepted_by_todays_nodes(path):
    assert validate_prompt(json.loads(path.read_text())) == []


@pytest.mark.parametrize("name, value, message", [
    ("steps", None, "Required input is missing"), ("steps", 0, "smaller than min of 1"),
    ("schedule", "linear", "not in list"), ("lr_latent", float("nan"), "finite"),
    ("compile", "sometimes", "auto, on or off"), ("precision", ["99", 0], "does not exist"),
    ("steps", ["1", 0], "return type mismatch")])
def test_the_validation_refuses_what_comfyui_refuses(name, value, message):
    """The check the corpus passes, against prompts ComfyUI refuses (None: the input left out)."""
    prompt = json.loads((WORKFLOWS / "api" / "Inpaint with your own prior.json").read_text())
    assert validate_prompt(prompt) == []
    optimizer = next(node for node in prompt.values() if node["class_type"] == "GANPriorOptimizer")
    if value is None:
        del optimizer["inputs"][name]
    else:
        optimizer["inputs"][name] = value
    errors = validate_prompt(prompt)
    assert len(errors) == 1 and message in errors[0], errors


# The ComfyUI core nodes the shipped API prompts use, as small stand-ins: enough to feed the pack's
# nodes what ComfyUI would (IMAGE [B, H, W, C], MASK [B, H, W] with 1 = transparent).
def load_image(image):
    import numpy as np
    import torch
    from PIL import Image
    with Image.open(WORKFLOWS / image) as picture:
        rgba = np.asarray(picture.convert("RGBA"), dtype=np.float32) / 255
        has_alpha = "A" in picture.getbands()
    pixels = torch.from_numpy(rgba)
    mask = 1 - pixels[..., 3] if has_alpha else torch.zeros(pixels.shape[:2])
    return pixels[None, ..., :3].contiguous(), mask[None]


def solid_mask(value, width, height):
    import torch
    return (torch.full((1, height, width), float(value)),)


def image_stitch(image1, direction, match_image_size, spacing_width, spacing_color, image2=None):
    import torch
    if image2 is None:
        return (image1,)
    if match_image_size and image2.shape[1:3] != image1.shape[1:3]:
        image2 = torch.nn.functional.interpolate(image2.movedim(-1, 1), size=image1.shape[1:3]).movedim(1, -1)
    first, second = (image2, image1) if direction in ("left", "up") else (image1, image2)
    return (torch.cat([first, second], dim=2 if direction in ("left", "right") else 1),)


def image_batch(image1, image2):
    import torch
    if image2.shape[1:3] != image1.shape[1:3]:
        image2 = torch.nn.functional.interpolate(image2.movedim(-1, 1), size=image1.shape[1:3]).movedim(1, -1)
    return (torch.cat([image1, image2]),)


CORE_RUNNERS = {"LoadImage": load_image, "SolidMask": solid_mask, "ImageStitch": image_stitch,
                "ImageBatch": image_batch,
                "SaveImage": lambda **_: (), "PreviewImage": lambda **_: (), "PreviewAny": lambda **_: ()}
HISTORY_STEPS = 2  # the optimisation steps a shipped prompt runs here (its own: up to 3000)
# The pack's nodes that run an optimisation and return (image, ..., info).
RESULT_NODES = {"GANPriorInpaint", "GANPriorRestore"}


@pytest.fixture(scope="module")
def history_models(tmp_path_factory):
    """Every model file the shipped prompts name: the user's priors are the bundled PGGAN prior
    under their names (the format is read from the content), VGG16 has random weights."""
    import torch
    root = tmp_path_factory.mktemp("history_models")
    (root / "pggan").mkdir()
    (root / "vgg").mkdir()
    bundled = pack_module("ganprior_core").bundled_prior_path("pggan")
    for name in [*USER_MODELS["pggan"], *EARLIER_USER_MODELS["pggan"]]:
        shutil.copyfile(bundled, root / "pggan" / name)
    torch.manual_seed(0)
    features = pack_module("ganprior_core").VGG16Features()
    for name in [*USER_MODELS["vgg"], *EARLIER_USER_MODELS["vgg"]]:
        torch.save({f"features.{key}": value for key, value in features.state_dict().items()},
                   root / "vgg" / name)
    return root


def run_prompt(prompt: dict) -> dict[str, tuple]:
    """Execute an API prompt as ComfyUI does, in dependency order: each node gets its linked
    inputs' outputs and the widget values it declares (others are dropped), the pack's nodes run
    under torch.inference_mode(); optimisations run HISTORY_STEPS steps."""
    import torch
    ours = load_pack().NODE_CLASS_MAPPINGS
    outputs, pending = {}, dict(prompt)
    while pending:
        ready = [node_id for node_id, node in pending.items()
                 if all(value[0] in outputs for value in node["inputs"].values() if is_link(value))]
        assert ready, f"a cycle or a missing node among {sorted(pending)}"
        for node_id in ready:
            node = pending.pop(node_id)
            inputs = {name: outputs[value[0]][value[1]] if is_link(value) else value
                      for name, value in node["inputs"].items()}
            if node["class_type"] not in ours:
                outputs[node_id] = CORE_RUNNERS[node["class_type"]](**inputs)
                continue
            cls = ours[node["class_type"]]
            declared = cls.INPUT_TYPES()
            inputs = {name: value for name, value in inputs.items()
                      if name in declared["required"] or name in declared.get("optional", {})}
            if node["class_type"] in ("GANPriorOptimizer", "GANPriorPreset"):
                inputs["steps"] = HISTORY_STEPS
            with torch.inference_mode():
                outputs[node_id] = getattr(cls(), cls.FUNCTION)(**inputs)
            assert len(outputs[node_id]) == len(cls.RETURN_TYPES), node["class_type"]
    return outputs


@pytest.mark.parametrize("path", HISTORY_API, ids=lambda p: p.stem)
def test_an_api_prompt_the_project_shipped_runs_on_todays_nodes(path, history_models, monkeypatch, one_thread):
    import torch
    monkeypatch.setenv(pack_module("nodes.host").MODELS_DIR_ENV, str(history_models))
    prompt = json.loads(path.read_text())
    outputs = run_prompt(prompt)
    runs = [node_id for node_id, node in prompt.items() if node["class_type"] in RESULT_NODES]
    assert runs
    for node_id in runs:
        image, info = outputs[node_id][0], outputs[node_id][-1]
        source = prompt[node_id]["inputs"]["image"]
        batch, height, width, channels = outputs[source[0]][source[1]].shape
        scale = prompt[node_id]["inputs"].get("scale", 1)
        assert image.shape == (batch, height * scale, width * scale, channels)
        assert torch.isfinite(image).all() and 0 <= image.min() and image.max() <= 1
        assert info.startswith("image 1:")
    # A prompt saved before `stop` or `compile` existed runs as it ran then: exactly its steps, eager.
    for node_id, node in prompt.items():
        if node["class_type"] == "GANPriorOptimizer":
            config = outputs[node_id][0]
            assert config.stop == node["inputs"].get("stop", "fixed")
            assert "compile" in node["inputs"] or config.compile is False
        elif node["class_type"] == "GANPriorPreset":
            assert outputs[node_id][1].stop == node["inputs"].get("stop", "fixed")


if __name__ == "__main__":
    if sys.argv[1:] != ["--collect-history"]:
        sys.exit("usage: python tests/nodes/test_workflows.py --collect-history")
    for written in collect_history():
        print(written.relative_to(ROOT))
