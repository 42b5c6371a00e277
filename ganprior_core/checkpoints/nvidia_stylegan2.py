"""NVIDIA's PyTorch StyleGAN2 network pickles (stylegan2-ada-pytorch and the stylegan3
repository): training snapshots `{'training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe', ...}`
and the files legacy.py writes (the same dict layout).

Each network there is a `torch_utils.persistence` object. Its class reduces to
`_reconstruct_persistent_obj(meta)`, meta = {'type': 'class', 'version': ..., 'module_src': the
source text of its Python module, 'class_name': 'Generator', 'state': the module's __dict__},
where that state holds `_parameters`, `_buffers` and `_modules` (OrderedDicts; submodules are
persistent objects too), `_init_args`, `_init_kwargs` and plain attributes. The module source is
never run: only `class_name` and `state` are read. Tensors are `torch._utils._rebuild_tensor_v2`
over storages pickled as `torch.storage._load_from_bytes(b'...')`, each a nested legacy
`torch.save` stream, read by torch_file's bounded reader. Every nested stream and every tensor
built over one is charged to budgets of the outer file's size: a stream referenced many times is
parsed once (memoised by identity) and cannot be made into more tensor bytes than the file holds.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

import torch

from . import safe_pickle, torch_file
from .common import NVIDIA_SG2ADA, ReadCheckpoint, Refused
from .safe_pickle import UnsafePickle
from .stylegan2_layout import claimed_int, claimed_positive, infer_config

_MARGIN = 1024
# Distinct nested storage streams a file may hold: a 1024x1024 snapshot (G, G_ema, D, augment
# pipe) has under a thousand tensors; each stream costs about a millisecond to parse.
MAX_NESTED_STORAGES = 20_000


class _PersistentObject:
    """Stand-in for torch_utils.persistence._reconstruct_persistent_obj(meta): keeps the meta
    dict as data; the module source in it is never compiled or run."""

    def __init__(self, meta: Any = None, *extra: Any) -> None:
        if not isinstance(meta, dict) or extra:
            raise UnsafePickle("a torch_utils.persistence object in it has no meta dict")
        self.state = meta

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickle("the pickle sets the state of a persistent object, which NVIDIA's "
                           "pickles never do")


class _EasyDict(dict):
    """dnnlib.util.EasyDict (a dict subclass): its items only."""

    def __setstate__(self, state: Any) -> None:
        if state:
            raise UnsafePickle("a dnnlib EasyDict in it carries attribute state")


class _NestedStorage:
    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat


class _Budget:
    """The bytes of nested storages and of tensors built over them, each at most the outer
    file's size, plus the memo of nested streams already parsed."""

    def __init__(self, file_bytes: int) -> None:
        self.storages = safe_pickle.Allowance(file_bytes + _MARGIN)
        self.tensors = safe_pickle.Allowance(file_bytes + _MARGIN)
        self.parsed: dict[int, tuple[Any, _NestedStorage]] = {}


def _classes(budget: _Budget) -> dict[tuple[str, str], Any]:
    def load_from_bytes(data: Any, *extra: Any) -> _NestedStorage:
        if not isinstance(data, bytes) or extra:
            raise UnsafePickle("torch.storage._load_from_bytes is given something other than "
                               "bytes")
        known = budget.parsed.get(id(data))
        if known is not None:
            return known[1]
        if len(budget.parsed) >= MAX_NESTED_STORAGES:
            raise UnsafePickle(f"it holds more than {MAX_NESTED_STORAGES} tensor storages, far "
                               "more than any StyleGAN2 snapshot")
        budget.storages.spend(len(data))
        storage = _NestedStorage(torch_file.read_storage_stream(data))
        budget.parsed[id(data)] = (data, storage)  # keeps `data` alive, so its id stays unique
        return storage

    def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any,
                       *rest: Any) -> torch.Tensor:
        if not isinstance(storage, _NestedStorage):
            raise UnsafePickle("a tensor in it has no storage")
        size, stride = safe_pickle.checked_shape(size), safe_pickle.checked_shape(stride)
        if type(offset) is not int or offset < 0 or len(size) != len(stride) or len(rest) > 3:
            raise UnsafePickle(f"a tensor in it has an invalid layout (offset {str(offset)[:20]}, "
                               f"size {size}, stride {stride})")
        flat = storage.flat
        count = math.prod(size)
        if count:
            last = offset + sum((extent - 1) * step for extent, step in zip(size, stride))
            if last >= flat.numel():
                raise UnsafePickle(f"a tensor of size {size} reaches element {last} of a "
                                   f"storage of {flat.numel()}")
        budget.tensors.spend(count * flat.element_size())
        if not count:
            return torch.empty(size, dtype=flat.dtype)
        return flat.as_strided(size, stride, offset)  # a view: strides (channels-last) kept

    def rebuild_parameter(data: Any, *_rest: Any) -> torch.Tensor:
        if not isinstance(data, torch.Tensor):
            raise UnsafePickle("a parameter in it holds no tensor")
        return data

    def make_set(items: Any = (), *extra: Any) -> set:
        if not isinstance(items, list | tuple) or extra or not all(
                isinstance(item, str) for item in items):
            raise UnsafePickle("a set in it holds something other than names")
        return set(items)

    return {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _PersistentObject,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("collections", "OrderedDict"): torch_file._StateDict,
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): load_from_bytes,
        ("builtins", "set"): make_set,
    }


ALLOWED_GLOBALS = tuple(f"{module}.{name}" for module, name in _classes(_Budget(0)))

_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                   "synthesis_kwargs")
# stylegan3-repository-only options of its alias-free generator
_SG3_OPTIONS = ("magnitude_ema_beta", "conv_kernel", "use_radial_filters", "num_critical",
                "first_cutoff", "first_stopband", "last_stopband_rel", "margin_size",
                "output_scale")
_SG3_LAYER = re.compile(r"L\d+_\d+_\d+")


def read_sg2ada_pickle(data: bytes) -> ReadCheckpoint:
    budget = _Budget(len(data))
    content = safe_pickle.load(data, _classes(budget), leaf_types=(torch.Tensor,))
    if isinstance(content, _PersistentObject):
        content = {"G_ema": content}  # a bare network, pickled on its own
    if not isinstance(content, dict):
        raise Refused(f"the pickle holds a {type(content).__name__}, not NVIDIA's dict of "
                       "networks (G, D, G_ema)")
    if isinstance(content.get("G_ema"), _PersistentObject):
        network, source_network = content["G_ema"], "G_ema"
    elif isinstance(content.get("G"), _PersistentObject):
        network, source_network = content["G"], "G (the file has no G_ema, the moving average)"
    else:
        networks = [str(key)[:20] for key, value in content.items()
                    if isinstance(value, _PersistentObject)]
        raise Refused(f"the pickle holds no generator (no G_ema or G; its networks: "
                       f"{', '.join(networks[:6]) or 'none'})")
    meta = _meta(network, "the generator")
    if meta["class_name"] != "Generator":
        raise Refused(f"its generator is a {meta['class_name'][:40]!r}, not NVIDIA's StyleGAN2 "
                       "Generator")
    kwargs = _init_kwargs(meta["state"])
    state = meta["state"]
    modules = _dict(state, "_modules")
    _refuse_stylegan3(kwargs, modules)
    mapping_kwargs = _kwargs_dict(kwargs.get("mapping_kwargs", {}), "mapping_kwargs")
    # stylegan2-ada passes synthesis options as synthesis_kwargs, the stylegan3 repository's
    # networks_stylegan2.Generator as further keyword arguments.
    synthesis_kwargs = {key: value for key, value in kwargs.items() if key not in _GENERATOR_ARGS}
    synthesis_kwargs.update(_kwargs_dict(kwargs.get("synthesis_kwargs", {}), "synthesis_kwargs"))

    c_dim = kwargs.get("c_dim", 0)
    if c_dim not in (0, None):
        raise Refused(f"it is a conditional generator (c_dim = {str(c_dim)[:20]}); only "
                       "unconditional StyleGAN2 generators are supported")
    architectures = [synthesis_kwargs.get("architecture", "skip")]  # init kwargs, each block
    for block in _dict(_meta(modules.get("synthesis"), "the synthesis network")["state"],
                       "_modules").values():
        if isinstance(block, _PersistentObject):
            architectures.append(_meta(block, "a synthesis block")["state"].get("architecture",
                                                                                "skip"))
    architecture = next((value for value in architectures if value != "skip"), "skip")
    if architecture != "skip":
        raise Refused(f"its synthesis network has the {str(architecture)[:20]!r} architecture; "
                       "only StyleGAN2's 'skip' generator (config F) is supported")
    for name, options in (("mapping", mapping_kwargs), ("synthesis", synthesis_kwargs)):
        activation = options.get("activation", "lrelu")
        if activation != "lrelu":
            raise Refused(f"its {name} network uses the {str(activation)[:20]!r} activation, "
                           "not lrelu")
    if synthesis_kwargs.get("use_noise", True) is not True:
        raise Refused("its synthesis network was built without noise inputs (use_noise=False)")

    tensors = _flatten(network)
    if "mapping.embed.weight" in tensors:
        raise Refused("it is a conditional generator (it has a label embedding); only "
                       "unconditional StyleGAN2 generators are supported")
    lr_multiplier = claimed_positive("mapping lr_multiplier",
                                     mapping_kwargs.get("lr_multiplier", 0.01))
    conv_clamp = claimed_positive("conv_clamp", synthesis_kwargs.get("conv_clamp"),
                                  allow_none=True)
    config = infer_config(tensors, lr_multiplier, conv_clamp)
    _check_claims(config, kwargs, mapping_kwargs, synthesis_kwargs)
    return ReadCheckpoint(config, tensors, NVIDIA_SG2ADA, source_network)


def _meta(network: Any, what: str) -> dict:
    if not isinstance(network, _PersistentObject):
        raise Refused(f"{what} is missing or not a persistent network object")
    meta = network.state
    if meta.get("type") != "class" or not isinstance(meta.get("class_name"), str) \
            or not isinstance(meta.get("state"), dict) \
            or not isinstance(meta.get("module_src"), str):
        raise Refused(f"{what} has a malformed persistence record (type, class_name, "
                       "module_src, state)")
    return meta


def _dict(state: Mapping[str, Any], key: str) -> dict:
    value = state.get(key, {})
    if not isinstance(value, dict):
        raise Refused(f"a network's {key} is a {type(value).__name__}, not a dict")
    return value


def _kwargs_dict(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refused(f"its {name} is a {type(value).__name__}, not a dict")
    return value


def _init_kwargs(state: Mapping[str, Any]) -> dict:
    args = state.get("_init_args", ())
    kwargs = state.get("_init_kwargs", {})
    if not isinstance(args, tuple | list) or not isinstance(kwargs, dict) \
            or len(args) > len(_GENERATOR_ARGS):
        raise Refused("its generator's init_args / init_kwargs are malformed")
    return {**dict(zip(_GENERATOR_ARGS, args)), **kwargs}


def _refuse_stylegan3(kwargs: Mapping[str, Any], modules: Mapping[str, Any]) -> None:
    synthesis = modules.get("synthesis")
    sg3 = any(option in kwargs for option in _SG3_OPTIONS)
    if isinstance(synthesis, _PersistentObject) and isinstance(synthesis.state.get("state"),
                                                               dict):
        synthesis_state = synthesis.state["state"]
        children = synthesis_state.get("_modules", {})
        sg3 = sg3 or "layer_names" in synthesis_state or (isinstance(children, dict) and (
            "input" in children or any(_SG3_LAYER.fullmatch(str(name)) for name in children)))
    if sg3:
        raise Refused("it is a StyleGAN3 (alias-free) generator, which is not supported; only "
                       "StyleGAN2 'skip' generators are read")


def _flatten(network: _PersistentObject) -> dict[str, torch.Tensor]:
    """The state dict torch would give: parameters and persistent buffers, by dotted name."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(module: Any, prefix: str, depth: int) -> None:
        if depth > 8:
            raise Refused("its networks are nested deeper than a StyleGAN2 generator's")
        state = _meta(module, f"module '{prefix or 'G'}'")["state"]
        skipped = state.get("_non_persistent_buffers_set") or set()
        if not isinstance(skipped, set):
            skipped = set()
        for group in ("_parameters", "_buffers"):
            for name, tensor in _dict(state, group).items():
                if tensor is None or (group == "_buffers" and name in skipped):
                    continue
                if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
                    raise Refused(f"'{prefix}{str(name)[:40]}' is not a tensor")
                tensors[prefix + name] = tensor
        for name, child in _dict(state, "_modules").items():
            if child is not None:
                walk(child, f"{prefix}{name}.", depth + 1)

    walk(network, "", 0)
    return tensors


def _check_claims(config: Any, kwargs: Mapping[str, Any], mapping_kwargs: Mapping[str, Any],
                  synthesis_kwargs: Mapping[str, Any]) -> None:
    """The architecture the generator was built with must be the one its weights have."""
    claims = {"z_dim": (kwargs.get("z_dim"), config.z_dim),
              "w_dim": (kwargs.get("w_dim"), config.w_dim),
              "img_resolution": (kwargs.get("img_resolution"), config.resolution),
              "img_channels": (kwargs.get("img_channels"), config.img_channels),
              "mapping num_layers": (mapping_kwargs.get("num_layers"), config.mapping_layers)}
    base = synthesis_kwargs.get("channel_base", 32768)
    top = synthesis_kwargs.get("channel_max", 512)
    base = claimed_int("channel_base", base, 1, 2 ** 40)
    top = claimed_int("channel_max", top, 1, 2 ** 40)
    planned = [min(base // res, top) for res in config.resolutions]
    if planned != list(config.channels):
        raise Refused(f"its init_kwargs plan channels {planned[:10]} (channel_base {base}, "
                       f"channel_max {top}) but its weights have {list(config.channels)[:10]}")
    for name, (claimed, actual) in claims.items():
        if claimed is None:
            continue
        if claimed_int(name, claimed, 0, 2 ** 20) != actual:
            raise Refused(f"its init_kwargs claim {name} = {claimed} but its weights have "
                           f"{actual}")
