"""Files a user names: checked before any work is done, written so that a failure leaves nothing.

Inputs must be regular files: opening a named pipe blocks until something writes into it, and a
directory or device is never what was meant. Outputs are checked up front (a known extension,
not a directory, a folder that exists or can be created and is writable), so a long optimisation
never ends in an error about the output path, and are written to a temporary file in the same
folder that replaces the destination only once it is complete.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Union


class UserFileError(ValueError):
    """A file the user named cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


@contextlib.contextmanager
def name_a_reader_can_open(path: str | os.PathLike) -> Iterator[str]:
    """`path` as a str that readers taking UTF-8 names (safetensors) can open. A name that is not
    valid UTF-8 (a Linux file name is any bytes) is reached through the open file's descriptor
    under /proc/self/fd, so a good file is never refused for its name; where no such folder
    exists, a UserFileError says that the name is the problem."""
    name = os.fspath(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield name
        return
    descriptor = os.open(name, os.O_RDONLY)
    try:
        alias = f"/proc/self/fd/{descriptor}"
        if not os.path.exists(alias):
            raise UserFileError(path, "its name is not valid UTF-8, which the safetensors reader "
                                      "cannot open; rename the file (the file itself was not read)")
        yield alias
    finally:
        os.close(descriptor)


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
    _check_name_lengths(path, what)
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


def _check_name_lengths(path: Path, what: str) -> None:
    """A name longer than NAME_MAX bytes fails only once written (and under a folder that does
    not exist yet, not even os.stat notices): refused here instead."""
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise UserFileError(path, f"the {what} name {part[:40]!r}... is "
                                      f"{len(os.fsencode(part))} bytes: a file name too long (at most "
                                      f"{NAME_MAX} bytes)")


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
    _check_name_lengths(folder, what)
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


# Longest file name most filesystems take (ext4, xfs, btrfs, tmpfs: 255 bytes). The temporary
# name is kept within it, so a name the up-front check accepts is never refused at the end.
NAME_MAX = 255
_TEMPORARY_SUFFIX_BYTES = len(".") + 8 + len(".partial")


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh hidden name next to `path` for its temporary file, at most NAME_MAX bytes long."""
    path = Path(path)
    name = os.fsencode(path.name)
    room = NAME_MAX - len(b".") - _TEMPORARY_SUFFIX_BYTES
    stem = os.fsdecode(name[:room]) if len(name) <= room else _cut(name, room)
    return path.with_name(f".{stem}.{secrets.token_hex(4)}.partial")


def _cut(name: bytes, room: int) -> str:
    """The longest prefix of `name` within `room` bytes that is still a whole character."""
    for size in range(room, 0, -1):
        try:
            return name[:size].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return "out"


Content = Union[bytes, str, Callable[[BinaryIO], None]]


def write_atomically(path: str | os.PathLike, content: Content) -> None:
    """Write `content` (bytes, text, or a function `write(file)`) to a temporary file next to
    `path`, flush it to the disk, then move it into place. The one way this project writes a file.

    Readers never see a half-written file, an existing file survives a failed write, and a
    failure removes the temporary file and any folders this call created. A failure to write
    (a full disk, a quota, an I/O error) is a UserFileError naming the file; an interrupt
    (Ctrl-C) cleans up the same way and is re-raised.
    """
    path = Path(path)
    existed = path.exists()
    try:
        created = _make_folders(path.parent)
    except OSError as error:
        raise UserFileError(path.parent, f"cannot create the folder ({error.strerror})") from None
    temporary = temporary_path(path)
    try:
        # os.open with mode 0o666 lets the umask decide the permissions, as a plain open() would.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as file:
            if callable(content):
                content(file)
            else:
                file.write(content.encode("utf-8") if isinstance(content, str) else content)
            file.flush()
            os.fsync(file.fileno())  # a full disk can fail only here (delayed allocation)
        os.replace(temporary, path)
    except BaseException as error:
        _remove_quietly(temporary)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:  # not empty: something else was put there meanwhile
                break
        if isinstance(error, OSError):
            kept = "the previous file is unchanged" if existed else "nothing was written"
            raise UserFileError(path, f"cannot write the file ({error.strerror or error}); "
                                      f"{kept}") from None
        raise


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files write_atomically leaves only when its process is killed
    (SIGKILL, a power cut) from `folder` and below; for a caller that holds the folder alone
    (a lock), since another process's temporary file looks the same. Returns what it removed."""
    removed = []
    for path in Path(folder).rglob(".*.partial"):
        parts = path.name.rsplit(".", 2)
        if len(parts) == 3 and len(parts[1]) == 8 and all(c in "0123456789abcdef" for c in parts[1]):
            _remove_quietly(path)
            removed.append(path)
    return removed


def same_file(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same resolved path, or (both existing) the same
    device and inode, which also catches hard links and symbolic links."""
    first, second = Path(first), Path(second)
    try:
        if first.resolve() == second.resolve():
            return True
    except (OSError, RuntimeError):  # a loop of links: compared by inode below, if at all
        pass
    try:
        a, b = first.stat(), second.stat()
    except (OSError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def refuse_output_over_input(outputs: dict[str, str | os.PathLike | None],
                             inputs: dict[str, str | os.PathLike | None]) -> None:
    """Outputs are never one of the inputs, nor each other (README): checked before any work.

    Keys are the option names used in the message ("--out", "--latents")."""
    given_outputs = [(name, path) for name, path in outputs.items() if path is not None]
    for name, path in given_outputs:
        for input_name, input_path in inputs.items():
            if input_path is not None and same_file(path, input_path):
                raise UserFileError(path, f"{name} is the {input_name} file: writing it would "
                                          "destroy an input; choose another file")
    for index, (name, path) in enumerate(given_outputs):
        for other_name, other in given_outputs[index + 1:]:
            if same_file(path, other):
                raise UserFileError(path, f"{name} and {other_name} are the same file: one "
                                          "output would overwrite the other; give two files")


def folder_contains(folder: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether `path` is `folder` or lies inside it (resolved, and by inode for `folder` itself)."""
    try:
        folder_resolved, path_resolved = Path(folder).resolve(), Path(path).resolve()
    except (OSError, RuntimeError):
        return False
    return (same_file(folder, path) or folder_resolved == path_resolved
            or folder_resolved in path_resolved.parents)


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


class DirectoryLock:
    """One process per output folder: a lock file made with O_EXCL holding the pid. A lock whose
    process is gone (killed, crashed) is stale and taken over. `what` names the kind of process
    in the refusal (e.g. "bench")."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what

    def __enter__(self) -> "DirectoryLock":
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner != os.getpid() and _process_alive(owner):
                    raise ValueError(f"{self.path.parent} is in use by another {self.what} process "
                                     f"(pid {owner}, see {self.path.name}); wait for it or choose "
                                     "another --out") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            try:
                os.write(descriptor, f"{os.getpid()}\n".encode())
            except OSError as error:  # a full disk: no half-made lock may block the next run
                os.close(descriptor)
                self.path.unlink(missing_ok=True)
                raise UserFileError(self.path, f"cannot write the lock file ({error.strerror})") from None
            os.close(descriptor)
            return self
        raise ValueError(f"cannot take the lock {self.path}; another {self.what} process keeps "
                         "taking it")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None  # empty or garbled: written by a process that died mid-write

    def __exit__(self, *exc) -> None:
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError):
        return False
    return True
