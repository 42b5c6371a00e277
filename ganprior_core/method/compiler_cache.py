"""torch's compiler cache folder (TORCHINDUCTOR_CACHE_DIR), checked and, where it cannot serve,
replaced before anything needs it.

Two things break on a bad folder. Importing the compiler stack (torch.optim.Adam does, even with
compiling off) makes torch._dynamo create the folder, and a file, an unwritable folder or a path
under /proc there raises. Compiling on a CPU writes and builds C++ under the folder, and
inductor's build command breaks on a space in its path ("input file is the same as output
file"). Both are repaired the same way: one list of fallback folders, one check, and one note in
the run's notes. The replacement holds for the rest of the process (the variable is set), so
every later run that uses it gets the same note again: a run's notes say what that run ran with.
"""
from __future__ import annotations

import getpass
import os
import re
import tempfile

CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"

_replacements: dict[str, str] = {}  # folder this process put in CACHE_VARIABLE -> the note why


def prepare_cache_dir(notes: list[str], for_cpu_build: bool = False) -> bool:
    """Make CACHE_VARIABLE name a folder torch's compiler can use, adding to `notes` one note
    when it names a replacement. `for_cpu_build`: the folder will hold inductor's C++ builds, so
    it must have no space in its path. Call it before anything imports the compiler stack.
    False when no usable folder was found (with a note; compiling is then not tried)."""
    given = os.environ.get(CACHE_VARIABLE)
    current = given or _default_cache_dir()
    problem = _folder_problem(current, for_cpu_build)
    if problem is None:
        if current in _replacements:
            _add_once(notes, _replacements[current])
        return True
    what = f"{CACHE_VARIABLE}={given!r}" if given else f"torch's default cache {current!r}"
    for candidate in _fallback_cache_dirs():
        if candidate != current and _folder_problem(candidate, for_cpu_build=True) is None:
            os.environ[CACHE_VARIABLE] = candidate
            _replacements[candidate] = (f"{what} cannot hold torch.compile's cache ({problem}); "
                                        f"using {candidate!r} instead")
            _add_once(notes, _replacements[candidate])
            return True
    _add_once(notes, f"{what} cannot hold torch.compile's cache ({problem}) and no usable folder "
                     "was found")
    return False


def _folder_problem(folder: str, for_cpu_build: bool = False) -> str | None:
    """Why `folder` cannot be torch's compiler cache (None if it can): it must be, or be
    creatable as, a folder files can be written in, and for C++ builds have no space in its
    path. Nothing is created here."""
    from ..files import UserFileError, check_output_folder
    folder = os.path.abspath(folder)
    if folder == "/proc" or folder.startswith(("/proc/", "/sys/", "/dev/")):
        return "it lies under /proc, /sys or /dev"
    if os.path.exists(folder) and not os.path.isdir(folder):
        return "it is a file, not a folder"
    if for_cpu_build and re.search(r"\s", folder):
        return "its path has a space, which breaks inductor's C++ build"
    try:
        check_output_folder(folder, "cache")
    except UserFileError as error:
        return str(error).split(": ", 1)[-1]
    return None


def _add_once(notes: list[str], note: str) -> None:
    """A run checks the folder before its optimiser and again before compiling: one note."""
    if note not in notes:
        notes.append(note)


def _default_cache_dir() -> str:
    """torch's default_cache_dir, spelled out: importing torch._inductor to ask would import
    torch._dynamo, which is what fails on a bad folder (and cannot be imported twice)."""
    try:
        username = getpass.getuser()
    except (KeyError, ModuleNotFoundError, OSError):
        username = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
    return os.path.join(tempfile.gettempdir(),
                        "torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", username))


def _fallback_cache_dirs() -> list[str]:
    """Where a replacement is looked for, in order: the user's cache, the temporary folder,
    /tmp, the working folder; named after the user, so users sharing a machine do not share."""
    user = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(_default_cache_dir())) or "torchinductor"
    home = os.path.expanduser("~")
    candidates = [] if home == "~" else [os.path.join(home, ".cache", "ganprior", user)]
    candidates += [os.path.join(tempfile.gettempdir(), f"ganprior-{user}"),
                   os.path.join("/tmp", f"ganprior-{user}"), os.path.join(os.getcwd(), f".ganprior-{user}")]
    return [os.path.abspath(candidate) for candidate in candidates]
