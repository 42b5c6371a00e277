"""Unpickle untrusted checkpoint files: only plain numeric arrays and plain containers come out.

An allow-list of globals is not enough on its own. `numpy.dtype`, `_reconstruct` and
`ndarray.__setstate__` let a pickle build an array of object dtype whose bytes numpy then reads as
object pointers (a crash, or worse), forge a dtype state (field names, item size, flags), and a few
kilobytes of shared references can stand for billions of objects. So here:

- numpy's reconstruction functions are never called with pickled data. The numpy names a pickle
  may ask for map to stand-ins that collect (shape, dtype code, byte order, bytes), check them
  against a list of plain numeric dtypes and the byte count, and build the array themselves with
  `np.frombuffer`;
- the pure-Python unpickler runs with a per-opcode budget, refuses the opcodes no checkpoint needs
  (extension registry, huge longs, BUILD on anything but a stand-in), and caps the bytes of arrays
  it builds by the size of the file (shared byte strings cannot be turned into many arrays);
- the result is walked once, with a depth limit, refusing cycles and counting every object as
  often as it is referenced, so a shared-reference bomb is refused before anyone iterates it.

Any refusal raises `UnsafePickle` (or `ForbiddenGlobal`), whose message says what was refused.
"""
from __future__ import annotations

import io
import math
import pickle
import re
from typing import Any, Callable, Mapping

import numpy as np

MAX_OPCODES = 2_000_000  # official PGGAN pickles need a few thousand
MAX_EXPANDED_OBJECTS = 1_000_000  # objects in the result, counting each reference
MAX_DEPTH = 32  # NVIDIA's (G, D, Gs) state is about 6 levels deep
MAX_DIMENSIONS = 8
# Plain numeric dtypes: bool, signed/unsigned integers, floats (no long double, no complex).
_NUMERIC_DTYPE_CODE = re.compile(r"(b1|[iu][1248]|f[248])")
_BYTE_ORDERS = ("<", ">", "|", "=")


class UnsafePickle(Exception):
    """The pickle was refused; nothing in it was run."""


class ForbiddenGlobal(UnsafePickle):
    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name
        super().__init__(f"the pickle asks for '{module}.{name}', which GAN weights never need; "
                         "it was refused; nothing in it was run")


class Allowance:
    """Bytes of array data this unpickling may still produce (the file's size plus a margin)."""

    def __init__(self, array_bytes: int) -> None:
        self.array_bytes = array_bytes

    def spend(self, nbytes: int) -> None:
        if nbytes > self.array_bytes:
            raise UnsafePickle("its arrays would hold more bytes than the file contains "
                               "(shared data reused as many arrays)")
        self.array_bytes -= nbytes


def numeric_dtype(code: Any, byte_order: Any = "=") -> np.dtype:
    """A plain numeric dtype from a validated code such as 'f4' and a byte-order character."""
    if not isinstance(code, str) or not _NUMERIC_DTYPE_CODE.fullmatch(code):
        raise UnsafePickle(f"it holds an array of dtype {str(code)[:40]!r}; only plain numeric "
                           "arrays (bool, int, uint, float) are read")
    if byte_order not in _BYTE_ORDERS:
        raise UnsafePickle(f"its dtype has byte order {str(byte_order)[:10]!r}")
    dtype = np.dtype(code)
    return dtype.newbyteorder(byte_order) if byte_order in ("<", ">") else dtype


def checked_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_DIMENSIONS or not all(
            type(size) is int and size >= 0 for size in shape):
        raise UnsafePickle(f"an array has the invalid shape {str(shape)[:80]}")
    return tuple(shape)


def array_from_bytes(data: Any, dtype: np.dtype, shape: Any, fortran_order: bool,
                     allowance: Allowance) -> np.ndarray:
    """A native-endian, writable copy of `data` as an array, once its length fits shape x dtype."""
    if isinstance(data, str):  # Python 2 byte strings arrive as latin1-decoded text
        data = data.encode("latin1")
    elif isinstance(data, pickle.PickleBuffer):
        data = data.raw()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UnsafePickle(f"an array's data is a {type(data).__name__}, not bytes (object "
                           "arrays are not read)")
    shape = checked_shape(shape)
    count = math.prod(shape)
    if count * dtype.itemsize != len(data):
        raise UnsafePickle(f"an array of shape {shape} and dtype {dtype} needs "
                           f"{count * dtype.itemsize} bytes, its data has {len(data)}")
    allowance.spend(len(data))
    flat = np.frombuffer(data, dtype=dtype, count=count)
    array = flat.reshape(shape, order="F" if fortran_order else "C")
    return np.array(array, dtype=dtype.newbyteorder("="), order="C")  # a copy, 0-d stays 0-d


# ---------------------------------------------------------------------------------------------
# Stand-ins for the numpy names NVIDIA-era pickles ask for

_NDARRAY = object()  # what 'numpy.ndarray' resolves to: only usable as _reconstruct's argument


class _DTypeStandIn:
    """numpy.dtype(code, align, copy) followed by BUILD(state), validated instead of executed."""

    def __init__(self, code: Any, *_flags: Any) -> None:
        self.dtype = numeric_dtype(code)

    def __setstate__(self, state: Any) -> None:
        # numpy's state: (version, byte order, subarray, names, fields, item size, alignment,
        # flags[, metadata]). A plain numeric dtype has no subarray, names, fields or metadata,
        # the default size and alignment (-1) and no flags; anything else is a forged layout.
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise UnsafePickle("a dtype in it has a malformed state")
        version, byte_order, subarray, names, fields, item_size, alignment, flags = state[:8]
        metadata = state[8] if len(state) == 9 else None
        plain = (version in (3, 4) and subarray is None and names is None and fields is None
                 and item_size == -1 and alignment == -1 and flags == 0 and metadata is None)
        if not plain:
            raise UnsafePickle("a dtype in it is not a plain numeric dtype (structured, "
                               "subarray, object or forged layout)")
        self.dtype = numeric_dtype(self.dtype.str[1:], byte_order)


class _ArrayStandIn:
    """numpy.core.multiarray._reconstruct(ndarray, ...) followed by BUILD(state)."""

    def __init__(self, allowance: Allowance) -> None:
        self.allowance = allowance
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        # ndarray.__setstate__ takes (version, shape, dtype, is_fortran, data) or the 4-tuple
        # without version; an object array would carry a list instead of bytes.
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafePickle("an array in it has a malformed state")
        shape, dtype, fortran_order, data = state[-4:]
        if not isinstance(dtype, _DTypeStandIn):
            raise UnsafePickle("an array in it has no plain numeric dtype")
        self.array = array_from_bytes(data, dtype.dtype, shape, bool(fortran_order),
                                      self.allowance)


def _numpy_globals(allowance: Allowance) -> dict[tuple[str, str], Any]:
    def reconstruct(array_type: Any, *_args: Any) -> _ArrayStandIn:
        if array_type is not _NDARRAY:
            raise UnsafePickle("_reconstruct is asked for something other than a numpy array")
        return _ArrayStandIn(allowance)

    def scalar(dtype: Any, data: Any = b"") -> np.generic:
        if not isinstance(dtype, _DTypeStandIn):
            raise UnsafePickle("a numpy scalar in it has no plain numeric dtype")
        return array_from_bytes(data, dtype.dtype, (), False, allowance)[()]

    def from_buffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
        # numpy >= 1.23 with pickle protocol 5: _frombuffer(PickleBuffer/bytes, dtype, shape, order)
        if not isinstance(dtype, _DTypeStandIn) or order not in ("C", "F"):
            raise UnsafePickle("an array in it has no plain numeric dtype or order")
        return array_from_bytes(buffer, dtype.dtype, shape, order == "F", allowance)

    names: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _NDARRAY,
                                         ("numpy", "dtype"): _DTypeStandIn}
    for prefix in ("numpy.core", "numpy._core"):  # numpy 1 and numpy 2 names
        names[(f"{prefix}.multiarray", "_reconstruct")] = reconstruct
        names[(f"{prefix}.multiarray", "scalar")] = scalar
        names[(f"{prefix}.numeric", "_frombuffer")] = from_buffer
    return names


# ---------------------------------------------------------------------------------------------
# The unpickler

_REFUSED_OPCODES = {
    pickle.EXT1[0]: "copyreg extension codes", pickle.EXT2[0]: "copyreg extension codes",
    pickle.EXT4[0]: "copyreg extension codes", pickle.LONG4[0]: "integers longer than 255 bytes",
}


class _BoundedUnpickler(pickle._Unpickler):  # the pure-Python one, so every opcode can be counted
    def __init__(self, stream: io.BytesIO, classes: Mapping[tuple[str, str], Any],
                 persistent_load: Callable[[Any], Any] | None, allowance: Allowance) -> None:
        super().__init__(stream, encoding="latin1")
        self._globals = {**_numpy_globals(allowance), **classes}
        # BUILD may only reach __setstate__ of the stand-ins (never write into other objects).
        self.stand_in_types = (_DTypeStandIn, _ArrayStandIn, *{
            value for value in classes.values() if isinstance(value, type)})
        self._persistent_load = persistent_load
        self._opcodes_left = MAX_OPCODES
        self.dispatch = {code: self._counted(code, action)
                         for code, action in pickle._Unpickler.dispatch.items()}

    def _counted(self, code: int, action: Callable) -> Callable:
        def run(unpickler: "_BoundedUnpickler") -> None:
            unpickler._opcodes_left -= 1
            if unpickler._opcodes_left < 0:
                raise UnsafePickle(f"the pickle has more than {MAX_OPCODES} operations")
            if code in _REFUSED_OPCODES:
                raise UnsafePickle(f"the pickle uses {_REFUSED_OPCODES[code]}, which checkpoints "
                                   "never need")
            if code == pickle.BUILD[0] and len(unpickler.stack) >= 2 and not isinstance(
                    unpickler.stack[-2], unpickler.stand_in_types):
                raise UnsafePickle(f"the pickle sets the state of a "
                                   f"{type(unpickler.stack[-2]).__name__}, which checkpoints "
                                   "never do")
            action(unpickler)
        return run

    def find_class(self, module: str, name: str) -> Any:
        allowed = self._globals.get((module, name))
        if allowed is None:
            raise ForbiddenGlobal(module, name)
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load is None:
            raise UnsafePickle("the pickle refers to external data (a persistent id)")
        return self._persistent_load(pid)


def load(source: bytes | io.BytesIO, classes: Mapping[tuple[str, str], Any] | None = None,
         persistent_load: Callable[[Any], Any] | None = None,
         leaf_types: tuple[type, ...] = ()) -> Any:
    """Unpickle `source` (bytes, or the next pickle of a BytesIO) allowing only numpy's plain
    numeric arrays and `classes`: a map from (module, name) to a stand-in class or function.
    Stand-in classes receive BUILD through their own `__setstate__` and keep it as `.state`;
    `leaf_types` are the types `classes`' functions build (kept as they are). The arrays built may
    hold at most as many bytes as the whole source (plus a small margin for empty arrays)."""
    stream = source if isinstance(source, io.BytesIO) else io.BytesIO(source)
    allowance = Allowance(stream.getbuffer().nbytes + 1024)
    unpickler = _BoundedUnpickler(stream, classes or {}, persistent_load, allowance)
    return _finish(unpickler.load(), unpickler.stand_in_types, leaf_types)


def _finish(result: Any, stand_in_types: tuple[type, ...], leaf_types: tuple[type, ...]) -> Any:
    """Replace array and dtype stand-ins by what they stand for and bound the result's size.

    Every reference is counted (a list referenced twice counts twice), because that is what a
    consumer iterating the result pays; shared objects are converted once and stay shared.
    """
    converted: dict[int, tuple[Any, int]] = {}  # id -> (result, expanded size)
    in_progress: set[int] = set()
    keep_alive: list[Any] = []  # ids stay unique while the walk runs

    def walk(obj: Any, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise UnsafePickle(f"its objects are nested more than {MAX_DEPTH} levels deep")
        if isinstance(obj, (type(None), bool, int, float, str, bytes, np.generic)):
            return obj, 1
        key = id(obj)
        if key in converted:
            return converted[key]
        if key in in_progress:
            raise UnsafePickle("its objects contain themselves (a reference cycle)")
        in_progress.add(key)
        keep_alive.append(obj)
        size = 1

        def child(item: Any) -> Any:
            nonlocal size
            value, item_size = walk(item, depth + 1)
            size += item_size
            if size > MAX_EXPANDED_OBJECTS:
                raise UnsafePickle(f"its objects expand to more than {MAX_EXPANDED_OBJECTS} "
                                   "(shared references)")
            return value

        if isinstance(obj, _ArrayStandIn):
            if obj.array is None:
                raise UnsafePickle("an array in it has no data")
            value = obj.array
        elif isinstance(obj, _DTypeStandIn):
            value = obj.dtype
        elif isinstance(obj, (np.ndarray, *leaf_types)):
            value = obj  # built by the validated constructors
        elif isinstance(obj, (bytearray, pickle.PickleBuffer)):
            value = bytes(obj)
        elif type(obj) in (list, tuple, set, frozenset):
            value = type(obj)(child(item) for item in obj)
        elif isinstance(obj, dict):
            value = {child(name): child(item) for name, item in obj.items()}
        elif isinstance(obj, stand_in_types) and hasattr(obj, "state"):
            obj.state = child(obj.state)
            value = obj
        else:
            raise UnsafePickle(f"it holds a {type(obj).__name__}, which checkpoints never do")
        in_progress.discard(key)
        converted[key] = (value, size)
        return value, size

    return walk(result, 0)[0]
