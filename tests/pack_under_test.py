"""Import the repository the way ComfyUI imports a custom node: as a package named after its
folder, which can be anything. Nothing of ComfyUI is installed here, so the nodes' fallbacks run."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "custom_nodes_renamed_ganprior"


def load_pack():
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def pack_module(name: str):
    """A submodule of the pack, e.g. "ganprior_core.networks.pggan" (the pack's own copy of the core)."""
    load_pack()
    return importlib.import_module(f"{PACKAGE}.{name}")


def run_node(node_type: str, **inputs):
    """Call a node as ComfyUI's executor does, checking the inputs against INPUT_TYPES first."""
    import torch
    cls = load_pack().NODE_CLASS_MAPPINGS[node_type]
    declared = cls.INPUT_TYPES()
    assert set(declared["required"]) <= set(inputs), f"missing inputs of {node_type}"
    assert set(inputs) <= set(declared["required"]) | set(declared.get("optional", {}))
    with torch.inference_mode():
        outputs = getattr(cls(), cls.FUNCTION)(**inputs)
    assert len(outputs) == len(cls.RETURN_TYPES)
    return outputs


class FakeComfyUIHost:
    """ComfyUI's `folder_paths` and `server` modules as stand-ins that record what the pack
    registers: model folders (`folders`: name -> (paths, extensions), as ComfyUI's
    folder_names_and_paths) and GET routes (`routes`). `install(monkeypatch)` puts them into
    sys.modules, where the pack's `import folder_paths` / `import server` find them."""

    def __init__(self, models_dir: Path):
        import types
        from types import SimpleNamespace

        self.folders: dict[str, tuple[list[str], set[str]]] = {}
        self.routes: list[str] = []
        folder_paths = types.ModuleType("folder_paths")
        folder_paths.models_dir = str(models_dir)
        folder_paths.folder_names_and_paths = self.folders

        def add_model_folder_path(name, path, is_default=False):
            paths, _ = self.folders.setdefault(name, ([], set()))
            if path not in paths:
                paths.append(path)

        folder_paths.add_model_folder_path = add_model_folder_path
        server = types.ModuleType("server")
        routes = SimpleNamespace(get=lambda path: (lambda handler: self.routes.append(path) or handler))
        server.PromptServer = SimpleNamespace(instance=SimpleNamespace(routes=routes))
        self.modules = {"folder_paths": folder_paths, "server": server}

    def install(self, monkeypatch) -> None:
        for name, module in self.modules.items():
            monkeypatch.setitem(sys.modules, name, module)


def import_copy(root: Path, package: str, run_init: bool = True):
    """Import the pack at `root` afresh as `package` (its own copy of every module). Without
    `run_init` the top-level __init__.py is not run: the package is an empty shell, as when only
    node modules are imported. Undo with `forget(package)`."""
    if run_init:
        spec = importlib.util.spec_from_file_location(package, Path(root) / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
        return module
    import types
    shell = types.ModuleType(package)
    shell.__path__ = [str(root)]
    sys.modules[package] = shell
    return shell


def forget(package: str) -> None:
    for name in [name for name in sys.modules if name == package or name.startswith(package + ".")]:
        del sys.modules[name]
