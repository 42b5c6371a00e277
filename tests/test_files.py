"""Files the project writes (ganprior_core/files.py): every write goes through one helper that
replaces the destination only when complete, keeps the old file on any failure or Ctrl-C, leaves no
temporary file, and makes temporary names that fit the file system."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ganprior_core.files import NAME_MAX, UserFileError, check_output_file, temporary_path, write_atomically
from tests.pack_under_test import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


def write_half_then_fail(file):
    file.write(b"half")
    raise RuntimeError("disk full")


def test_failed_atomic_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "made" / "result.png"
    with pytest.raises(RuntimeError):
        write_atomically(target, write_half_then_fail)
    assert not (tmp_path / "made").exists()  # the folder it created is gone again
    target.parent.mkdir()
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        write_atomically(target, write_half_then_fail)
    assert target.read_bytes() == b"old" and [p.name for p in target.parent.iterdir()] == ["result.png"]


def test_a_failed_write_is_one_error_naming_the_file(tmp_path):
    target = tmp_path / "kept.json"
    target.write_text("old")

    def full(file):
        file.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(UserFileError, match="kept.json: cannot write the file .No space left"):
        write_atomically(target, full)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]


def test_ctrl_c_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.png"
    target.write_bytes(b"old")

    def interrupted(file):
        file.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, interrupted)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["result.png"]


def test_long_multibyte_names_get_a_temporary_name_that_fits():
    name = "é" * 126 + ".png"  # 256 bytes: over the limit, refused up front; 254 bytes fits
    with pytest.raises(UserFileError, match="bytes"):
        check_output_file(Path("/tmp") / name, (".png",))
    assert len(temporary_path(Path("/x") / ("é" * 125 + ".png")).name.encode()) <= NAME_MAX


def test_every_write_in_the_project_goes_through_the_one_helper():
    """No second atomic writer, and no plain write_text / torch.save-to-a-path / save_file."""
    allowed = {ROOT / "ganprior_core" / "files.py"}
    pattern = re.compile(r"\.write_text\(|\.write_bytes\(|torch\.save\([^)]*(path|temporary)|"
                         r"save_file\(|os\.replace\(|open\([^)]*[\"'][wa]b?[\"']")
    offenders = []
    for path in sorted((ROOT / "ganprior_core").rglob("*.py")):
        if path in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
