"""The example workflows must match the nodes as they are now.

UI-format files (example_workflows/*.json, what ComfyUI's Save writes and its template browser
lists) are checked node by node against INPUT_TYPES / RETURN_TYPES: input slots, output slots,
links and every positional widget value. Their API-format copies (example_workflows/api/) must be
exactly what the UI file converts to (notes stay in the UI file). Renaming, adding or reordering an
input breaks this test. A loader that names a model the pack does not ship must say where to get it.
"""
from __future__ import annotations

import json
import math

import pytest
from pack_under_test import ROOT, load_pack, pack_module

WORKFLOWS = ROOT / "example_workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))

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
# The loader nodes and the model folder (ComfyUI/models/<folder>) their file comes from.
LOADER_FOLDERS = {"LoadPGGANPrior": "pggan", "LoadPerceptualModelVGG16": "vgg"}
BUNDLED_MODELS = {path.name for path in (ROOT / "ganprior_core" / "priors").iterdir()}


@pytest.fixture(scope="module", autouse=True)
def user_models(tmp_path_factory):
    """A models folder holding (empty) files with the names the workflows use."""
    root = tmp_path_factory.mktemp("models")
    for folder, names in USER_MODELS.items():
        (root / folder).mkdir()
        for name in names:
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


def ui_to_api(workflow: dict) -> dict:
    """What ComfyUI's frontend sends to /prompt for a UI-format workflow."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in sorted(workflow["nodes"], key=lambda n: n["id"]):
        if node["type"] in NOTE_NODES:
            continue
        input_types, _, _ = node_spec(node["type"])
        inputs = {}
        if node["type"] not in FRONTEND_ONLY_WIDGETS:
            for (name, _, _), value in zip(widget_slots(input_types), node["widgets_values"]):
                if name is not None:
                    inputs[name] = value
        for slot in node["inputs"]:
            if slot["link"] is not None:
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
    assert {"ganprior_inpaint_with_prior", "ganprior_compare_presets_reconstruction",
            "ganprior_bundled_prior_facade"} <= names
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
    names the file, its folder and the links."""
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
# top of the image (below its last widget, + 6) + 220 (the frontend's minimum image area).
# Measured in ComfyUI 0.8.0 / frontend 1.35.9: GAN-Prior Inpaint 320x200 grew to 320x398.
IMAGE_TOP_MARGIN, IMAGE_MIN_HEIGHT = 6, 220
PREVIEW_NODES = {"GANPriorInpaint"}


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
        height = max(height, content + IMAGE_TOP_MARGIN + IMAGE_MIN_HEIGHT)
    return height


def drawn_top(node: dict) -> float:
    ours = load_pack().NODE_CLASS_MAPPINGS
    return node["pos"][1] - TITLE_HEIGHT - (BADGE_HEIGHT if node["type"] in ours else 0)


def test_the_drawn_height_model_matches_what_the_frontend_drew():
    """The numbers above against the real frontend's: GAN-Prior Inpaint after a run."""
    assert drawn_height({"type": "GANPriorInpaint", "size": [320, 200]}) == 398
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
