"""Read `torch.save` files without `torch.load`: tensors and plain containers only.

`torch.load(weights_only=True)` refuses code, but it trusts the sizes in the file (a shape can
claim terabytes), lets shared references expand without bound, and picks its reader by the file
name's suffix. Here both container formats are parsed with the bounded unpickler of
`safe_pickle`, and every tensor's storage size, offset, shape and stride are checked against the
bytes actually present before anything is allocated:

- zip archives (torch >= 1.6): `<root>/data.pkl` plus one `<root>/data/<key>` entry per storage;
- the legacy stream (torch < 1.6, e.g. mGANprior-era files): pickles of the magic number, the
  protocol version and system info, the object pickle, the list of storage keys, then each
  storage as an int64 element count followed by its raw little-endian bytes.
"""
from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from typing import Any

import torch

from . import safe_pickle
from .safe_pickle import UnsafePickle

ZIP_MAGIC = b"PK\x03\x04"
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: torch.dtype
    count: int  # elements

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


class _PendingTensor:
    """A tensor named by the pickle, built once its storage has been read and checked."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any) -> None:
        if not isinstance(storage, _StorageRef):
            raise UnsafePickle("a tensor in it has no storage")
        size, stride = safe_pickle.checked_shape(size), safe_pickle.checked_shape(stride)
        if type(offset) is not int or offset < 0 or len(size) != len(stride):
            raise UnsafePickle(f"a tensor in it has an invalid layout (offset {offset!r}, size "
                               f"{size}, stride {stride})")
        last = offset + sum((extent - 1) * step for extent, step in zip(size, stride))
        if math.prod(size) and last >= storage.count:
            raise UnsafePickle(f"a tensor of size {size} reaches element {last} of a storage of "
                               f"{storage.count}")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _StateDict(dict):
    """collections.OrderedDict as torch pickles state dicts; their `_metadata` is not needed."""

    def __setstate__(self, state: Any) -> None:
        pass


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> Any:
    return _PendingTensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    return data


_CLASSES: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


def _storage_ref(pid: Any) -> _StorageRef:
    # ('storage', storage type, key, location, element count[, view metadata])
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
            and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
            and type(pid[4]) is int and pid[4] >= 0 and (len(pid) == 5 or pid[5] is None)):
        raise UnsafePickle(f"it refers to storage {str(pid)[:80]}, not a plain tensor storage")
    return _StorageRef(pid[2], pid[1].dtype, pid[4])


# pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2) without its STOP: how every legacy file begins
_LEGACY_MAGIC_PICKLE = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC_NUMBER.to_bytes(10, "little")


def looks_like_torch_file(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC) or head.startswith(_LEGACY_MAGIC_PICKLE)


def read(data: bytes, classes: dict[tuple[str, str], Any] | None = None) -> Any:
    """The object a torch.save file holds, its tensors as CPU torch tensors.

    `classes` adds stand-ins (see safe_pickle.load) to the torch names allowed."""
    classes = {**_CLASSES, **(classes or {})}
    if data.startswith(ZIP_MAGIC):
        return _read_zip(data, classes)
    return _read_legacy(data, classes)


def read_storage_stream(data: bytes) -> torch.Tensor:
    """The storage of a legacy `torch.save(storage)` stream, as a flat tensor over its bytes.

    This is what `torch.storage._load_from_bytes(b)` reads: pickled tensors (pickle.dump of a
    module, as NVIDIA's network pickles are) carry each storage as such a nested stream."""
    if not data.startswith(_LEGACY_MAGIC_PICKLE):
        raise UnsafePickle("a nested tensor storage is not a legacy torch.save stream")
    result, storages, contents = _parse_legacy(data, _CLASSES, (_StorageRef,))
    if not isinstance(result, _StorageRef) or list(storages) != [result.key]:
        raise UnsafePickle("a nested tensor storage stream holds something other than one "
                           "storage")
    content = contents[result.key]
    if not content:
        return torch.empty(0, dtype=result.dtype)
    return torch.frombuffer(content, dtype=result.dtype)


def _read_zip(data: bytes, classes: dict[tuple[str, str], Any]) -> Any:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        records = [name for name in archive.namelist() if name.endswith("/data.pkl")]
    except zipfile.BadZipFile as error:
        raise UnsafePickle(f"it is a damaged zip archive ({error})") from None
    if len(records) != 1:
        raise UnsafePickle("it is a zip archive but not a PyTorch file (no single data.pkl)")
    root = records[0][:-len("data.pkl")]
    storages: dict[str, _StorageRef] = {}

    def persistent_load(pid: Any) -> _StorageRef:
        reference = _storage_ref(pid)
        storages[reference.key] = reference
        return reference

    pickled = _read_entry(archive, records[0], archive.getinfo(records[0]).file_size, len(data))
    result = safe_pickle.load(pickled, classes, persistent_load,
                              leaf_types=(_PendingTensor,))
    contents = {}
    for key, reference in storages.items():
        name = f"{root}data/{key}"
        if name not in archive.namelist():
            raise UnsafePickle(f"storage '{key}' is missing from the archive")
        contents[key] = _read_entry(archive, name, reference.nbytes, len(data))
    return _materialise(result, storages, contents, len(data))


def _read_entry(archive: zipfile.ZipFile, name: str, expected_bytes: int,
                file_bytes: int) -> bytearray:
    """An entry's bytes, once its sizes agree with what the pickle announced and the file holds.

    torch.save stores entries uncompressed; refusing compression keeps a small file from
    inflating into a large one."""
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        raise UnsafePickle(f"archive entry '{name}' is compressed, which torch.save never does")
    if info.file_size != expected_bytes or info.file_size > file_bytes:
        raise UnsafePickle(f"archive entry '{name}' holds {info.file_size} bytes, "
                           f"{expected_bytes} expected, in a file of {file_bytes}")
    content = bytearray(info.file_size)  # writable, so tensors can use it without another copy
    with archive.open(info) as entry:
        if entry.readinto(content) != info.file_size:
            raise UnsafePickle(f"archive entry '{name}' is truncated")
    return content


def _read_legacy(data: bytes, classes: dict[tuple[str, str], Any]) -> Any:
    result, storages, contents = _parse_legacy(data, classes)
    return _materialise(result, storages, contents, len(data))


def _parse_legacy(data: bytes, classes: dict[tuple[str, str], Any],
                  leaf_types: tuple[type, ...] = (_PendingTensor,)
                  ) -> tuple[Any, dict[str, _StorageRef], dict[str, bytearray]]:
    stream = io.BytesIO(data)
    if safe_pickle.load(stream) != LEGACY_MAGIC_NUMBER:
        raise UnsafePickle("it is not a PyTorch file (wrong magic number)")
    if safe_pickle.load(stream) != LEGACY_PROTOCOL_VERSION:
        raise UnsafePickle("it is a PyTorch file of an unknown legacy protocol version")
    system = safe_pickle.load(stream)
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise UnsafePickle("it is a big-endian legacy PyTorch file, which is not supported")
    storages: dict[str, _StorageRef] = {}

    def persistent_load(pid: Any) -> _StorageRef:
        reference = _storage_ref(pid)
        storages[reference.key] = reference
        return reference

    result = safe_pickle.load(stream, classes, persistent_load, leaf_types=leaf_types)
    keys = safe_pickle.load(stream)
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise UnsafePickle("its list of storages does not match the tensors it names")
    contents = {}
    for key in keys:
        count = int.from_bytes(stream.read(8), "little", signed=True)
        reference = storages[key]
        if count != reference.count:
            raise UnsafePickle(f"storage '{key}' holds {count} elements where {reference.count} "
                               "were announced")
        if reference.nbytes > len(data) - stream.tell():
            raise UnsafePickle(f"storage '{key}' runs past the end of the file (truncated)")
        contents[key] = bytearray(stream.read(reference.nbytes))
    return result, storages, contents


def _materialise(result: Any, storages: dict[str, _StorageRef], contents: dict[str, bytearray],
                 byte_allowance: int) -> Any:
    """Replace each _PendingTensor by a tensor over its (checked) storage bytes: a view where
    the tensor is its whole storage, as state dicts' tensors are, else a copy of its part."""
    storage_tensors: dict[str, torch.Tensor] = {}
    allowance = safe_pickle.Allowance(byte_allowance)

    def build(pending: _PendingTensor) -> torch.Tensor:
        storage, count = pending.storage, math.prod(pending.size)
        if storage.key not in storage_tensors:
            content = contents.pop(storage.key)
            storage_tensors[storage.key] = torch.frombuffer(content, dtype=storage.dtype) \
                if content else torch.empty(0, dtype=storage.dtype)
        whole = storage_tensors[storage.key]
        if pending.offset == 0 and count == storage.count and \
                pending.stride == _contiguous_strides(pending.size):
            return whole.view(pending.size)
        allowance.spend(count * storage.dtype.itemsize)
        return whole.as_strided(pending.size, pending.stride, pending.offset).clone()

    def walk(obj: Any) -> Any:  # the structure was bounded (depth, size, no cycles) when read
        if isinstance(obj, _PendingTensor):
            return build(obj)
        if isinstance(obj, dict):
            return {name: walk(value) for name, value in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(walk(value) for value in obj)
        return obj

    return walk(result)


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for extent in reversed(size):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))
