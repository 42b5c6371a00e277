"""Write hostile checkpoint files, one list per class of attack (issue #10).

Each builder returns `Case`s: a file and what loading it must give ("error": a CheckpointError;
"loads": a generator, e.g. a valid file under a misleading name). The files are crafted with the
real pickle / torch / safetensors writers wherever possible (objects whose `__reduce__` names the
real numpy functions with forged arguments), so they are what an attacker would produce.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import save_file

from ganprior_core.checkpoints import save_generator
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
from tests.checkpoint_builders import (
    NUMPY_2,
    Arch,
    PickledNetwork,
    genforce_state_dict,
    genforce_zoo_state_dict,
    nvidia_pickle,
    tf_network_state,
    tf_variables,
    theano_network_state,
    theano_param_values,
)
from tests.stylegan2_builders import (
    dumps,
    generator_kwargs,
    rosinality_state,
    rosinality_train_checkpoint,
    sg2ada_snapshot,
    tf_generator,
    tf_pickle,
    valid_stylegan2_files,
)
from tests.stylegan2_reference import random_state

TINY = Arch(resolution=8, channels=(4, 3), latent=4)
MARKER_NAME = "payload-ran"

_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.float32(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]


@dataclass(frozen=True)
class Case:
    path: Path
    expect: str  # "error" or "loads"


# ---------------------------------------------------------------------------------------------
# Objects that pickle as numpy's own calls with arguments of our choosing

class ForgedDType:
    """Pickles as numpy.dtype(code, False, True) + BUILD(state)."""

    def __init__(self, code: str, state: Any) -> None:
        self.code, self.state = code, state

    def __reduce__(self):
        return np.dtype, (self.code, False, True), self.state


class ForgedArray:
    """Pickles as _reconstruct(ndarray, (0,), b'b') + BUILD(state), like a numpy 1 array."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def __reduce__(self):
        return _RECONSTRUCT, (np.ndarray, (0,), b"b"), self.state


class Call:
    """Pickles as func(*args): REDUCE of any global."""

    def __init__(self, func: Callable, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _tf_pickle(path: Path, replace: dict[str, Any], **options: Any) -> Path:
    """A valid-looking NVIDIA TF pickle of TINY whose variables `replace` overrides."""
    variables = {**tf_variables(TINY, np.random.default_rng(0)), **replace}
    return nvidia_pickle(path, tf_network_state(variables), **options)


def _raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# torch.save zip archives written by hand, to claim storage sizes and layouts torch would not

class _Storage:
    def __init__(self, key: str, count: int, type_name: str = "FloatStorage") -> None:
        self.key, self.count, self.type_name = key, count, type_name


class _TensorClaim:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage: _Storage, offset: Any, size: Any, stride: Any) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, self.offset, self.size,
                                                 self.stride, False, OrderedDict())


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            return ("storage", getattr(torch, obj.type_name), obj.key, "cpu", obj.count)
        return None


def write_torch_zip(path: Path, obj: Any, entries: dict[str, bytes]) -> Path:
    import io
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for key, data in entries.items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def _zoo_with(replace: dict[str, Any]) -> dict:
    return {"generator_smooth": {**genforce_zoo_state_dict(TINY, np.random.default_rng(0)),
                                 **replace}}


# ---------------------------------------------------------------------------------------------
# Classes

def object_dtype_arrays(directory: Path) -> list[Case]:
    pointer, null = b"\x41" * 8, b"\x00" * 8
    object_state = lambda data: (1, (1,), np.dtype("O"), False, data)  # noqa: E731
    files = [
        _tf_pickle(directory / "object_pointer.pkl",
                   {"4x4/Dense/weight": ForgedArray(object_state(pointer))}),
        _tf_pickle(directory / "object_null_pointer.pkl",
                   {"4x4/Dense/weight": ForgedArray(object_state(null))}),
        _raw(directory / "object_top_level.pkl", pickle.dumps(ForgedArray(object_state(pointer)))),
        _tf_pickle(directory / "object_honest_list_data.pkl",
                   {"4x4/Dense/weight": np.array([1, "a", None], dtype=object)}),
        _tf_pickle(directory / "object_frombuffer.pkl",
                   {"4x4/Dense/weight": Call(_FROMBUFFER, pointer, np.dtype("O"), (1,), "C")},
                   numpy_module=NUMPY_2, protocol=5),
        _tf_pickle(directory / "object_scalar.pkl",
                   {"lod": Call(_SCALAR, np.dtype("O"), pointer)}),
        _tf_pickle(directory / "object_scalar_null.pkl",
                   {"lod": Call(_SCALAR, np.dtype("O"), null)}),
    ]
    # A void dtype whose forged state gives it an object field and the reference-counting flag
    # but not NPY_LIST_PICKLE (2), so numpy would copy the bytes in as object pointers.
    object_field = lambda data: (1, (1,), ForgedDType("V8", (  # noqa: E731
        3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0x3D)), False, data)
    files += [
        _tf_pickle(directory / "object_field_forged_flags_pointer.pkl",
                   {"4x4/Dense/weight": ForgedArray(object_field(pointer))}),
        _tf_pickle(directory / "object_field_forged_flags_null_pointer.pkl",
                   {"4x4/Dense/weight": ForgedArray(object_field(null))}),
    ]
    torch_file = directory / "object_in_torch_file.pth"
    torch.save(_zoo_with({"layer0.weight": ForgedArray(object_state(pointer))}), torch_file)
    return [Case(path, "error") for path in [*files, torch_file]]


def unusual_dtypes(directory: Path) -> list[Case]:
    arrays = {
        "void": np.zeros(2, "V8"),
        "structured": np.zeros(2, [("a", "<f4"), ("b", "<i4")]),
        "structured_object_field": np.zeros(2, [("a", "<f4"), ("b", "O")]),
        "structured_subarray": np.zeros(2, [("x", "<f4", (2,))]),
        "bytes": np.zeros(2, "S4"), "unicode": np.zeros(2, "U2"),
        "datetime": np.zeros(2, "M8[s]"), "timedelta": np.zeros(2, "m8[s]"),
        "complex": np.zeros(2, "c8"), "longdouble": np.zeros(2, np.longdouble),
        "with_metadata": np.zeros(2, np.dtype("f4", metadata={"k": 1})),
    }
    return [Case(_tf_pickle(directory / f"dtype_{name}.pkl", {"4x4/Dense/bias": array}), "error")
            for name, array in arrays.items()]


def forged_dtype_states(directory: Path) -> list[Case]:
    object_field = {"a": (np.dtype("O"), 0)}
    states = {
        "fields_with_object": ("f4", (3, "<", None, ("a",), object_field, 8, 1, 63)),
        "item_size_8_for_f4": ("f4", (3, "<", None, None, None, 8, 1, 0)),
        "object_flags": ("f4", (3, "<", None, None, None, -1, -1, 63)),
        "object_subarray": ("f4", (3, "|", (np.dtype("O"), (4,)), None, None, -1, -1, 0)),
        "byte_order_x": ("f4", (3, "x", None, None, None, -1, -1, 0)),
        "version_99": ("f4", (99, "<", None, None, None, -1, -1, 0)),
        "metadata": ("f4", (4, "<", None, None, None, -1, -1, 0, {"k": 1})),
        "not_a_tuple": ("f4", "garbage"),
        "short_tuple": ("f4", (3,)),
        "void_code": ("V8", (3, "|", None, None, None, -1, -1, 0)),
        "object_code_plain_state": ("O8", (3, "|", None, None, None, -1, -1, 0)),
        "unicode_code": ("U4", (3, "<", None, None, None, -1, -1, 0)),
    }
    cases = [Case(_tf_pickle(directory / f"dtype_state_{name}.pkl", {"4x4/Dense/weight": ForgedArray(
        (1, (4, 48), ForgedDType(code, state), False, bytes(4 * 48 * 4)))}), "error")
        for name, (code, state) in states.items()]
    layouts = {
        "shape_larger_than_data": (1, (10 ** 6, 10 ** 6), np.dtype("f4"), False, bytes(16)),
        "shape_negative": (1, (-4,), np.dtype("f4"), False, bytes(16)),
        "shape_float": (1, (2.5,), np.dtype("f4"), False, bytes(16)),
        "shape_many_dimensions": (1, (1,) * 40, np.dtype("f4"), False, bytes(4)),
        "data_not_bytes": (1, (1,), np.dtype("f4"), False, 12345),
        "dtype_not_dtype": (1, (1,), "f4", False, bytes(4)),
    }
    cases += [Case(_tf_pickle(directory / f"array_state_{name}.pkl",
                              {"4x4/Dense/weight": ForgedArray(state)}), "error")
              for name, state in layouts.items()]
    return cases


def _bomb(kind: str, levels: int, width: int = 2) -> Any:
    """`levels` nested containers of `width` references to the one below: width**levels leaves
    from a pickle of a few hundred bytes."""
    node: Any = [0]
    for _ in range(levels):
        node = {"list": lambda n: [n] * width, "tuple": lambda n: (n,) * width,
                "dict": lambda n: {str(i): n for i in range(width)}}[kind](node)
    return node


def shared_references_and_nesting(directory: Path) -> list[Case]:
    files = [
        _tf_pickle(directory / "bomb_list_2pow29.pkl", {"4x4/Dense/weight": _bomb("list", 29)}),
        _tf_pickle(directory / "bomb_tuple_2pow29.pkl", {"4x4/Dense/bias": _bomb("tuple", 29)}),
        _tf_pickle(directory / "bomb_dict_2pow29.pkl", {"lod": _bomb("dict", 29)}),
        _raw(directory / "bomb_top_level.pkl", pickle.dumps(_bomb("list", 40), protocol=2)),
        # Shallow enough for the depth limit: only the expansion count stops these.
        _tf_pickle(directory / "bomb_wide_list_8pow9.pkl",
                   {"4x4/Dense/weight": _bomb("list", 9, width=8)}),
        _raw(directory / "bomb_wide_dict_16pow7_top_level.pkl",
             pickle.dumps(_bomb("dict", 7, width=16), protocol=4)),
    ]
    bomb_pth = directory / "bomb_in_torch_file.pth"
    torch.save({"layer0.weight": _bomb("list", 29)}, bomb_pth)
    legacy_bomb = directory / "bomb_in_legacy_torch_file.pth"
    torch.save({"generator": _bomb("dict", 29)}, legacy_bomb, _use_new_zipfile_serialization=False)
    # One 1 MB byte string, memoised once, used as the data of 5000 arrays (5 GB).
    shared = bytes(1 << 20)
    shared_data = {f"{i}x{i}/Shared/weight": ForgedArray((1, (1 << 18,), np.dtype("f4"), False,
                                                          shared)) for i in range(5000)}
    files += [bomb_pth, legacy_bomb, _tf_pickle(directory / "bomb_shared_array_data.pkl",
                                                shared_data)]
    cycle: list = []
    cycle.append(cycle)
    files.append(_tf_pickle(directory / "cycle.pkl", {"4x4/Dense/weight": cycle}))
    depth = 100_000  # EMPTY_LIST x depth, then APPEND x (depth - 1): lists nested 100000 deep
    files.append(_raw(directory / "deep_lists.pkl",
                      b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."))
    # EMPTY_DICT, then (key, EMPTY_DICT) x (depth - 1), then SETITEM x (depth - 1)
    files.append(_raw(directory / "deep_dicts.pkl", b"\x80\x02}" + b"X\x01\x00\x00\x00k}" * (depth - 1)
                      + b"s" * (depth - 1) + b"."))
    files.append(_raw(directory / "opcode_flood.pkl", b"\x80\x02" + b"N0" * 3_000_000 + b"N."))
    files.append(_raw(directory / "long4_huge_int.pkl",
                      b"\x80\x02\x8b" + struct.pack("<i", 1 << 20) + b"\x01" * (1 << 20) + b"."))
    return [Case(path, "error") for path in files]


def _safetensors_with_config(path: Path, config: Any, **header: Any) -> Path:
    generator = PGGANGenerator(PGGANConfig(TINY.resolution, TINY.channels, TINY.latent))
    tensors = {name: tensor.contiguous() for name, tensor in generator.state_dict().items()}
    metadata = {"format": "ganprior-pggan", "version": 1, "config": config, **header}
    save_file(tensors, str(path), metadata={"ganprior": json.dumps(metadata)})
    return path


def _safetensors_raw(path: Path, header: dict, data: bytes) -> Path:
    text = json.dumps(header).encode()
    return _raw(path, struct.pack("<Q", len(text)) + text + data)


def architecture_claims(directory: Path) -> list[Case]:
    valid = {"resolution": 8, "channels": [4, 3], "latent_dim": 4, "fused_scale": False}
    configs = {
        "resolution_1e6": {**valid, "resolution": 10 ** 6},
        "resolution_2pow20": {**valid, "resolution": 2 ** 20, "channels": [4] * 19},
        "resolution_3": {**valid, "resolution": 3},
        "resolution_negative": {**valid, "resolution": -8},
        "resolution_text": {**valid, "resolution": "8"},
        "resolution_float": {**valid, "resolution": 8.5},
        "resolution_bool": {**valid, "resolution": True},
        "channels_1e6": {**valid, "channels": [10 ** 6, 10 ** 6]},
        "channels_1e5_consistent": {**valid, "channels": [10 ** 5, 10 ** 5]},
        "channels_zero": {**valid, "channels": [0, 0]},
        "channels_negative": {**valid, "channels": [-4, 3]},
        "channels_not_list": {**valid, "channels": 4},
        "channels_floats": {**valid, "channels": [4.0, 3.0]},
        "latent_1e6": {**valid, "latent_dim": 10 ** 6},
        "latent_zero": {**valid, "latent_dim": 0},
        "latent_negative": {**valid, "latent_dim": -4},
        "fused_text": {**valid, "fused_scale": "yes"},
        "config_list": [8, [4, 3]],
        "config_missing": None,
    }
    files = [_safetensors_with_config(directory / f"safetensors_{name}.safetensors", config)
             for name, config in configs.items()]
    deep = "[" * 100_000 + "]" * 100_000
    files.append(_raw(directory / "safetensors_deep_json.safetensors", _deep_metadata_file(deep)))
    files.append(_safetensors_raw(directory / "safetensors_huge_tensor.safetensors", {
        "__metadata__": {"ganprior": json.dumps({"format": "ganprior-pggan", "version": 1,
                                                 "config": valid})},
        "layers.0.conv.weight": {"dtype": "F32", "shape": [10 ** 6, 10 ** 6],
                                 "data_offsets": [0, 4 * 10 ** 12]}}, bytes(64)))
    files.append(_raw(directory / "safetensors_header_length_2pow40.safetensors",
                      struct.pack("<Q", 1 << 40) + b'{"a": 1}' + bytes(64)))
    # Pickles and torch files: sizes claimed by (zero-byte or small) arrays and layouts.
    files += [
        _tf_pickle(directory / "tf_latent_zero.pkl",
                   {"4x4/Dense/weight": np.zeros((0, 64), np.float32)}),
        _tf_pickle(directory / "tf_channels_1e5_zero_bytes.pkl",
                   {"4x4/Conv/weight": np.zeros((3, 3, 0, 10 ** 5), np.float32)}),
        _tf_pickle(directory / "tf_resolution_2pow40.pkl",
                   {f"{2 ** 40}x{2 ** 40}/Conv1/weight": np.zeros((1,), np.float32)}),
    ]
    for name, resolution in {"1e9": 10 ** 9, "negative": -16, "text": "16", "2pow40": 2 ** 40}.items():
        params = theano_param_values(TINY, np.random.default_rng(0), True)
        state = theano_network_state(TINY, params, True)
        state["build_func_spec"]["resolution"] = resolution
        files.append(nvidia_pickle(directory / f"theano_resolution_{name}.pkl", state,
                                   network_module="network", python2=True))
    zoo = genforce_zoo_state_dict(TINY, np.random.default_rng(0))
    zero_channels = {**zoo, "layer1.weight": torch.zeros(0, 0, 3, 3)}
    zero_latent = {**zoo, "layer0.weight": torch.zeros(4, 0, 4, 4)}
    for name, state in {"zoo_zero_channels": zero_channels, "zoo_zero_latent": zero_latent}.items():
        torch.save(state, directory / f"{name}.pth")
        files.append(directory / f"{name}.pth")
    storage = _Storage("0", 4)
    claims = {
        "size_1e6_squared": (storage, 0, (10 ** 6, 10 ** 6), (10 ** 6, 1)),
        "offset_past_storage": (storage, 100, (4,), (1,)),
        "offset_negative": (storage, -2, (2,), (1,)),
        "stride_negative": (storage, 3, (4,), (-1,)),
        "stride_out_of_bounds": (storage, 0, (4,), (2,)),
        "size_stride_mismatch": (storage, 0, (2, 2), (1,)),
        "size_float": (storage, 0, (4.0,), (1,)),
    }
    for name, (store, offset, size, stride) in claims.items():
        files.append(write_torch_zip(directory / f"pth_{name}.pth", {
            "layer1.weight": _TensorClaim(store, offset, size, stride)}, {"0": bytes(16)}))
    files.append(write_torch_zip(directory / "pth_storage_claims_1e12.pth", {
        "layer1.weight": _TensorClaim(_Storage("0", 10 ** 12), 0, (10 ** 6,), (1,))},
        {"0": bytes(16)}))
    files.append(write_torch_zip(directory / "pth_storage_missing.pth", {
        "layer1.weight": _TensorClaim(_Storage("7", 4), 0, (4,), (1,))}, {}))
    files.append(write_torch_zip(directory / "pth_storage_type_unknown.pth", {
        "layer1.weight": _TensorClaim(_Storage("0", 4, "ComplexFloatStorage"), 0, (4,), (1,))},
        {"0": bytes(32)}))
    legacy = directory / "legacy_storage_count_1e12.pth"
    torch.save(genforce_zoo_state_dict(TINY, np.random.default_rng(0)), legacy,
               _use_new_zipfile_serialization=False)
    data = bytearray(legacy.read_bytes())
    # The first storage's int64 element count follows the pickled key list; find it by value.
    count = genforce_zoo_state_dict(TINY, np.random.default_rng(0))
    first = len(data) - sum(8 + tensor.numel() * 4 for tensor in count.values())
    data[first:first + 8] = struct.pack("<q", 10 ** 12)
    files.append(_raw(legacy, bytes(data)))
    return [Case(path, "error") for path in files]


def stylegan2_claims(directory: Path) -> list[Case]:
    """StyleGAN2 files whose init_kwargs / static_kwargs / training args claim sizes their 8x8
    weights do not have (huge, negative, text)."""
    nvidia = random_state(8, [16, 16], 4, 4, 2, seed=3)
    plan = dict(resolution=8, channel_base=128, channel_max=16, z_dim=4, w_dim=4, mapping_layers=2)
    files = []
    for name, change in {"resolution_2pow40": {"resolution": 2 ** 40}, "resolution_3":
                         {"resolution": 3}, "resolution_text": {"resolution": "8"},
                         "channels_1e9": {"channel_base": 10 ** 12, "channel_max": 10 ** 9},
                         "z_1e9": {"z_dim": 10 ** 9}, "w_negative": {"w_dim": -4},
                         "mapping_1e6": {"mapping_layers": 10 ** 6}}.items():
        path = directory / f"sg2ada_{name}.pkl"
        path.write_bytes(dumps(sg2ada_snapshot(nvidia, None, generator_kwargs(**{**plan, **change}))))
        files.append(path)
    for name, (resolution, static) in {
            "resolution_2pow40": (2 ** 40, {}), "resolution_16": (16, {}),
            "fmap_1e9": (8, {"fmap_base": 10 ** 12, "fmap_max": 10 ** 9}),
            "latent_1e9": (8, {"latent_size": 10 ** 9}), "dlatent_text": (8, {"dlatent_size": "4"}),
            "mapping_layers_1e6": (8, {"mapping_layers": 10 ** 6})}.items():
        files.append(tf_pickle(directory / f"sg2_tf_{name}.pkl",
                               tf_generator(nvidia, resolution, **static)))
    rosinality = rosinality_state(8, [16, 16], 4, 2, seed=4)
    for name, (size, n_mlp, latent) in {"size_2pow40": (2 ** 40, 2, 4), "n_mlp_1e6": (8, 10 ** 6, 4),
                                        "latent_1e9": (8, 2, 10 ** 9)}.items():
        files.append(rosinality_train_checkpoint(directory / f"rosinality_{name}.pt", rosinality,
                                                 rosinality, size, n_mlp, latent))
    return [Case(path, "error") for path in files]


def _deep_metadata_file(deep_json: str) -> bytes:
    header = {"__metadata__": {"ganprior": json.dumps({"format": "ganprior-pggan", "version": 1,
                                                       "config": "PLACEHOLDER"})}}
    text = json.dumps(header).replace('\\"PLACEHOLDER\\"', deep_json.replace('"', '\\"'))
    return struct.pack("<Q", len(text)) + text.encode()


def non_finite_weights(directory: Path) -> list[Case]:
    files = []
    for value, name in ((float("nan"), "nan"), (float("inf"), "inf")):
        zoo = genforce_zoo_state_dict(TINY, np.random.default_rng(0))
        zoo["layer1.weight"][0, 0, 0, 0] = value
        torch.save({"generator_smooth": zoo}, directory / f"zoo_{name}.pth")
        mganprior = genforce_state_dict(TINY, np.random.default_rng(0))
        mganprior["output1.wscale.bias"][1] = value
        torch.save(mganprior, directory / f"mganprior_{name}.pth")
        variables = tf_variables(TINY, np.random.default_rng(0))
        variables["4x4/Dense/weight"][0, 0] = value
        nvidia_pickle(directory / f"tf_{name}.pkl", tf_network_state(variables))
        params = theano_param_values(TINY, np.random.default_rng(0), True)
        params[1] = np.array(value, np.float32)  # the Dense layer's stored scale
        nvidia_pickle(directory / f"theano_{name}.pkl", theano_network_state(TINY, params, True),
                      network_module="network", python2=True)
        generator = PGGANGenerator(PGGANConfig(TINY.resolution, TINY.channels, TINY.latent))
        with torch.no_grad():
            generator.to_rgb.bias[0] = value
        save_generator(generator, directory / f"ganprior_{name}.safetensors")
        files += [directory / f"zoo_{name}.pth", directory / f"mganprior_{name}.pth",
                  directory / f"tf_{name}.pkl", directory / f"theano_{name}.pkl",
                  directory / f"ganprior_{name}.safetensors"]
    return [Case(path, "error") for path in files]


def valid_files(directory: Path) -> dict[str, Path]:
    """One small valid file per format, PGGAN and StyleGAN2 (also the seeds of the fuzz test)."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"valid_{name}" for name in (
        "ganprior.safetensors", "genforce.pth", "genforce_zoo.pth", "genforce_zoo_legacy.pth",
        "nvidia_tf.pkl", "nvidia_tf_numpy2_protocol5.pkl", "nvidia_theano.pkl")}
    save_generator(PGGANGenerator(PGGANConfig(TINY.resolution, TINY.channels, TINY.latent)),
                   paths["ganprior.safetensors"])
    torch.save(genforce_state_dict(TINY, rng), paths["genforce.pth"])
    torch.save({"generator": genforce_zoo_state_dict(TINY, rng),
                "generator_smooth": genforce_zoo_state_dict(TINY, rng)}, paths["genforce_zoo.pth"])
    torch.save(genforce_zoo_state_dict(TINY, rng), paths["genforce_zoo_legacy.pth"],
               _use_new_zipfile_serialization=False)
    nvidia_pickle(paths["nvidia_tf.pkl"], tf_network_state(tf_variables(TINY, rng)))
    nvidia_pickle(paths["nvidia_tf_numpy2_protocol5.pkl"],
                  tf_network_state(tf_variables(TINY, rng)), numpy_module=NUMPY_2, protocol=5)
    nvidia_pickle(paths["nvidia_theano.pkl"], theano_network_state(
        TINY, theano_param_values(TINY, rng, True), True), network_module="network", python2=True)
    paths.update({f"stylegan2_{name}": path for name, path in
                  valid_stylegan2_files(directory / "stylegan2").items()})
    return paths


def misnamed_files(directory: Path) -> list[Case]:
    cases = []
    for name, path in valid_files(directory / "sources").items():
        for suffix in (".safetensors", ".pth", ".pkl", ""):
            if not name.endswith(suffix or "\0"):
                misnamed = directory / f"misnamed_{name.replace('.', '_')}{suffix}"
                misnamed.write_bytes(path.read_bytes())
                cases.append(Case(misnamed, "loads"))
    return cases


def truncations(directory: Path) -> list[Case]:
    cases = []
    for name, path in valid_files(directory / "sources").items():
        data = path.read_bytes()
        for cut in sorted({1, 8, 12, 16, 100, len(data) // 2, len(data) - 16, len(data) - 1}):
            truncated = directory / f"truncated_{cut}_{name}"
            truncated.write_bytes(data[:cut])
            cases.append(Case(truncated, "error"))
    return cases


def payloads(directory: Path) -> list[Case]:
    """Pickles that would create `MARKER_NAME` in `directory` if anything in them ran."""
    marker = str(directory / MARKER_NAME)
    command = f"touch {marker}"
    system = Call(os.system, command)
    files = [_raw(directory / f"payload_system_protocol{protocol}.pkl",
                  pickle.dumps(system, protocol=protocol)) for protocol in range(6)]
    files += [
        _raw(directory / "payload_exec.pkl", pickle.dumps(Call(exec, f"open({marker!r}, 'w')"))),
        _raw(directory / "payload_eval.pkl", pickle.dumps(Call(eval, f"open({marker!r}, 'w')"))),
        _raw(directory / "payload_import.pkl", pickle.dumps(Call(__import__, "antigravity"))),
        _raw(directory / "payload_inst_opcode.pkl",
             b"(S'" + command.encode() + b"'\nios\nsystem\n."),
        _raw(directory / "payload_obj_opcode.pkl",
             b"\x80\x02(cos\nsystem\nX" + struct.pack("<I", len(command)) + command.encode()
             + b"o."),
        _raw(directory / "payload_ext_code.pkl", b"\x80\x02\x82\x01."),
        _raw(directory / "payload_persistent_id.pkl", b"\x80\x02X\x01\x00\x00\x00xQ."),
        _tf_pickle(directory / "payload_in_variables.pkl", {"lod": system}),
        _tf_pickle(directory / "payload_in_network_state.pkl",
                   {"4x4/Dense/weight": Call(PickledNetwork, {"x": system})}),
        # BUILD on an allowed function would write into its __dict__.
        _raw(directory / "payload_build_on_function.pkl",
             b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n}X\x08\x00\x00\x00__call__Nsb."),
    ]
    theano_params = theano_param_values(TINY, np.random.default_rng(0), True)
    theano_params[0] = system
    files.append(nvidia_pickle(directory / "payload_in_theano_params.pkl",
                               theano_network_state(TINY, theano_params, True),
                               network_module="network", python2=True))
    torch.save({"generator_smooth": {"layer0.weight": system}}, directory / "payload_zip.pth")
    torch.save({"layer0.weight": system}, directory / "payload_legacy.pth",
               _use_new_zipfile_serialization=False)
    files += [directory / "payload_zip.pth", directory / "payload_legacy.pth"]
    source_only = _tf_pickle(directory / "payload_as_build_module_src.pkl", {})
    state = tf_network_state(tf_variables(TINY, np.random.default_rng(0)),
                             build_module_src=f"import os\nos.system({command!r})\n")
    nvidia_pickle(source_only, state)  # data, never executed: the file loads
    return [Case(path, "error") for path in files] + [Case(source_only, "loads")]


CLASSES: dict[str, Callable[[Path], list[Case]]] = {
    "object-dtype arrays": object_dtype_arrays,
    "structured/void/other dtypes": unusual_dtypes,
    "forged dtype and array states": forged_dtype_states,
    "shared references, cycles, nesting, floods": shared_references_and_nesting,
    "architecture and size claims": architecture_claims,
    "StyleGAN2 architecture claims": stylegan2_claims,
    "NaN/inf weights": non_finite_weights,
    "misnamed valid files": misnamed_files,
    "truncations": truncations,
    "payloads (marker file)": payloads,
}


def write_good_inputs(inputs: Path, prior) -> None:
    """What the CLI tests feed every command: tiny.safetensors (`prior`), a 28x20 image.png, its
    mask.png with a 12x7 hole, and z.npy with two 32-long codes."""
    from PIL import Image

    from ganprior_core.checkpoints import save_generator
    save_generator(prior, inputs / "tiny.safetensors")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(inputs / "image.png")
    hole = np.zeros((20, 28), np.uint8)
    hole[5:12, 8:20] = 255
    Image.fromarray(hole).save(inputs / "mask.png")
    np.save(inputs / "z.npy", np.zeros((2, 32), np.float32))
