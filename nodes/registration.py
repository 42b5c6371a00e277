"""What the pack adds to ComfyUI besides its nodes, done once by the pack's __init__ (`register`):
the model folders `models/pggan` (with the bundled priors) and `models/vgg`, created where
missing, the example workflows' pictures copied into ComfyUI's input folder where missing, and,
where the pack's folder name needs it, the route serving example_workflows/ (nodes.host).

Importing any module of nodes/ registers nothing; only `register` does.
"""
from __future__ import annotations

from ..ganprior_core import CHECKPOINT_EXTENSIONS, PRIORS_DIR, VGG_EXTENSIONS
from . import host

# ComfyUI/models/<name> -> (file extensions listed, folders always searched too). The names are
# also the keys of extra_model_paths.yaml: never rename them.
MODEL_FOLDERS = {"pggan": (CHECKPOINT_EXTENSIONS, (PRIORS_DIR,)),
                 "vgg": (VGG_EXTENSIONS, ())}

_done = False


def register(server_module=None, folder_name: str | None = None) -> bool:
    """Register the model folders (created where missing), the example workflows' pictures and
    the example-workflow route with ComfyUI (outside ComfyUI:
    the folders for the nodes' own fallback lookup). Only the first call does anything; True if
    it was this one. `server_module` and `folder_name` are for tests (see
    host.serve_example_workflows)."""
    global _done
    if _done:
        return False
    for name, (extensions, bundled) in MODEL_FOLDERS.items():
        host.register_model_folder(name, extensions, *bundled)
    host.install_example_inputs()
    host.serve_example_workflows(server_module, folder_name)
    _done = True
    return True
