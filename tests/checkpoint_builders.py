"""Write small PGGAN checkpoints with the structure of the real formats, from known random weights.

Each builder produces the weights in the format's own names and layouts (not by converting a
PGGANGenerator), so tests can compare the loader against a forward pass written from that format's
definition. The layouts follow /work/shared/reference/CHECKPOINTS.md.
"""
from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Arch:
    resolution: int = 16
    channels: tuple[int, ...] = (12, 10, 8)  # per resolution 4, 8, ..., resolution
    latent: int = 16
    fused: bool = False

    @property
    def resolutions(self) -> list[int]:
        return [4 * 2 ** block for block in range(len(self.channels))]


SMALL = Arch()
SMALL_FUSED = Arch(resolution=32, channels=(12, 10, 8, 6), latent=8, fused=True)


def load_refused(path, *fragments: str) -> str:
    """Assert that loading `path` is a one-line CheckpointError naming the file, every accepted
    format and each of `fragments`; return the message."""
    import pytest

    from ganprior_core.checkpoints import ACCEPTED_FORMATS, CheckpointError, load_generator
    with pytest.raises(CheckpointError) as caught:
        load_generator(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert message.startswith(f"cannot load a GAN prior from '{path}'")
    assert all(description in message for description in ACCEPTED_FORMATS)
    for fragment in fragments:
        assert fragment in message, message
    return message


def _normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# genforce / mGANprior state dict

def genforce_state_dict(arch: Arch, rng: np.random.Generator, lod: float = 0.0) -> dict:
    """`layer{i}.conv.weight` [out, in, k, k], fused `layer{i}.weight` [k, k, in, out], ..."""
    state: dict[str, torch.Tensor] = {"lod": torch.tensor(lod)}
    tensor = lambda *shape: torch.from_numpy(_normal(rng, *shape))  # noqa: E731
    previous = arch.latent
    for block, channels in enumerate(arch.channels):
        first, second = f"layer{2 * block}", f"layer{2 * block + 1}"
        if block == 0:
            state[f"{first}.conv.weight"] = tensor(channels, arch.latent, 4, 4)
        elif arch.fused:
            state[f"{first}.weight"] = tensor(3, 3, previous, channels)
        else:
            state[f"{first}.conv.weight"] = tensor(channels, previous, 3, 3)
        state[f"{first}.wscale.bias"] = tensor(channels)
        state[f"{second}.conv.weight"] = tensor(channels, channels, 3, 3)
        state[f"{second}.wscale.bias"] = tensor(channels)
        state[f"output{block}.conv.weight"] = tensor(3, channels, 1, 1)
        state[f"output{block}.wscale.bias"] = tensor(3)
        previous = channels
    return state


# ---------------------------------------------------------------------------------------------
# genforce/genforce model zoo (models/pggan_generator.py): no .conv / .wscale level

def genforce_zoo_state_dict(arch: Arch, rng: np.random.Generator, lod: float = 0.0) -> dict:
    """`layer{i}.weight` [out, in, k, k] (fused up layers: conv_transpose's [in, out, 3, 3]),
    `layer{i}.bias`, `output{j}.weight` [3, C, 1, 1], `output{j}.bias`, `lod`; unscaled."""
    state: dict[str, torch.Tensor] = {"lod": torch.tensor(lod)}
    tensor = lambda *shape: torch.from_numpy(_normal(rng, *shape))  # noqa: E731
    previous = arch.latent
    for block, channels in enumerate(arch.channels):
        first, second = f"layer{2 * block}", f"layer{2 * block + 1}"
        if block == 0:
            state[f"{first}.weight"] = tensor(channels, arch.latent, 4, 4)
        elif arch.fused:
            state[f"{first}.weight"] = tensor(previous, channels, 3, 3)
        else:
            state[f"{first}.weight"] = tensor(channels, previous, 3, 3)
        state[f"{first}.bias"] = tensor(channels)
        state[f"{second}.weight"] = tensor(channels, channels, 3, 3)
        state[f"{second}.bias"] = tensor(channels)
        state[f"output{block}.weight"] = tensor(3, channels, 1, 1)
        state[f"output{block}.bias"] = tensor(3)
        previous = channels
    return state


# ---------------------------------------------------------------------------------------------
# NVIDIA TensorFlow-era tfutil.Network state

def tf_variables(arch: Arch, rng: np.random.Generator, lod: float = 0.0) -> dict[str, np.ndarray]:
    """Gs variables: Dense [latent, C*16], convs [kh, kw, in, out], Conv0_up [kh, kw, out, in]."""
    variables = {"lod": np.float32(lod)}
    c0 = arch.channels[0]
    variables["4x4/Dense/weight"] = _normal(rng, arch.latent, c0 * 16)
    variables["4x4/Dense/bias"] = _normal(rng, c0)
    variables["4x4/Conv/weight"] = _normal(rng, 3, 3, c0, c0)
    variables["4x4/Conv/bias"] = _normal(rng, c0)
    for block in range(1, len(arch.channels)):
        scope = f"{arch.resolutions[block]}x{arch.resolutions[block]}"
        previous, channels = arch.channels[block - 1], arch.channels[block]
        if arch.fused:
            variables[f"{scope}/Conv0_up/weight"] = _normal(rng, 3, 3, channels, previous)
            variables[f"{scope}/Conv0_up/bias"] = _normal(rng, channels)
        else:
            variables[f"{scope}/Conv0/weight"] = _normal(rng, 3, 3, previous, channels)
            variables[f"{scope}/Conv0/bias"] = _normal(rng, channels)
        variables[f"{scope}/Conv1/weight"] = _normal(rng, 3, 3, channels, channels)
        variables[f"{scope}/Conv1/bias"] = _normal(rng, channels)
    for block, channels in enumerate(arch.channels):
        lod_index = len(arch.channels) - 1 - block
        variables[f"ToRGB_lod{lod_index}/weight"] = _normal(rng, 1, 1, channels, 3)
        variables[f"ToRGB_lod{lod_index}/bias"] = _normal(rng, 3)
    return variables


def tf_network_state(variables: dict[str, np.ndarray], name: str = "Gs",
                     build_func_name: str = "G_paper", static_kwargs: dict | None = None,
                     build_module_src: str = "def G_paper(*args, **kwargs): pass\n") -> dict:
    return {"version": 2, "name": name, "static_kwargs": dict(static_kwargs or {}),
            "build_module_src": build_module_src, "build_func_name": build_func_name,
            "variables": list(variables.items())}


def tf_discriminator_variables(arch: Arch, rng: np.random.Generator) -> dict[str, np.ndarray]:
    c_last = arch.channels[-1]
    return {"lod": np.float32(0.0), "FromRGB_lod0/weight": _normal(rng, 1, 1, 3, c_last),
            "FromRGB_lod0/bias": _normal(rng, c_last),
            "4x4/Dense1/weight": _normal(rng, arch.channels[0], 1)}


# ---------------------------------------------------------------------------------------------
# NVIDIA Theano-era network.Network state

def theano_param_values(arch: Arch, rng: np.random.Generator, use_wscale: bool) -> list:
    """Lasagne param order: Dense, Conv, Conv0/Conv1 per resolution, toRGB lod 0, 1, ...

    Conv weights are [out, in, kh, kw] (Lasagne convolves, flipping them); the Dense is a 4x4
    'full' conv [C, latent, 4, 4]; toRGB (NIN) weights are [in, 3]. With use_wscale each weight is
    followed by its scalar scale (a 0-d array, as Theano's get_value returns).
    """
    params: list = []

    def layer(*weight_shape: int) -> None:
        weight = _normal(rng, *weight_shape)
        fan_in = np.prod(weight_shape[:1] if len(weight_shape) == 2 else weight_shape[1:])
        # Without wscale the weights are used as stored, at the scale of Lasagne's He init.
        params.append(weight if use_wscale else weight * np.float32(np.sqrt(2 / fan_in)))
        if use_wscale:
            params.append(np.array(abs(rng.standard_normal()) * 0.3 + 0.05, dtype=np.float32))
        params.append(_normal(rng, weight_shape[1] if len(weight_shape) == 2 else weight_shape[0]))

    c0 = arch.channels[0]
    layer(c0, arch.latent, 4, 4)
    layer(c0, c0, 3, 3)
    for block in range(1, len(arch.channels)):
        layer(arch.channels[block], arch.channels[block - 1], 3, 3)
        layer(arch.channels[block], arch.channels[block], 3, 3)
    for channels in reversed(arch.channels):
        layer(channels, 3)
    return params


def theano_network_state(arch: Arch, params: list, use_wscale: bool, cur_lod: float = 0.0,
                         func: str = "G_paper") -> dict:
    spec = {"func": func, "resolution": arch.resolution, "num_channels": 3, "label_size": 0,
            "use_wscale": use_wscale, "fmap_base": 4096, "fmap_max": 256}
    return {"build_func_spec": spec, "build_module_src": "import theano\n",
            "param_values": params, "toplevel_params": {"cur_lod": np.float32(cur_lod)}}


# ---------------------------------------------------------------------------------------------
# Pickles with chosen global names

class PickledNetwork:
    """Pickles as NEWOBJ + BUILD(state), the way tfutil.Network / network.Network objects do."""

    def __init__(self, state: dict) -> None:
        self._state = state

    def __getstate__(self) -> dict:
        return self._state


NUMPY_1 = "numpy.core.multiarray"
NUMPY_2 = "numpy._core.multiarray"


class _NamedGlobalsPickler(pickle._Pickler):  # the pure-Python pickler lets us choose opcodes
    def __init__(self, file, protocol: int, global_names: dict, python2_strings: bool) -> None:
        super().__init__(file, protocol=protocol)
        self.global_names = global_names
        self.python2_strings = python2_strings

    def save_global(self, obj: Any, name: str | None = None) -> None:
        for candidate, (module, qualname) in self.global_names.items():
            if candidate is obj:
                self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
                self.memoize(obj)
                return
        super().save_global(obj, name)

    def save_py2_string(self, data: bytes) -> None:
        # Python 2 `str` (bytes): what cPickle wrote for array data, dict keys and names.
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_bytes(self, obj: bytes) -> None:
        if self.python2_strings:
            self.save_py2_string(obj)
        else:
            pickle._Pickler.save_bytes(self, obj)

    def _save_str(self, obj: str) -> None:
        if self.python2_strings and obj.isascii():
            self.save_py2_string(obj.encode("ascii"))
        else:
            pickle._Pickler.save_str(self, obj)

    dispatch[bytes] = _save_bytes
    dispatch[str] = _save_str


def write_pickle(path: Path, obj: Any, *, network_module: str = "tfutil",
                 numpy_module: str = NUMPY_1, python2: bool = False,
                 extra_names: dict | None = None, protocol: int = 4) -> Path:
    """Pickle `obj`; PickledNetwork pickles as `{network_module}.Network`, numpy's array helpers
    as `{numpy_module}._reconstruct` / `.scalar`. python2=True writes a protocol-2 pickle with
    Python 2 byte strings (what NVIDIA's Theano code produced), readable only with latin1.
    protocol=5 lets the installed numpy pickle arrays its own way (numpy 2: `_frombuffer` with
    in-band buffers), as a file re-saved under numpy 2 has them."""
    reconstruct, _, _ = np.empty(0).__reduce__()
    scalar, _ = np.float32(0).__reduce__()
    names = {PickledNetwork: (network_module, "Network"),
             reconstruct: (numpy_module, "_reconstruct"), scalar: (numpy_module, "scalar"),
             **(extra_names or {})}
    with open(path, "wb") as file:
        _NamedGlobalsPickler(file, 2 if python2 else protocol, names, python2).dump(obj)
    return path


def nvidia_pickle(path: Path, gs_state: dict, **options: Any) -> Path:
    """(G, D, Gs) like NVIDIA's downloads; G is Gs again, D a small discriminator stand-in."""
    d_state = dict(gs_state, name="D", build_func_name="D_paper") if "version" in gs_state else \
        dict(gs_state, build_func_spec={**gs_state["build_func_spec"], "func": "D_paper"})
    return write_pickle(path, (PickledNetwork(gs_state), PickledNetwork(d_state),
                               PickledNetwork(gs_state)), **options)

