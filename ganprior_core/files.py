"""Files a user names: checked before any work is done, written so that a failure leaves nothing.

Inputs must be regular files: opening a named pipe blocks until something writes into it, and a
directory or device is never what was meant. Outputs are checked up front (a known extension,
not a directory, a folder that exists or can be created and is writable), so a long optimisation
never ends in an error about the output path, and are written to a temporary file in the same
folder that replaces the destination only once it is complete.
"""
from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable


class UserFileError(ValueError):
    """A file the user named cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


def require_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """The path, if it is an existing regular file (symlinks followed); else a UserFileError."""
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise UserFileError(path, f"no such {what}") from None
    except OSError as error:
        raise UserFileError(path, f"cannot access the {what} ({error.strerror})") from None
    if stat.S_ISDIR(status.st_mode):
        raise UserFileError(path, f"is a directory; the {what} must be a file")
    if not stat.S_ISREG(status.st_mode):
        raise UserFileError(path, f"is not a regular file (a pipe, socket or device); the {what} "
                                  "must be a regular file")
    if not os.access(path, os.R_OK):
        raise UserFileError(path, f"the {what} is not readable (permission denied)")
    return path


def check_output_file(path: str | os.PathLike, suffixes: Iterable[str], what: str = "output") -> Path:
    """Refuse an output path that could not be written, before anything is computed.

    `suffixes` are the accepted extensions (lower case, with the dot). Folders that do not exist
    yet are fine if they can be created; nothing is created here.
    """
    path = Path(path)
    suffixes = tuple(suffixes)
    status = _status(path, what)
    if status is not None and stat.S_ISDIR(status.st_mode):
        raise UserFileError(path, f"{what} is a directory; give a file name inside it")
    if path.suffix.lower() not in suffixes:
        given = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise UserFileError(path, f"{what} has {given}; accepted: {', '.join(suffixes)}")
    if status is not None and not stat.S_ISREG(status.st_mode):
        raise UserFileError(path, f"{what} exists and is not a regular file")
    check_output_folder(path.parent, what)
    return path


def _status(path: Path, what: str) -> os.stat_result | None:
    """os.stat, None for a path that does not exist; other failures (a name too long, a loop of
    links, no permission to look) are the user's to fix and are said so."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise UserFileError(path, f"cannot use this {what} path ({error.strerror})") from None


def check_output_folder(folder: str | os.PathLike, what: str = "output") -> Path:
    """Refuse a folder that is a file, lies under a file, or cannot be written."""
    folder = Path(folder)
    existing = folder
    while _status(existing, what) is None and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise UserFileError(existing, f"is a broken symbolic link, so the {what} folder "
                                          "cannot be created")
        existing = existing.parent
    if not existing.is_dir():
        raise UserFileError(folder, f"cannot create the {what} folder: {existing} is a file")
    # os.access answers yes to root everywhere, also where no file can be made (/proc, a
    # read-only mount seen through some filesystems): making and removing a file is the real test.
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserFileError(folder, f"cannot write files into {existing} for the {what} "
                                    f"({error.strerror})") from None
    return folder


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(file)` on a temporary file next to `path`, then move it into place.

    Readers never see a half-written file, an existing file survives a failed write, and a
    failure removes the temporary file and any folders this call created.
    """
    path = Path(path)
    created = _make_folders(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        # os.open with mode 0o666 lets the umask decide the permissions, as a plain open() would.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:  # not empty: something else was put there meanwhile
                break
        raise


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns those it created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    missing.reverse()
    for each in missing:
        each.mkdir(exist_ok=True)
    return missing
