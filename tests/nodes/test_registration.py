"""What the pack registers and promises (nodes/__init__.py, nodes/registration.py, pyproject.toml):
every node with labels and tooltips, the IDs and inputs saved workflows use, inputs added later
optional, model folders and the example-workflow route registered once, and the Registry's metadata."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from tests.nodes.node_runs import (
    STEPS,
)
from tests.pack_under_test import ROOT, FakeComfyUIHost, forget, import_copy, load_pack, pack_module, run_node

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pack_registers_every_node_with_labels_and_tooltips():
    pack = load_pack()
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS.values()) == {
        "Load GAN Prior", "Sample GAN Prior", "Build Multi-Latent Generator",
        "GAN-Prior Optimizer", "GAN-Prior Preset", "Load Perceptual Model (VGG16)",
        "GAN-Prior Inpaint", "GAN-Prior Metrics", "GAN-Prior Restore"}
    assert pack.NODE_CLASS_MAPPINGS.keys() == pack.NODE_DISPLAY_NAME_MAPPINGS.keys()
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        assert callable(getattr(cls(), cls.FUNCTION)) and cls.CATEGORY and cls.DESCRIPTION
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
        for section in cls.INPUT_TYPES().values():
            for name, declaration in section.items():
                if not isinstance(declaration[0], str) or declaration[0] in {"INT", "FLOAT", "BOOLEAN"}:
                    assert declaration[1].get("tooltip"), f"{cls.__name__}.{name} has no tooltip"
    host = pack_module("nodes.host")
    assert host.folder_paths is None and host.model_management is None  # the fallbacks ran


def test_every_input_and_every_output_of_every_node_has_a_tooltip():
    """Sockets too (prior, generator, images, optimizer...), not only widgets: the frontend shows
    an input's `tooltip` and OUTPUT_TOOLTIPS[i] on hover."""
    for node_type, cls in load_pack().NODE_CLASS_MAPPINGS.items():
        declared = cls.INPUT_TYPES()
        assert set(declared) <= {"required", "optional"}, node_type
        for section in ("required", "optional"):
            for name, declaration in declared.get(section, {}).items():
                options = declaration[1] if len(declaration) > 1 else {}
                tooltip = options.get("tooltip")
                assert isinstance(tooltip, str) and tooltip.strip(), f"{node_type}.{name} has no tooltip"
        tooltips = getattr(cls, "OUTPUT_TOOLTIPS", None)
        assert tooltips is not None and len(tooltips) == len(cls.RETURN_TYPES), \
            f"{node_type} needs one OUTPUT_TOOLTIPS entry per output"
        for output, tooltip in zip(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES), tooltips):
            assert isinstance(tooltip, str) and tooltip.strip(), f"{node_type} output {output} has no tooltip"


def test_renamed_nodes_keep_the_ids_types_and_input_names_saved_workflows_use():
    """The display names say GAN, not PGGAN (both families load); what saved workflows and API
    prompts name stays: node IDs, socket types, input names and the models/pggan folder."""
    pack = load_pack()
    assert list(pack.NODE_CLASS_MAPPINGS) == [
        "LoadPGGANPrior", "SamplePGGANPrior", "BuildMultiLatentGenerator", "GANPriorOptimizer",
        "GANPriorPreset", "LoadPerceptualModelVGG16", "GANPriorInpaint", "GANPriorMetrics",
        "GANPriorRestore"]
    load, sample = pack.NODE_CLASS_MAPPINGS["LoadPGGANPrior"], pack.NODE_CLASS_MAPPINGS["SamplePGGANPrior"]
    assert (load.__name__, sample.__name__) == ("LoadGANPrior", "SampleGANPrior")
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["LoadPGGANPrior"] == "Load GAN Prior"
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["SamplePGGANPrior"] == "Sample GAN Prior"
    assert (load.RETURN_TYPES, load.RETURN_NAMES) == (("PGGAN_PRIOR", "STRING"), ("prior", "info"))
    assert list(load.INPUT_TYPES()["required"]) == ["prior_name"]
    assert list(sample.INPUT_TYPES()["required"]) == ["prior", "count", "seed"]
    for node_type in ("SamplePGGANPrior", "BuildMultiLatentGenerator", "GANPriorPreset"):
        assert pack.NODE_CLASS_MAPPINGS[node_type].INPUT_TYPES()["required"]["prior"][0] == "PGGAN_PRIOR"
    assert "pggan" in pack_module("nodes.registration").MODEL_FOLDERS
    model_nodes = pack_module("nodes.model_nodes")  # the classes' old names still import
    assert (model_nodes.LoadPGGANPrior, model_nodes.SamplePGGANPrior) == (load, sample)


# Every node's inputs when it first shipped (6e76f41, nodes/ in git history).
FIRST_RELEASE_INPUTS = {
    "LoadPGGANPrior": {"prior_name"},
    "SamplePGGANPrior": {"prior", "count", "seed"},
    "BuildMultiLatentGenerator": {"prior", "num_codes", "split_layer", "use_alpha", "use_beta", "finetune"},
    "GANPriorOptimizer": {"steps", "lr_latent", "lr_alpha", "lr_beta", "lr_generator", "schedule",
                          "mse_weight", "perceptual_weight", "precision", "preview_every"},
    "GANPriorPreset": {"prior", "preset", "steps"},
    "LoadPerceptualModelVGG16": {"vgg_name"},
    "GANPriorInpaint": {"image", "mask", "generator", "seed", "fit", "optimizer", "perceptual_model"},
    "GANPriorMetrics": {"image", "reference", "mask"},
    "GANPriorRestore": {"image", "generator", "seed", "fit"},  # issue 33
}


def test_inputs_added_after_a_node_shipped_are_optional_with_the_old_behaviour(prior):
    """A prompt saved before an input existed lacks it; ComfyUI refuses a missing required input,
    so every input added later is optional, and leaving it out does what the node did before:
    the Optimizer compiles nothing (compile came later) and both the Optimizer and the Preset run
    exactly `steps` (stop came later; auto-stop did not exist)."""
    pack = load_pack()
    assert set(FIRST_RELEASE_INPUTS) == set(pack.NODE_CLASS_MAPPINGS)
    for node_type, cls in pack.NODE_CLASS_MAPPINGS.items():
        declared = cls.INPUT_TYPES()
        assert set(declared["required"]) <= FIRST_RELEASE_INPUTS[node_type], node_type
        assert FIRST_RELEASE_INPUTS[node_type] <= set(declared["required"]) | set(declared.get("optional", {}))
    first = dict(steps=STEPS, lr_latent=0.05, lr_alpha=0.01, lr_beta=0.01, lr_generator=1e-3,
                 schedule="constant", mse_weight=1.0, perceptual_weight=0.0, precision="fp32", preview_every=2)
    (optimizer,) = run_node("GANPriorOptimizer", **first)
    assert (optimizer.compile, optimizer.stop, optimizer.steps) == (False, "fixed", STEPS)
    _, optimizer = run_node("GANPriorPreset", prior=prior, preset="paper", steps=0)
    assert optimizer.stop == "fixed"
    # The widgets a new workflow gets still show the library's defaults.
    options = pack.NODE_CLASS_MAPPINGS["GANPriorOptimizer"].INPUT_TYPES()["optional"]
    config_class = pack_module("ganprior_core.optimize").OptimizerConfig
    assert (options["compile"][1]["default"], options["stop"][1]["default"]) == (
        config_class().compile, config_class().stop)


def test_the_nodes_step_limits_are_the_cores():
    from ganprior_core.method.config import MAX_STEPS
    source = (ROOT / "nodes" / "model_nodes.py").read_text()
    limits = re.findall(r'"steps": \("INT", \{[^}]*"max": (\d+)', source)
    assert limits and all(int(limit) == MAX_STEPS for limit in limits)


def test_model_folders_join_comfyui_folder_paths_keeping_the_users_own(monkeypatch, tmp_path):
    table = {"pggan": (["/from/extra_model_paths.yaml"], set())}  # the user's yaml came first

    def add_model_folder_path(name, path, is_default=False):
        paths, extensions = table.setdefault(name, ([], set()))
        if path not in paths:
            paths.append(path)

    fake = SimpleNamespace(models_dir=str(tmp_path), folder_names_and_paths=table,
                           add_model_folder_path=add_model_folder_path)
    host = pack_module("nodes.host")
    monkeypatch.setattr(host, "folder_paths", fake)
    monkeypatch.setattr(host, "_registered", {})
    bundled = pack_module("ganprior_core.priors").PRIORS_DIR
    host.register_model_folder("pggan", (".pth", ".safetensors"), bundled)
    host.register_model_folder("vgg", (".pth",))
    assert table["pggan"] == (["/from/extra_model_paths.yaml", str(tmp_path / "pggan"), str(bundled)],
                              {".pth", ".safetensors"})
    assert table["vgg"] == ([str(tmp_path / "vgg")], {".pth"})


def test_example_workflows_are_served_under_a_folder_name_with_a_space():
    """ComfyUI's static template route breaks for a folder name that URLs quote; the pack then
    adds a GET route for exactly that name, serving only the workflow folder's own files."""
    import re
    host = pack_module("nodes.host")
    registered = []

    class Routes:
        def get(self, path):
            return lambda handler: registered.append((path, handler)) or handler

    server = SimpleNamespace(PromptServer=SimpleNamespace(instance=SimpleNamespace(routes=Routes())))
    assert host.serve_example_workflows(server, "ganprior") is None  # the host's route works
    assert host.serve_example_workflows(server, "gan{prior}") is None  # not a route name
    assert registered == []
    path = host.serve_example_workflows(server, "GAN prior (copy)")
    assert registered and registered[0][0] == path
    pattern = re.fullmatch(r"/workflow_templates/\{pack:(.*)\}/\{filename\}", path).group(1)
    assert re.fullmatch(pattern, "GAN prior (copy)") and not re.fullmatch(pattern, "GAN prior")
    assert host.serve_example_workflows(None, "GAN prior") is None  # no ComfyUI server here

    assert host.template_file("Inpaint a facade (PGGAN).json").is_file()
    assert host.template_file("Inpaint a facade (PGGAN).jpg").is_file()
    for name in ("../pyproject.toml", "api/Inpaint a facade (PGGAN).json", ".hidden.json",
                 "missing.json", "ganprior_facade.txt", ""):
        assert host.template_file(name) is None, name


def test_importing_the_node_modules_registers_nothing_and_the_pack_registers_once(monkeypatch, tmp_path):
    """Importing any module of nodes/ (host.py, model_nodes.py, ...) registers nothing with
    ComfyUI; the pack's __init__ registers the model folders pggan and vgg and, for a folder name
    that URLs quote, the example-workflow route, and only once."""
    import importlib
    import sys

    fake = FakeComfyUIHost(tmp_path / "models")
    fake.install(monkeypatch)
    link = tmp_path / "GAN prior (copy)"  # a folder name the pack serves its workflows under itself
    link.symlink_to(ROOT, target_is_directory=True)
    package = "custom_nodes_registration_check"
    modules = ["nodes", *sorted(f"nodes.{path.stem}" for path in (ROOT / "nodes").glob("*.py")
                                if path.stem != "__init__")]
    assert {"nodes.host", "nodes.model_nodes", "nodes.inputs", "nodes.registration"} <= set(modules)
    try:
        import_copy(link, package, run_init=False)
        for module in modules:
            importlib.import_module(f"{package}.{module}")
        assert fake.folders == {} and fake.routes == []
        assert sys.modules[f"{package}.nodes.host"].folder_paths is fake.modules["folder_paths"]
    finally:
        forget(package)
    try:
        import_copy(link, package)
        core = importlib.import_module(f"{package}.ganprior_core")
        assert fake.folders == {
            "pggan": ([str(tmp_path / "models" / "pggan"), str(core.PRIORS_DIR)], set(core.CHECKPOINT_EXTENSIONS)),
            "vgg": ([str(tmp_path / "models" / "vgg")], set(core.VGG_EXTENSIONS))}
        assert len(fake.routes) == 1 and "GAN\\ prior\\ \\(copy\\)" in fake.routes[0]
        registration = importlib.import_module(f"{package}.nodes.registration")
        assert registration.register() is False  # done once, by the pack's __init__
        assert len(fake.routes) == 1 and len(fake.folders["pggan"][0]) == 2
    finally:
        forget(package)


def test_registry_metadata_names_the_repository_an_icon_and_a_license():
    import tomllib
    from PIL import Image
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    repository = project["project"]["urls"]["Repository"]
    assert repository.startswith("https://github.com/")
    icon_url = project["tool"]["comfy"]["Icon"]
    owner_repo = repository.removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{owner_repo}/main/"
    assert icon_url.startswith(prefix)
    with Image.open(ROOT / icon_url.removeprefix(prefix)) as icon:  # the file the URL names
        assert icon.width == icon.height <= 400 and icon.format == "PNG"
    license_text = (ROOT / "LICENSE").read_text()
    assert project["project"]["license"] == {"text": "MIT"} and license_text.startswith("MIT License")
    assert "the ganprior authors" in license_text


def test_registry_metadata_names_the_comfyui_it_needs_the_os_and_the_accelerators():
    """[tool.comfy] requires-comfyui: a lower bound that admits the ComfyUI the pack was tested on
    (0.8.0) and none without a core node the example workflows use (ImageStitch: 0.3.40).
    Classifiers: the OS and the accelerators, from the Registry's lists. The Icon fits the
    Registry's limit of 800x400 pixels."""
    import tomllib
    from packaging.specifiers import SpecifierSet
    from PIL import Image
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    required = SpecifierSet(project["tool"]["comfy"]["requires-comfyui"])
    assert "0.8.0" in required and "0.3.40" in required and "0.3.39" not in required
    classifiers = project["project"]["classifiers"]
    registry_os = {"Operating System :: OS Independent", "Operating System :: Microsoft :: Windows",
                   "Operating System :: POSIX :: Linux", "Operating System :: MacOS"}
    registry_accelerators = {"Environment :: GPU :: NVIDIA CUDA", "Environment :: GPU :: AMD ROCm",
                             "Environment :: GPU :: Intel Arc", "Environment :: NPU :: Huawei Ascend",
                             "Environment :: GPU :: Apple Metal"}
    assert "Operating System :: OS Independent" in classifiers
    assert "Environment :: GPU :: NVIDIA CUDA" in classifiers
    assert set(classifiers) <= registry_os | registry_accelerators
    icon_url = project["tool"]["comfy"]["Icon"]
    with Image.open(ROOT / icon_url.rsplit("/main/", 1)[1]) as icon:
        assert icon.width <= 800 and icon.height <= 400
