"""The resumable run folder the lab's studies share (`bench`, `choose`, `stop-study`,
`fill-study`).

A study writes each result into its --out folder as soon as it is done, so an interrupted study
is finished by rerunning the same command, which does only what is missing. What makes that
safe is here, once:
- the claim (`claim`): the first run writes the settings its results depend on into the folder;
  a later run with other settings is refused rather than mixing results that mean different
  things;
- digests (`file_digest`): a prior replaced under the same name is another prior;
- CSV rows read back whole (`read_rows`): a line cut short by a killed run, or one with cells
  missing, is dropped, so that row simply runs again;
- rows written atomically (`write_rows`, `append_row`): a kill or a full disk leaves the previous
  complete file, never a line cut inside a cell.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from ..files import write_atomically

Row = TypeVar("Row")


def file_digest(path: str | Path) -> str:
    """SHA-256 of the file's bytes, read in blocks (priors are hundreds of megabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def claim(folder: Path, settings: dict, claim_file: str, holds: str,
          has_results: Callable[[], bool], later_keys: tuple[str, ...] = ()) -> None:
    """Claim `folder` for a run whose results depend on `settings`: the first run writes them
    into `claim_file`; a later run must bring the same ones, or it is refused, naming the
    settings that differ. `holds` says what a claimed folder holds ("a study"). `later_keys`
    were added to the settings after folders were in use: a claim that lacks one was made
    before it existed, and still matches. An unreadable claim (a disk that filled up under an
    older version) is replaced when `has_results()` says nothing in the folder depends on it."""
    path = folder / claim_file
    previous = _read_claim(path, has_results)
    if previous is None:
        write_atomically(path, json.dumps(settings, indent=2) + "\n")
        return
    differing = sorted(key for key in settings.keys() | previous.keys()
                       if settings.get(key) != previous.get(key)
                       and not (key in later_keys and key not in previous))
    if differing:
        raise ValueError(f"{folder} holds {holds} with other settings (differs in: "
                         f"{', '.join(differing)}); choose another --out or delete it")


def claim_runs_folder(out: Path, checkpoint: str, preset: str, until: int, claim_file: str,
                      holds: str) -> Path:
    """`<out>/runs`, where a study of recorded runs (`stop-study`, `fill-study`) keeps one JSON file
    a run, made and claimed for one prior (by digest), preset and recorded length."""
    folder = out / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"checkpoint_sha256": file_digest(checkpoint), "preset": preset, "until": until}
    claim(out, settings, claim_file, holds, has_results=lambda: any(folder.glob("*.json")))
    return folder


def _read_claim(path: Path, has_results: Callable[[], bool]) -> dict | None:
    """The settings in the claim file; None where there is no claim to honour."""
    if not path.exists():
        return None
    try:
        previous = json.loads(path.read_text())
        problem = None if isinstance(previous, dict) else f"it holds {type(previous).__name__}"
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        previous, problem = None, str(error)
    if problem is None:
        return previous
    if has_results():
        raise ValueError(f"{path} is unreadable ({problem}), so the settings of the results in "
                         f"{path.parent} are unknown; choose another --out or delete the folder")
    return None  # nothing depends on it: claimed afresh


def read_rows(path: Path, columns: tuple[str, ...],
              parse: Callable[[dict[str, str]], Row] = dict, repair: bool = False) -> list[Row]:
    """The finished rows of a CSV file with `columns`, each through `parse` (a ValueError from
    it marks the row unfinished). A line cut short by a killed run, a line with cells missing or
    extra and an unfinished row are left out, so that row runs again; with `repair` the file is
    rewritten without them. A missing or empty file has no rows."""
    try:
        with open(path, newline="") as stream:
            document = stream.read()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} cannot be read ({error}); delete it to rerun every row") from None
    if not document.strip():
        return []  # a run killed before its first row (by an older version)
    # A last line without its line break was cut while being written (an older appending
    # writer, killed): whatever it holds, even a number cut short, is not a finished row.
    whole_lines = document[:document.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(whole_lines, newline=""))
    if tuple(reader.fieldnames or ()) != columns:
        raise ValueError(f"{path} has columns {reader.fieldnames}, expected {list(columns)}")
    rows, kept, dropped = [], [], whole_lines != document
    for text in reader:
        try:
            if None in text or None in text.values():
                raise ValueError("cells missing or extra")
            rows.append(parse(text))
            kept.append(text)
        except ValueError:
            dropped = True
    if repair and dropped:
        write_rows(path, columns, kept)  # never a moment without the finished rows on disk
    return rows


def write_rows(path: Path, columns: tuple[str, ...], rows: Iterable[dict]) -> None:
    """The whole file, written atomically."""
    stream = io.StringIO(newline="")
    writer = csv.DictWriter(stream, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, stream.getvalue())


def append_row(path: Path, columns: tuple[str, ...], row: dict) -> None:
    """`row` added to the file's finished rows; the whole file rewritten atomically, so an
    interrupted run keeps every earlier row."""
    write_rows(path, columns, [*read_rows(path, columns), row])
