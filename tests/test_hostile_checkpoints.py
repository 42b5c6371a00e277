"""Hostile checkpoint files (issue #10): each class is loaded in a child process, which must
answer every file with a CheckpointError (or load it, for valid files under misleading names)
without a signal, within time and a 3 GB address-space limit, and without running anything.

The files are built by hostile_builders; one child per class keeps the suite fast, and the child
announces each file before loading it, so a crash names the file that caused it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_builders import CLASSES, MARKER_NAME, Case

REPO_ROOT = Path(__file__).resolve().parent.parent
MEMORY_LIMIT_BYTES = 3 << 30
SECONDS_PER_FILE = 10
CHILD_TIMEOUT_SECONDS = 120

_CHILD = r"""
import json, resource, sys, time
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.path.insert(0, sys.argv[2])
from ganprior_core.checkpoints import CheckpointError, load_generator
for path in sys.argv[3:]:
    print(json.dumps({"start": path}), flush=True)
    began = time.monotonic()
    try:
        load_generator(path)
        outcome, message = "loads", ""
    except CheckpointError as error:
        outcome, message = "error", str(error)
    except BaseException as error:
        outcome, message = "other", f"{type(error).__name__}: {error}"
    print(json.dumps({"path": path, "outcome": outcome, "message": message[:3000],
                      "seconds": time.monotonic() - began}), flush=True)
"""


def load_in_child(paths: list[Path]) -> tuple[dict[str, dict], int, str | None]:
    """Results per path, the child's return code, and the file it was loading if it died."""
    process = subprocess.run(
        [sys.executable, "-c", _CHILD, str(MEMORY_LIMIT_BYTES), str(REPO_ROOT),
         *map(str, paths)], capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    results, current = {}, None
    for line in process.stdout.splitlines():
        record = json.loads(line)
        if "start" in record:
            current = record["start"]
        else:
            results[record["path"]] = record
            current = None
    return results, process.returncode, current


@pytest.mark.parametrize("attack", list(CLASSES))
def test_hostile_files_give_a_clear_error_and_nothing_else(tmp_path, attack):
    cases: list[Case] = CLASSES[attack](tmp_path)
    assert cases
    results, returncode, dying_on = load_in_child([case.path for case in cases])
    assert returncode >= 0, f"the loader died with signal {-returncode} on {dying_on}"
    assert returncode == 0 and dying_on is None, f"the child failed on {dying_on}"
    for case in cases:
        result = results[str(case.path)]
        assert result["outcome"] == case.expect, (case.path.name, result["message"])
        assert result["seconds"] < SECONDS_PER_FILE, (case.path.name, result["seconds"])
        if case.expect == "error":
            message = result["message"]
            assert str(case.path) in message and "Accepted formats:" in message
            assert "\n" not in message, message
    assert not (tmp_path / MARKER_NAME).exists(), "a payload ran"
