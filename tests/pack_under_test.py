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
