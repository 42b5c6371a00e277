"""Property: a damaged checkpoint of any format, PGGAN or StyleGAN2, loads or gives a one-line
CheckpointError within seconds, nothing else.

Small valid files of every format are mutated (bit flips, truncations, inserted and overwritten
bytes) and loaded in this process; test_hostile_files.py shows in child processes that the crafted
files that used to crash the loader no longer can. Derandomised, so CI sees the same examples on
every run.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganprior_core.checkpoints import CheckpointError, load_generator
from tests.hostile_builders import valid_files

EXAMPLES_PER_FORMAT = 100
SECONDS_PER_LOAD = 10

_WORK = Path(tempfile.mkdtemp(prefix="ganprior-fuzz-"))
atexit.register(shutil.rmtree, _WORK, ignore_errors=True)
SEEDS = valid_files(_WORK)
VALID = {name: path.read_bytes() for name, path in SEEDS.items()}


def _mutation(size: int):
    position = st.integers(0, max(size - 1, 0))
    return st.one_of(
        st.tuples(st.just("flip"), position, st.integers(0, 7)),
        st.tuples(st.just("truncate"), position),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("overwrite"), position, st.binary(min_size=1, max_size=8)),
    )


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    data = bytearray(data)
    for kind, position, *rest in mutations:
        position = min(position, max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[position] ^= 1 << rest[0]
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = rest[0]
        elif kind == "overwrite":
            data[position:position + len(rest[0])] = rest[0]
    return bytes(data)


def assert_mutations_load_or_refuse(original: bytes, path: Path, examples: int,
                                    seconds_per_load: float | None = None) -> None:
    """Write `examples` mutations of `original` to `path`; each loads or gives a one-line
    CheckpointError naming the file (within `seconds_per_load`, when given)."""
    @settings(max_examples=examples, deadline=None, derandomize=True,
              database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_mutation(len(original)), min_size=1, max_size=4))
    def check(mutations):
        path.write_bytes(mutate(original, mutations))
        start = time.perf_counter()
        try:
            load_generator(path)
        except CheckpointError as error:
            assert str(path) in str(error) and "\n" not in str(error)
        if seconds_per_load is not None:
            assert time.perf_counter() - start < seconds_per_load

    check()


def test_the_seeds_load():
    for path in SEEDS.values():
        assert load_generator(path).config.resolution == 8


@pytest.mark.parametrize("name", list(VALID))
def test_mutated_files_load_or_raise_checkpoint_error(name):
    assert_mutations_load_or_refuse(VALID[name], _WORK / f"mutated_{name}", EXAMPLES_PER_FORMAT,
                                    SECONDS_PER_LOAD)
