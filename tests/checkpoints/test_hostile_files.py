"""Hostile checkpoint files: each class of attack is loaded in a child process, which must answer
every file with a CheckpointError (or load it, for valid files under misleading names) without a
signal, within time and a 3 GB address-space limit, and without running anything.

The files are built by tests/hostile_builders.py; one child per class keeps the suite fast, and
the child announces each file before loading it, so a crash names the file that caused it. After
them, single crafted files loaded in this process: payloads that must never run, and tensor storage
streams that claim or reuse more than the file holds.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ganprior_core.checkpoints import load_generator
from tests.checkpoint_builders import (
    SMALL,
    PickledNetwork,
    load_refused,
    nvidia_pickle,
    tf_network_state,
    tf_variables,
    write_pickle,
)
from tests.hostile_builders import CLASSES, MARKER_NAME, Case
from tests.pack_under_test import ROOT as REPO_ROOT
from tests.stylegan2_builders import (
    KWARGS,
    TOLERANCE,
    Reduce,
    generator_kwargs,
    max_error_nvidia,
    nvidia_state,
    sg2ada_snapshot,
    tf_generator,
    tf_pickle,
    write,
)

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


def test_malicious_pickles_run_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    top_level = tmp_path / "top.pkl"
    top_level.write_bytes(pickle.dumps(Exploit()))
    hidden_in_state = write_pickle(tmp_path / "hidden.pkl", (
        PickledNetwork({"version": 2, "variables": [("lod", Exploit())]}),) * 3)
    torch_file = tmp_path / "evil.pth"
    torch.save({"layer0.conv.weight": Exploit()}, torch_file)
    source_in_state = nvidia_pickle(tmp_path / "src.pkl", tf_network_state(
        tf_variables(SMALL, np.random.default_rng(11)),
        build_module_src=f"open({str(marker)!r}, 'w').close()"))

    load_refused(top_level, "system", "refused")
    load_refused(hidden_in_state, "refused")
    load_refused(torch_file, "nothing in it was run")
    load_generator(source_in_state)  # build_module_src is data, never executed
    assert not marker.exists()


def test_out_of_band_buffers_cannot_be_supplied_by_a_file(tmp_path):
    variables = tf_variables(SMALL, np.random.default_rng(24))
    path = tmp_path / "out-of-band.pkl"
    path.write_bytes(pickle.dumps(variables["4x4/Dense/weight"], protocol=5,
                                  buffer_callback=lambda buffer: False))
    load_refused(path, "damaged")


def test_module_source_in_a_pickle_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').write('pwned')\nimport os\nos.system('true')\n"
    g_ema = nvidia_state(11)
    path = write(tmp_path / "payload.pkl",
                 sg2ada_snapshot(g_ema, None, generator_kwargs(**KWARGS), module_src=payload))
    assert max_error_nvidia(load_generator(path), g_ema) <= TOLERANCE
    tf = tf_generator(nvidia_state(12, resolution=32), 32)
    tf._state["build_module_src"] = payload
    load_generator(tf_pickle(tmp_path / "payload_tf.pkl", tf))
    assert not marker.exists()


def test_a_pickle_asking_for_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    content = sg2ada_snapshot(nvidia_state(13), None, generator_kwargs(**KWARGS))
    content["G_ema"].meta["state"]["evil"] = Reduce(os.system, f"touch {marker}")
    message = load_refused(write(tmp_path / "system.pkl", content), f"{os.system.__module__}.system",
                      "nothing in it was run")
    assert not marker.exists() and len(message) < 2000


def _storage_stream(count: int, payload: bytes) -> bytes:
    """A legacy torch.save(storage) stream claiming `count` floats, holding `payload`."""
    marker = object()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", count, None) if obj is marker \
                else None

    stream = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, stream, protocol=2)
    Pickler(stream, protocol=2).dump(marker)
    pickle.dump(["0"], stream, protocol=2)
    stream.write(struct.pack("<q", count) + payload)
    return stream.getvalue()


def _hostile_snapshot(parameters: dict) -> dict:
    content = sg2ada_snapshot(nvidia_state(14), None, generator_kwargs(**KWARGS))
    content["G_ema"].meta["state"]["_parameters"].update(parameters)
    return content


def test_one_storage_stream_referenced_many_times_is_refused(tmp_path):
    elements = 2 ** 18  # 1 MiB of float32
    stream = _storage_stream(elements, bytes(4 * elements))
    storage = Reduce(torch.storage._load_from_bytes, stream)
    hooks = __import__("collections").OrderedDict()
    tensors = {f"t{i}": Reduce(torch._utils._rebuild_tensor_v2, storage, 0, (elements,), (1,),
                               False, hooks) for i in range(10_000)}
    path = write(tmp_path / "amplified.pkl", _hostile_snapshot(tensors))
    assert path.stat().st_size < 2 * 4 * elements
    start = time.perf_counter()
    load_refused(path, "more bytes than the file")
    # the same bytes given to _load_from_bytes again and again: parsed once, still refused
    streams = {f"t{i}": Reduce(torch._utils._rebuild_tensor_v2,
                               Reduce(torch.storage._load_from_bytes, stream), 0, (elements,),
                               (1,), False, hooks) for i in range(10_000)}
    load_refused(write(tmp_path / "amplified2.pkl", _hostile_snapshot(streams)), "more bytes")
    assert time.perf_counter() - start < 20


def test_a_flood_of_distinct_storage_streams_is_refused_quickly(tmp_path, monkeypatch):
    from ganprior_core.checkpoints import nvidia_stylegan2
    monkeypatch.setattr(nvidia_stylegan2, "MAX_NESTED_STORAGES", 200)
    hooks = __import__("collections").OrderedDict()
    flood = {f"t{i}": Reduce(torch._utils._rebuild_tensor_v2, Reduce(
        torch.storage._load_from_bytes, _storage_stream(1, struct.pack("<f", i))), 0, (1,), (1,),
        False, hooks) for i in range(201)}
    load_refused(write(tmp_path / "flood.pkl", _hostile_snapshot(flood)), "more than 200 tensor "
            "storages")


def test_nested_streams_claiming_huge_sizes_are_refused_without_allocating(tmp_path):
    start = time.perf_counter()
    huge = Reduce(torch.storage._load_from_bytes, _storage_stream(2 ** 40, bytes(64)))
    load_refused(write(tmp_path / "huge_storage.pkl", _hostile_snapshot({"w": huge})),
            "runs past the end")
    small = Reduce(torch.storage._load_from_bytes, _storage_stream(16, bytes(64)))
    hooks = __import__("collections").OrderedDict()
    wide = Reduce(torch._utils._rebuild_tensor_v2, small, 0, (2 ** 20, 2 ** 20), (1, 1),
                  False, hooks)
    load_refused(write(tmp_path / "huge_tensor.pkl", _hostile_snapshot({"w": wide})), "reaches element")
    assert time.perf_counter() - start < 10
