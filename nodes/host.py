"""What the nodes need from ComfyUI: model folders, device, progress bar, cancel.

ComfyUI is optional: without it (tests, scripts) models are looked up in
$GANPRIOR_MODELS_DIR/<folder> (default: the pack's own `models/` folder), the device comes from
torch, and there is no progress bar and nothing to cancel.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

try:
    import folder_paths
except ImportError:
    folder_paths = None
try:
    import comfy.model_management as model_management
    import comfy.utils as comfy_utils
except ImportError:
    model_management = comfy_utils = None

MODELS_DIR_ENV = "GANPRIOR_MODELS_DIR"
PACK_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
PREVIEW_MAX_SIZE = 512  # what ComfyUI's own previews use by default

_registered: dict[str, tuple[tuple[str, ...], list[Path]]] = {}  # name -> (extensions, extra dirs)


def register_model_folder(name: str, extensions: tuple[str, ...], *extra_dirs: Path) -> None:
    """Make `ComfyUI/models/<name>` (and `extra_dirs`, e.g. bundled models) a model folder.

    Folders the user adds under the same name in extra_model_paths.yaml are kept.
    """
    _registered[name] = (extensions, list(extra_dirs))
    if folder_paths is None:
        return
    folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
    for folder in extra_dirs:
        folder_paths.add_model_folder_path(name, str(folder))
    paths, known_extensions = folder_paths.folder_names_and_paths[name]
    folder_paths.folder_names_and_paths[name] = (paths, set(known_extensions) | set(extensions))


def model_names(name: str) -> list[str]:
    """File names for a model combo, relative to their folder."""
    if folder_paths is not None:
        return folder_paths.get_filename_list(name)
    extensions = _registered[name][0]
    names = set()
    for folder in _fallback_dirs(name):
        if folder.is_dir():
            names.update(str(path.relative_to(folder)) for path in folder.rglob("*")
                         if path.is_file() and path.suffix.lower() in extensions)
    return sorted(names)


def model_path(name: str, filename: str) -> str:
    if folder_paths is not None:
        return folder_paths.get_full_path_or_raise(name, filename)
    for folder in _fallback_dirs(name):
        if (folder / filename).is_file():
            return str(folder / filename)
    raise FileNotFoundError(f"model {filename!r} not found in the {name!r} folders "
                            f"{', '.join(str(f) for f in _fallback_dirs(name))}")


def _fallback_dirs(name: str) -> list[Path]:
    root = Path(os.environ.get(MODELS_DIR_ENV) or PACK_MODELS_DIR)
    return [root / name, *_registered[name][1]]


def torch_device() -> torch.device:
    if model_management is not None:
        return model_management.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def throw_if_interrupted() -> None:
    """Raises ComfyUI's InterruptProcessingException once the user pressed Cancel."""
    if model_management is not None:
        model_management.throw_exception_if_processing_interrupted()


class ProgressBar:
    """ComfyUI's progress bar with a live preview; does nothing outside ComfyUI."""

    def __init__(self, total: int) -> None:
        self._bar = comfy_utils.ProgressBar(total) if comfy_utils is not None else None

    def update(self, value: int, preview=None) -> None:
        """`preview` is a PIL image or None."""
        if self._bar is not None:
            self._bar.update_absolute(value, preview=None if preview is None
                                      else ("JPEG", preview, PREVIEW_MAX_SIZE))
