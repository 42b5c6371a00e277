"""What the nodes need from ComfyUI: model folders, device, memory, progress bar, cancel.

ComfyUI is optional: without it (tests, scripts) models are looked up in
$GANPRIOR_MODELS_DIR/<folder> (default: the pack's own `models/` folder), the device comes from
torch, nothing needs to be unloaded to make room, and there is no progress bar and nothing to
cancel.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
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

log = logging.getLogger(__name__)

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
    own = os.path.join(folder_paths.models_dir, name)
    folder_paths.add_model_folder_path(name, own)
    create_folder(own)  # so that a user finds where the files go (and the frontend lists it)
    for folder in extra_dirs:
        folder_paths.add_model_folder_path(name, str(folder))
    paths, known_extensions = folder_paths.folder_names_and_paths[name]
    folder_paths.folder_names_and_paths[name] = (paths, set(known_extensions) | set(extensions))


def create_folder(path: str) -> bool:
    """Create `path` (and its parents) if it is missing; True if it exists afterwards. A folder
    that cannot be made (a read-only install) is logged, never an error."""
    try:
        os.makedirs(path, exist_ok=True)
        return True
    except OSError as error:
        log.warning("could not create the model folder %s: %s", path, error)
        return False


# The pictures the example workflows' Load Image nodes name; they ship in example_workflows/.
EXAMPLE_INPUTS = ("ganprior_facade_hole.png", "ganprior_facade.png", "ganprior_facade_16x16.png",
                  "ganprior_facade_gray.png", "ganprior_facade2_hole.png", "ganprior_facade2.png")


def install_example_inputs(source: Path | None = None) -> list[str]:
    """Copy the example workflows' pictures into ComfyUI's input folder where they are missing
    (never over a file of the same name), so that the shipped workflows run as installed. The
    copied names; nothing outside ComfyUI."""
    getter = getattr(folder_paths, "get_input_directory", None)
    if getter is None:
        return []
    source = source or Path(__file__).resolve().parent.parent / "example_workflows"
    copied = []
    try:
        target = Path(getter())
        target.mkdir(parents=True, exist_ok=True)
        for name in EXAMPLE_INPUTS:
            if not (target / name).exists() and (source / name).is_file():
                shutil.copyfile(source / name, target / name)
                copied.append(name)
    except OSError as error:
        log.warning("could not copy the example workflows' pictures into ComfyUI's input folder "
                    "(%s); copy %s from %s yourself", error, ", ".join(EXAMPLE_INPUTS), source)
    if copied:
        log.info("copied %s into %s for the example workflows", ", ".join(copied), target)
    return copied


def model_names(name: str) -> list[str]:
    """File names for a model combo, relative to their folder.

    Outside ComfyUI subfolders are searched too, symbolic links to folders included (as
    ComfyUI's own listing follows them); a link that leads back into a folder it is in (a
    loop) is skipped with a warning naming it.
    """
    if folder_paths is not None:
        return folder_paths.get_filename_list(name)
    extensions = _registration(name)[0]
    names = set()
    for folder in _fallback_dirs(name):
        if folder.is_dir():
            names.update(str(relative) for relative in _files_below(folder)
                         if relative.suffix.lower() in extensions)
    return sorted(names)


def model_identity(name: str, filename: str) -> str:
    """What a node's IS_CHANGED returns for a model file: the resolved file's path, size,
    modification time (ns) and inode. A file retrained or downloaded again under the same name
    changes it, so ComfyUI runs the loader again instead of reusing the old weights. A name that
    does not resolve gives a fixed text: the loader then reports why."""
    try:
        path = os.path.realpath(model_path(name, filename))
        stat = os.stat(path)
    except (OSError, ValueError) as error:
        return f"unavailable: {type(error).__name__}"
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_dev}:{stat.st_ino}"


_warned_loops: set[str] = set()


def _files_below(root: Path) -> list[Path]:
    """Every file below `root` (relative to it), following symbolic links to folders; a link
    to a folder that is already on the way down from `root` is a loop: skipped, and named in a
    warning (once per link)."""
    found: list[Path] = []

    def visit(folder: Path, relative: Path, ancestors: frozenset) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            return  # unreadable: nothing to list, as ComfyUI's listing does
        for entry in entries:
            try:
                if entry.is_dir():  # follows a symbolic link
                    key = _folder_key(entry.path)
                    if key in ancestors:
                        if entry.path not in _warned_loops:
                            _warned_loops.add(entry.path)
                            log.warning("model folder listing: %s links back to %s, a folder it is "
                                        "in; skipped (a loop)", entry.path, os.path.realpath(entry.path))
                        continue
                    visit(Path(entry.path), relative / entry.name, ancestors | {key})
                elif entry.is_file():
                    found.append(relative / entry.name)
            except OSError:
                continue  # a broken link or a file gone meanwhile
    try:
        visit(root, Path(), frozenset({_folder_key(root)}))
    except OSError:
        pass
    return found


def _folder_key(path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def model_path(name: str, filename: str) -> str:
    """The file `filename` (relative, as model_names lists it) of the model folder `name`.

    Outside ComfyUI a name that would leave its folder (an absolute path, `..` steps) is refused
    with a ValueError: a workflow's widget value must not read an arbitrary file. (ComfyUI's own
    folder_paths.get_full_path keeps such names inside the folder too.) Symbolic links inside the
    folder are followed, as ComfyUI does.
    """
    if folder_paths is not None:
        return folder_paths.get_full_path_or_raise(name, filename)
    check_model_name(filename)
    for folder in _fallback_dirs(name):
        if (folder / filename).is_file():
            return str(folder / filename)
    raise FileNotFoundError(f"model {filename!r} not found in the {name!r} folders "
                            f"{', '.join(str(f) for f in _fallback_dirs(name))}")


# Where to get a file a loader names, by folder, for the message of a file that is missing.
WHERE_TO_GET = {
    "pggan": "pretrained PGGAN and StyleGAN2 priors and where to get them: docs/pretrained_priors.md "
             "in the pack's folder",
    "vgg": "torchvision's VGG16 weights: https://download.pytorch.org/models/vgg16-397923af.pth",
}


def missing_model_message(name: str, filename) -> str | None:
    """None if `filename` is a file of the model folder `name`; else one instruction for the
    person running the workflow: which file to put into which folder (its path on this machine),
    where to get it, and what the folder holds now. The loaders' VALIDATE_INPUTS return it, so a
    workflow naming a file this install lacks stops before it runs, with this on the node."""
    try:
        model_path(name, filename)
        return None
    except (OSError, ValueError) as error:
        if isinstance(error, ValueError):
            return str(error)
    folders = (folder_paths.get_folder_paths(name) if folder_paths is not None
               else [str(folder) for folder in _fallback_dirs(name)])
    listed = model_names(name)
    choices = (f"; or choose one of the {len(listed)} files there: {', '.join(listed[:6])}"
               f"{', ...' if len(listed) > 6 else ''}") if listed else ""
    where = f" ({WHERE_TO_GET[name]})" if name in WHERE_TO_GET else ""
    return (f"{filename!r} is not in models/{name}: put the file into {folders[0] if folders else name}"
            f"{where}, then press R to refresh the lists{choices}")


def check_model_name(filename: str) -> None:
    """Refuse a model name that does not stay inside its folder once normalised: an absolute
    path (also a Windows drive or a leading backslash) or one whose `..` steps climb out."""
    if not isinstance(filename, str) or not filename or "\0" in filename:
        raise ValueError(f"model name {filename!r} is not a file name")
    posix = filename.replace("\\", "/")  # a backslash is a separator on Windows: treat it so
    normalised = os.path.normpath(posix)
    if (posix.startswith("/") or Path(filename).drive or (len(posix) > 1 and posix[1] == ":")
            or normalised == ".." or normalised.startswith("../") or normalised == "."):
        raise ValueError(f"model name {filename!r} points outside its model folder: give a file "
                         "name relative to the folder, as the node's list shows it")


def _fallback_dirs(name: str) -> list[Path]:
    root = Path(os.environ.get(MODELS_DIR_ENV) or PACK_MODELS_DIR)
    return [root / name, *_registration(name)[1]]


def _registration(name: str) -> tuple[tuple[str, ...], list[Path]]:
    try:
        return _registered[name]
    except KeyError:
        raise LookupError(f"model folder {name!r} is not registered: the pack's __init__ registers "
                          "its folders (nodes.registration.register)") from None


def torch_device() -> torch.device:
    if model_management is not None:
        return model_management.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def module_bytes(module: torch.nn.Module | None) -> int:
    """Bytes of a module's parameters and buffers (what comfy.model_management.module_size counts)."""
    if module is None:
        return 0
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def make_room(memory_required: int, device: torch.device) -> None:
    """Before copying models to `device`: ask ComfyUI to unload what it keeps there (other packs'
    models, its own checkpoints) until `memory_required` bytes are free.

    Nothing to do outside ComfyUI, or on the CPU (unloading to RAM frees no RAM, and would make
    ComfyUI reload its models for the next run).
    """
    if model_management is None or torch.device(device).type == "cpu":
        return
    model_management.free_memory(int(memory_required), torch.device(device))


def release_memory() -> None:
    """After a run: hand the device memory the run's private copies held back to ComfyUI
    (`soft_empty_cache` empties torch's cache where there is one; a no-op on the CPU)."""
    if model_management is not None:
        model_management.soft_empty_cache()


def throw_if_interrupted() -> None:
    """Raises ComfyUI's InterruptProcessingException once the user pressed Cancel."""
    if model_management is not None:
        model_management.throw_exception_if_processing_interrupted()


def now() -> float:
    """The progress bar's clock (seconds); tests put a fake one here."""
    return time.monotonic()


class ProgressBar:
    """ComfyUI's progress bar with a live preview and a line of text on the node; does nothing
    outside ComfyUI.

    Throttled: each update is a websocket message the browser redraws the canvas for, and one
    per step (~30 per second on a small prior) made a run in the UI twice as slow as headless on
    two cores. An update is sent only when MIN_INTERVAL seconds passed since the last one sent,
    except that these are always sent: the first, one carrying a preview, the bar's end
    (value >= total), and `flush()`, which sends the latest value if it was held back (the node
    calls it after each image). So the bar ends exact and no preview is lost.

    `total` may change from one update to the next (an auto-stopped run's expected length is
    revised as it goes); the text is sent with an update when it changed (ComfyUI's progress
    text, shown on the node by its frontend), so it is throttled with the bar.
    """

    MIN_INTERVAL = 0.1  # seconds: at most 10 updates per second, besides previews and the end

    def __init__(self, total: int, clock=None) -> None:
        self._bar = comfy_utils.ProgressBar(total) if comfy_utils is not None else None
        self.total, self._clock = total, clock or now
        self._sent_total = total  # the total ComfyUI's bar has
        self._last_time: float | None = None  # when the last update was sent
        self._held: tuple | None = None  # (value, total, text) not sent yet
        self._text: str | None = None  # the text last sent

    def update(self, value: int, preview=None, total: int | None = None, text: str | None = None,
               preview_format: str = "JPEG") -> None:
        """`preview` is a PIL image or None; `total`: the bar's new total (None: unchanged);
        `text`: what the node shows under its widgets (None: unchanged); `preview_format`:
        "JPEG" (live previews) or "PNG" (a returned image, shown exactly)."""
        if self._bar is None:
            return
        if total is not None:
            self.total = max(1, int(total))
        now = self._clock()
        if (preview is None and value < self.total and self._last_time is not None
                and now - self._last_time < self.MIN_INTERVAL):
            self._held = (value, self.total, text if text is not None else
                          (self._held[2] if self._held is not None else None))
            return
        self._send(value, self.total, preview, text, now, preview_format)

    def flush(self) -> None:
        """Send the latest value if the throttle held it back."""
        if self._bar is not None and self._held is not None:
            value, total, text = self._held
            self._send(value, total, None, text, self._clock())

    def _send(self, value: int, total: int, preview, text: str | None, now: float,
              preview_format: str = "JPEG") -> None:
        self._held, self._last_time = None, now
        # ComfyUI's update_absolute(value, total=None, preview=None): total only when it changed.
        changed = {} if total == self._sent_total else {"total": total}
        self._sent_total = total
        self._bar.update_absolute(min(value, total), **changed, preview=None if preview is None
                                  else (preview_format, preview, PREVIEW_MAX_SIZE))
        if text is not None and text != self._text:
            self._text = text
            send_progress_text(text)


def executing_node_id() -> str | None:
    """The id of the node ComfyUI is running now (what its own progress bar reports to), or None."""
    try:
        from comfy_execution.utils import get_executing_context
        context = get_executing_context()
        if context is not None and context.node_id is not None:
            return str(context.node_id)
    except ImportError:
        pass
    server = _prompt_server()
    node_id = getattr(server, "last_node_id", None)
    return None if node_id is None else str(node_id)


def _prompt_server():
    if comfy_utils is None:  # not inside ComfyUI: a module named `server` would be someone else's
        return None
    try:
        import server
    except ImportError:
        return None
    return getattr(getattr(server, "PromptServer", None), "instance", None)


def send_progress_text(text: str) -> None:
    """Show `text` on the running node (ComfyUI's progress text, 0.3.4x on); nothing where the
    host has no such message. Sent to the client that queued the run, as ComfyUI's own progress
    is: sent to all, other browsers showed it on whatever node of theirs has the same id."""
    server = _prompt_server()
    send = getattr(server, "send_progress_text", None)
    node_id = executing_node_id()
    if send is None or node_id is None:
        return
    try:
        send(text, node_id, getattr(server, "client_id", None))
    except Exception as error:  # a display detail must never fail a run
        log.debug("progress text not sent: %s", error)


def temp_folder() -> str | None:
    """ComfyUI's temp folder (what PreviewImage writes to, emptied at start), or None outside it."""
    getter = getattr(folder_paths, "get_temp_directory", None)
    return None if getter is None else getter()


# --- Example workflows under a folder name that URLs quote ---------------------------------
# ComfyUI serves each pack's example_workflows/ with a static route named after the pack's
# folder, /api/workflow_templates/<folder>/. With a space (or another character that URLs quote)
# in the folder name the route is stored quoted while requests are matched decoded: the template
# browser lists the workflows but their thumbnails and JSON answer 404. The pack then serves its
# own folder under the decoded name (one GET route matching only that name).

WORKFLOWS_FOLDER = "example_workflows"
TEMPLATE_SUFFIXES = (".json", ".jpg", ".jpeg", ".png", ".webp")


def pack_folder_name() -> str:
    """The pack's folder name as ComfyUI sees it (the link's name, not its target's)."""
    return os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def needs_own_template_route(folder_name: str) -> bool:
    """True if URL-quoting changes the name (aiohttp quotes the static prefix; yarl's rule)."""
    from urllib.parse import quote
    return quote(folder_name, safe="!$&'()*+,;=:@-._~") != folder_name


def template_file(filename: str, folder: Path | None = None) -> Path | None:
    """The file `filename` of example_workflows/ if it is one the template browser may fetch."""
    folder = folder or Path(__file__).resolve().parent.parent / WORKFLOWS_FOLDER
    if (not filename or "/" in filename or "\\" in filename or filename.startswith(".")
            or not filename.lower().endswith(TEMPLATE_SUFFIXES)):
        return None
    path = folder / filename
    return path if path.is_file() else None


def serve_example_workflows(server_module=None, folder_name: str | None = None) -> str | None:
    """Register the route described above when the folder name needs it; the route's path, or
    None when there is nothing to do (a plain name, or no ComfyUI server). Called once, by
    nodes.registration.register (the pack's __init__)."""
    folder_name = folder_name or pack_folder_name()
    if not needs_own_template_route(folder_name) or any(c in folder_name for c in "{}/"):
        return None
    if server_module is None:
        try:
            import server as server_module
        except ImportError:
            return None
    instance = getattr(getattr(server_module, "PromptServer", None), "instance", None)
    if instance is None:
        return None
    import re

    # Every character escaped: aiohttp takes the part after ':' as a regular expression, and
    # matches it against the decoded path. ComfyUI also adds the /api/ copy of the route.
    path = "/workflow_templates/{pack:" + re.escape(folder_name) + "}/{filename}"

    async def workflow_template(request):
        from aiohttp import web
        found = template_file(request.match_info["filename"])
        if found is None:
            raise web.HTTPNotFound()
        return web.FileResponse(found)

    instance.routes.get(path)(workflow_template)
    return path
