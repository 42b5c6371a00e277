"""Load pretrained PGGAN generators from the formats users download, and write this project's own.

Accepted (detected by the file's bytes, whatever its name or extension):
- genforce/genforce model-zoo PyTorch files (`pggan_<name><res>.pth`): a dict holding
  `generator_smooth` (the moving average, used when present) and/or `generator`, or such a state
  dict on its own, keys `layer{i}.weight`, `layer{i}.bias`, `output{j}.weight`, `output{j}.bias`;
- genforce / mGANprior PyTorch state dicts (`layer{i}.conv.weight`, `layer{i}.wscale.bias`, ...);
- NVIDIA's official pickles of (G, D, Gs), both the TensorFlow-era `tfutil.Network` state and the
  legacy Theano `network.Network` state, as written under numpy 1 or re-saved under numpy 2
  (protocol 5 included);
- this project's `.safetensors` (tensors in `PGGANGenerator` naming + a JSON header).

No file is trusted. PyTorch files and pickles are read by `torch_file` and `safe_pickle`, which
never run anything from the file and let only plain numeric arrays out, with bounded sizes. Every
architecture value (resolution, channels, latent size, fused upsampling) is checked for type and
range and against the shapes of the weights present before a network is built, and every weight
must be finite. Any failure is a `CheckpointError`: one line naming the file, the problem and the
accepted formats.

facebookresearch pytorch_GAN_zoo PGAN checkpoints are recognised and refused: their format layer is
an `nn.Linear` with one bias per output position (16 per channel), which the PGGAN network here
(one bias per channel, as in NVIDIA's and genforce's models) cannot represent exactly.

Layouts and scales follow the public code: NVIDIA progressive_growing_of_gans (networks.py,
tfutil.py, legacy.py; the Theano branch's network.py), genforce/mganprior
(models/pggan_generator*.py and its TF converter) and genforce/genforce (models/pggan_generator.py).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import safe_pickle, torch_file
from .files import UserFileError, require_regular_file
from .network import PGGANConfig, PGGANGenerator
from .safe_pickle import ForbiddenGlobal, UnsafePickle

CHECKPOINT_EXTENSIONS = (".pth", ".pt", ".pkl", ".safetensors")

GENFORCE = "genforce-pth"
GENFORCE_ZOO = "genforce-zoo-pth"
NVIDIA_TF = "nvidia-tf-pkl"
NVIDIA_THEANO = "nvidia-theano-pkl"
GANPRIOR = "ganprior"

ACCEPTED_FORMATS = (
    "genforce/genforce model-zoo PyTorch file (.pth; generator_smooth or generator, or a bare "
    "state dict)",
    "genforce/mGANprior PyTorch state dict (.pth)",
    "NVIDIA official PGGAN pickle, TensorFlow or Theano version (.pkl)",
    "ganprior .safetensors written by this project",
)

SAFETENSORS_KEY = "ganprior"
SAFETENSORS_FORMAT = "ganprior-pggan"
SAFETENSORS_VERSION = 1

# Limits on architecture claims, far above every published PGGAN (512 channels, latent 512,
# 23 M parameters) and far below what would exhaust memory.
MAX_CHANNELS = 4096
MAX_LATENT = 8192
MAX_PARAMETERS = 200_000_000
MAX_SAFETENSORS_HEADER_BYTES = 16 * 1024 * 1024


class CheckpointError(ValueError):
    """A file that is not a PGGAN generator this project can load."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        # One line, of bounded length: problems quote names and errors taken from the file.
        self.problem = problem = " ".join(problem.split())[:600]
        super().__init__(f"cannot load a PGGAN generator from '{path}': {problem}. "
                         f"Accepted formats: {'; '.join(ACCEPTED_FORMATS)}.")


class _Refused(Exception):
    """Raised inside the readers; load_checkpoint turns it into a CheckpointError naming the file."""


@dataclass
class _ReadCheckpoint:
    config: PGGANConfig
    state_dict: dict[str, torch.Tensor]  # PGGANGenerator naming and layouts
    source_format: str
    # Which network of the file was read ("generator_smooth", "Gs", ...), for the user to see;
    # None where the format holds only one.
    source_network: str | None
    # True when weights are stored already multiplied by their equalised-lr scale (Theano models,
    # TF models trained without use_wscale); the generator wants them unscaled.
    weights_include_scale: bool = False


@dataclass(frozen=True)
class LoadedCheckpoint:
    generator: PGGANGenerator
    source_format: str  # one of the *_pth / *_pkl names above, or GANPRIOR
    # Which network of the file was read: "generator_smooth", "generator", "bare state dict",
    # "Gs", ...; None where the format holds only one.
    source_network: str | None


# ---------------------------------------------------------------------------------------------
# Public API

def load_generator(path: str | os.PathLike) -> PGGANGenerator:
    """Read any accepted checkpoint into a PGGANGenerator (eval mode, CPU, float32)."""
    return load_checkpoint(path).generator


def load_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Read any accepted checkpoint, saying which format and which of its networks was used."""
    checkpoint = _read_checkpoint(path)
    try:
        _check_weights_fit(checkpoint.config, checkpoint.state_dict)
    except _Refused as refusal:
        raise CheckpointError(path, str(refusal)) from None
    generator = PGGANGenerator(checkpoint.config)
    state = checkpoint.state_dict
    if checkpoint.weights_include_scale:
        scales = {f"{name}.weight": module.scale for name, module in generator.named_modules()
                  if hasattr(module, "scale")}
        state = {name: tensor / scales[name] if name in scales else tensor
                 for name, tensor in state.items()}
    generator.load_state_dict(state)  # names and shapes were checked above
    return LoadedCheckpoint(generator.eval(), checkpoint.source_format,
                            checkpoint.source_network)


def save_generator(generator: PGGANGenerator, path: str | os.PathLike,
                   source_format: str = GANPRIOR, source_network: str | None = None,
                   extra_metadata: Mapping[str, Any] | None = None) -> None:
    """Write `generator` as this project's .safetensors.

    `extra_metadata` (JSON-serialisable) is merged into the JSON header; it cannot replace the
    keys that describe the network.
    """
    header = {**(extra_metadata or {}), "format": SAFETENSORS_FORMAT,
              "version": SAFETENSORS_VERSION, "config": generator.config.to_dict(),
              "source_format": source_format}
    if source_network is not None:
        header["source_network"] = source_network
    tensors = {name: tensor.detach().to("cpu", torch.float32).contiguous()
               for name, tensor in generator.state_dict().items()}
    path = Path(path)
    partial = path.with_name(path.name + ".partial")  # never leave a half-written model in a list
    save_file(tensors, str(partial), metadata={SAFETENSORS_KEY: json.dumps(header)})
    os.replace(partial, path)


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Convert any accepted checkpoint to this project's .safetensors."""
    loaded = load_checkpoint(source)
    save_generator(loaded.generator, destination, source_format=loaded.source_format,
                   source_network=loaded.source_network)


# ---------------------------------------------------------------------------------------------
# Detection

def _read_checkpoint(path: str | os.PathLike) -> _ReadCheckpoint:
    try:
        require_regular_file(path, "checkpoint file")
    except UserFileError as error:  # no file, a directory, a pipe (opening one would block)...
        raise CheckpointError(path, str(error).removeprefix(f"{path}: ")) from None
    try:
        with open(path, "rb") as file:
            head = file.read(16)
        if not head:
            raise _Refused("the file is empty")
        if _looks_like_safetensors(head, os.path.getsize(path)):
            return _read_safetensors(path, int.from_bytes(head[:8], "little"))
        with open(path, "rb") as file:
            data = file.read()
        if torch_file.looks_like_torch_file(head):
            return _read_torch_file(data)
        if _looks_like_pickle(head):
            return _read_nvidia_pickle(data)
        raise _Refused("it is damaged or not a checkpoint at all: its first bytes match none of "
                       "the accepted formats")
    except _Refused as refusal:
        raise CheckpointError(path, str(refusal)) from None
    except ForbiddenGlobal as refusal:
        raise CheckpointError(path, _forbidden_global_problem(refusal)) from None
    except UnsafePickle as refusal:
        raise CheckpointError(path, f"{refusal}; nothing in it was run") from None
    except Exception as error:  # truncated or damaged files fail deep inside the decoders
        raise CheckpointError(path, "it is damaged, truncated or not a checkpoint at all "
                                    f"({type(error).__name__}: {str(error)[:200]})") from None


def _looks_like_safetensors(head: bytes, file_size: int) -> bool:
    # 8-byte little-endian header length, then the JSON header itself.
    header_length = int.from_bytes(head[:8], "little")
    return len(head) > 8 and head[8:9] == b"{" and header_length <= file_size - 8


def _looks_like_pickle(head: bytes) -> bool:
    # Protocol 2+ pickles open with PROTO and their version; protocols 0 and 1 with the opcode
    # that starts their top-level object (a tuple, list, dict or global).
    return (head[0] == pickle.PROTO[0] and len(head) > 1 and head[1] <= pickle.HIGHEST_PROTOCOL
            or head[:1] in (b"(", b")", b"]", b"}", b"c"))


def _forbidden_global_problem(refusal: ForbiddenGlobal) -> str:
    if refusal.module == "models.utils.config":  # pytorch_GAN_zoo pickles its BaseConfig object
        return _GAN_ZOO_REFUSAL
    if refusal.module.startswith(("dnnlib", "torch_utils")):
        return _STYLEGAN_REFUSAL
    return str(refusal)


_STYLEGAN_REFUSAL = "it is a StyleGAN model, not a PGGAN generator; StyleGAN is not supported"


def _refuse_if_stylegan(name: str) -> None:
    if name.startswith(("dnnlib", "torch_utils", "mapping.", "synthesis.")):
        raise _Refused(_STYLEGAN_REFUSAL)


# ---------------------------------------------------------------------------------------------
# Architecture checks, shared by every format

def _check_config_values(config: PGGANConfig) -> None:
    channels = config.channels
    if not all(1 <= count <= MAX_CHANNELS for count in channels):
        raise _Refused(f"it claims channel counts {list(channels)}; each must be between 1 and "
                       f"{MAX_CHANNELS}")
    if not 1 <= config.latent_dim <= MAX_LATENT:
        raise _Refused(f"it claims a latent size of {config.latent_dim}; it must be between 1 "
                       f"and {MAX_LATENT}")


def _expected_shapes(config: PGGANConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of PGGANGenerator(config) and its shape, without building the network."""
    channels = config.channels
    shapes = {"layers.0.conv.weight": (channels[0], config.latent_dim, 4, 4),
              "layers.0.conv.bias": (channels[0],),
              "layers.1.conv.weight": (channels[0], channels[0], 3, 3),
              "layers.1.conv.bias": (channels[0],)}
    for block in range(1, len(channels)):
        previous, current = channels[block - 1], channels[block]
        if config.fused_scale:
            shapes[f"layers.{2 * block}.weight"] = (previous, current, 3, 3)
            shapes[f"layers.{2 * block}.bias"] = (current,)
        else:
            shapes[f"layers.{2 * block}.conv.weight"] = (current, previous, 3, 3)
            shapes[f"layers.{2 * block}.conv.bias"] = (current,)
        shapes[f"layers.{2 * block + 1}.conv.weight"] = (current, current, 3, 3)
        shapes[f"layers.{2 * block + 1}.conv.bias"] = (current,)
    shapes["to_rgb.weight"] = (3, channels[-1], 1, 1)
    shapes["to_rgb.bias"] = (3,)
    return shapes


def _check_shapes_fit(config: PGGANConfig, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse unless `shapes` are exactly those of a generator with `config` (checked before the
    network or, for .safetensors, the tensors are allocated)."""
    _check_config_values(config)
    expected = _expected_shapes(config)
    parameters = sum(math.prod(shape) for shape in expected.values())
    if parameters > MAX_PARAMETERS:
        raise _Refused(f"its architecture has {parameters} parameters, more than the "
                       f"{MAX_PARAMETERS} this loader accepts")
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise _Refused(f"its tensors do not fit a {config.resolution}x{config.resolution} PGGAN "
                       f"generator (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, shape in expected.items():
        if tuple(shapes[name]) != shape:
            raise _Refused(f"tensor '{name}' has shape {list(shapes[name])}, the architecture "
                           f"needs {list(shape)}")


def _check_weights_fit(config: PGGANConfig, state: Mapping[str, torch.Tensor]) -> None:
    _check_shapes_fit(config, {name: tuple(tensor.shape) for name, tensor in state.items()})


def _finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(tensor).all():
        raise _Refused(f"tensor '{name}' holds NaN or infinite values")
    return tensor


def _as_weight(name: str, value: Any) -> torch.Tensor:
    """A float32 tensor of a file's weight, refused unless it is a finite numeric array."""
    if isinstance(value, np.ndarray | np.generic):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor) or value.dtype == torch.bool or value.is_complex():
        raise _Refused(f"'{name}' is a {type(value).__name__}, not a numeric array")
    return _finite(name, value.float())


# ---------------------------------------------------------------------------------------------
# torch.save files: genforce state dicts (and pytorch_GAN_zoo, recognised to be refused)

_GAN_ZOO_REFUSAL = (
    "it is a facebookresearch pytorch_GAN_zoo PGAN checkpoint, which is not supported: its format "
    "layer has one bias per output position (16 per channel) that this PGGAN network cannot "
    "represent, so a conversion could not reproduce its images")

_ZOO_NETWORKS = ("generator_smooth", "generator")  # the moving average first, as genforce does


def _read_torch_file(data: bytes) -> _ReadCheckpoint:
    content = torch_file.read(data)
    if not isinstance(content, Mapping):
        raise _Refused(f"it holds a {type(content).__name__}, not a state dict")
    if "netG" in content or "avgG" in content:
        raise _Refused(_GAN_ZOO_REFUSAL)
    for network in _ZOO_NETWORKS:
        if network in content:
            weights = content[network]
            if not isinstance(weights, Mapping) or "layer0.weight" not in weights:
                raise _Refused(f"its '{network}' is not a genforce PGGAN state dict")
            return _convert_genforce_zoo(weights, network)
    if "layer0.weight" in content:
        return _convert_genforce_zoo(content, "bare state dict")
    if "layer0.conv.weight" in content:
        return _convert_genforce(content)
    for key in content:
        _refuse_if_stylegan(str(key))
    keys = ", ".join(str(key)[:40] for key in list(content)[:5])
    raise _Refused(f"it is a PyTorch file but not a genforce PGGAN generator "
                   f"(its keys begin {keys})")


def _convert_genforce(weights: Mapping[str, Any]) -> _ReadCheckpoint:
    _refuse_mid_training(weights.get("lod", 0.0))
    blocks = 0
    while f"layer{2 * blocks + 1}.conv.weight" in weights:
        blocks += 1
    fused = "layer2.weight" in weights  # genforce keeps Conv0_up as [k, k, in, out]

    def take(key: str) -> torch.Tensor:
        if key not in weights:
            raise _Refused(f"'{key}' is missing")
        return _as_weight(key, weights[key])

    state = {}
    for layer in range(2 * blocks):
        if fused and layer >= 2 and layer % 2 == 0:
            state[f"layers.{layer}.weight"] = take(f"layer{layer}.weight").permute(2, 3, 0, 1)
            state[f"layers.{layer}.bias"] = take(f"layer{layer}.wscale.bias")
        else:
            state[f"layers.{layer}.conv.weight"] = take(f"layer{layer}.conv.weight")
            state[f"layers.{layer}.conv.bias"] = take(f"layer{layer}.wscale.bias")
    state["to_rgb.weight"] = take(f"output{blocks - 1}.conv.weight")
    state["to_rgb.bias"] = take(f"output{blocks - 1}.wscale.bias")
    return _ReadCheckpoint(_infer_config(state, fused), state, GENFORCE, None)


def _convert_genforce_zoo(weights: Mapping[str, Any], network: str) -> _ReadCheckpoint:
    """genforce/genforce PGGANGenerator state dict -> PGGANGenerator state dict.

    Its ConvBlocks store weights unscaled (wscale = gain / sqrt(fan_in) is applied at run time,
    as here) and pixel-normalise their *input*, so block i+1's normalisation is this network's
    normalisation at the end of layer i, and output{j} normalises the last layer's activation
    before its 1x1 conv, as to_rgb's input already is here. Fused-scale up layers keep
    conv_transpose's [in, out, 3, 3] layout, which FusedUpConvLayer uses too. `lod` 0 means the
    last output{j} (resolution 4 * 2**j = R) makes the image.
    """
    _refuse_mid_training(weights.get("lod", 0.0))

    def take(key: str) -> torch.Tensor:
        if key not in weights:
            raise _Refused(f"'{key}' is missing from its {network}")
        return _as_weight(key, weights[key])

    blocks = 0
    while f"layer{2 * blocks + 1}.weight" in weights:
        blocks += 1
    if blocks == 0:
        raise _Refused(f"its {network} has no 'layer1.weight'")
    channels = [take(f"layer{2 * block + 1}.weight").shape[0] for block in range(blocks)]
    # The state dict does not record fused_scale; the up layers' shapes do wherever the channel
    # count changes: [out, in, 3, 3] for upsample + conv, [in, out, 3, 3] for the transposed conv.
    # Where no count changes the two read alike and the genforce default (not fused, as in all
    # official models) is taken.
    fused = any(
        tuple(take(f"layer{2 * block}.weight").shape[:2]) == (channels[block - 1], channels[block])
        for block in range(1, blocks) if channels[block - 1] != channels[block])
    state = {}
    for layer in range(2 * blocks):
        prefix = f"layers.{layer}." if fused and layer >= 2 and layer % 2 == 0 else \
            f"layers.{layer}.conv."
        state[prefix + "weight"] = take(f"layer{layer}.weight")
        state[prefix + "bias"] = take(f"layer{layer}.bias")
    state["to_rgb.weight"] = take(f"output{blocks - 1}.weight")
    state["to_rgb.bias"] = take(f"output{blocks - 1}.bias")
    return _ReadCheckpoint(_infer_config(state, fused), state, GENFORCE_ZOO, network)


def _refuse_mid_training(lod: Any) -> None:
    try:
        lod = float(np.asarray(lod, dtype=np.float64))
    except (TypeError, ValueError):
        raise _Refused(f"its lod is {str(lod)[:40]}, not a number") from None
    if lod != 0:
        raise _Refused(f"it was saved mid-training (lod = {lod:g}, still fading in a resolution); "
                       "only finished generators (lod 0) are supported")


def _infer_config(state: Mapping[str, torch.Tensor], fused: bool) -> PGGANConfig:
    """Architecture from the shapes of a state dict in PGGANGenerator naming."""
    dense = state["layers.0.conv.weight"]  # [C, latent, 4, 4]
    if dense.ndim != 4 or tuple(dense.shape[2:]) != (4, 4):
        raise _Refused(f"the first layer has shape {tuple(dense.shape)}, not a 4x4 dense kernel")
    blocks = 0
    while f"layers.{2 * blocks + 1}.conv.weight" in state:
        blocks += 1
    channels = tuple(state[f"layers.{2 * b + 1}.conv.weight"].shape[0] for b in range(blocks))
    if state["to_rgb.weight"].ndim < 1 or state["to_rgb.weight"].shape[0] != 3:
        raise _Refused(f"it makes {list(state['to_rgb.weight'].shape)[:1]}-channel images; only "
                       "RGB generators are supported")
    try:
        config = PGGANConfig(4 * 2 ** (blocks - 1), channels, int(dense.shape[1]), fused)
    except ValueError as error:
        raise _Refused(str(error)) from None
    _check_weights_fit(config, state)
    return config


# ---------------------------------------------------------------------------------------------
# NVIDIA pickles

class _PickledNetwork:
    """Stand-in for tfutil.Network / network.Network: keeps the pickled state, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


_NETWORK_CLASSES = {("tfutil", "Network"): _PickledNetwork,
                    ("network", "Network"): _PickledNetwork}  # the Theano code's class


def _read_nvidia_pickle(data: bytes) -> _ReadCheckpoint:
    # Theano-era pickles are Python 2 byte strings; safe_pickle decodes them as latin1, as
    # NVIDIA's own loader does.
    content = safe_pickle.load(data, _NETWORK_CLASSES)
    if isinstance(content, tuple) and len(content) == 3 and all(
            isinstance(item, _PickledNetwork) for item in content):
        network, network_name = content[2], "Gs"  # the moving average NVIDIA samples from
    elif isinstance(content, _PickledNetwork):
        network, network_name = content, "single network"
    else:
        raise _Refused(f"the pickle holds a {type(content).__name__}, not NVIDIA's (G, D, Gs) "
                       "networks")
    state = network.state
    if not isinstance(state, dict):
        raise _Refused("the pickled network has no state dict")
    if "version" in state:
        return replace(_convert_tf_state(state), source_network=network_name)
    if "build_func_spec" in state:
        return replace(_convert_theano_state(state), source_network=network_name)
    raise _Refused("the pickled network is neither a TensorFlow-era nor a Theano-era PGGAN")


# Options of NVIDIA's G_paper that change the maths; the values here are the ones this network has.
_TF_FIXED_OPTIONS = {"label_size": 0, "normalize_latents": True, "use_pixelnorm": True,
                     "use_leakyrelu": True, "pixelnorm_epsilon": 1e-8}
_THEANO_FIXED_OPTIONS = {"label_size": 0, "normalize_latents": True, "use_pixelnorm": True,
                         "use_leakyrelu": True, "use_batchnorm": False, "tanh_at_end": None}


def _refuse_other_options(options: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    for option, supported in fixed.items():
        value = options.get(option, supported)
        if value != supported:
            raise _Refused(f"it was built with {option}={value!r}, which this PGGAN network "
                           f"does not implement (it needs {option}={supported!r})")


def _refuse_non_generator(function_name: Any) -> None:
    if str(function_name).startswith("D"):
        raise _Refused(f"the network is a discriminator ({function_name}), not a generator")
    raise _Refused(f"the network is built by {function_name!r}, not by PGGAN's generator G_paper")


def _convert_tf_state(state: Mapping[str, Any]) -> _ReadCheckpoint:
    if state["version"] != 2:
        raise _Refused(f"its tfutil.Network state has version {state['version']}, not 2")
    if state.get("build_func_name") != "G_paper":  # build_module_src is never executed
        _refuse_non_generator(state.get("build_func_name"))
    options = state.get("static_kwargs") or {}
    _refuse_other_options(options, _TF_FIXED_OPTIONS)
    variables = dict(state["variables"])
    _refuse_mid_training(variables.get("lod", 0.0))
    use_wscale = options.get("use_wscale", True)  # G_paper's default
    return _convert_tf_variables(variables, NVIDIA_TF, weights_include_scale=not use_wscale)


def _convert_theano_state(state: Mapping[str, Any]) -> _ReadCheckpoint:
    """Theano param_values -> TF variable names and layouts, then the TF conversion."""
    spec = state["build_func_spec"]
    if not isinstance(spec, dict):
        raise _Refused("its build_func_spec is not a dict")
    if spec.get("func") not in ("G_paper", "G_progressive_8"):
        _refuse_non_generator(spec.get("func"))
    _refuse_other_options(spec, _THEANO_FIXED_OPTIONS)
    _refuse_mid_training((state.get("toplevel_params") or {}).get("cur_lod", 0.0))
    resolution = spec.get("resolution", 32)  # the Theano G_paper default
    if type(resolution) is not int or resolution not in _RESOLUTIONS:
        raise _Refused(f"its build_func_spec claims resolution {str(resolution)[:40]}; it must be "
                       f"one of {list(_RESOLUTIONS)}")
    use_wscale = spec.get("use_wscale", True)
    params = [np.asarray(value) for value in state["param_values"]]
    # Dense, Conv, then Conv0 and Conv1 per resolution 8..R, then toRGB per resolution.
    layers = 3 * (int(math.log2(resolution)) - 1)
    expected = layers * (3 if use_wscale else 2)  # (weight, scale, bias) or (weight, bias)
    if len(params) != expected:
        raise _Refused(f"a {resolution}x{resolution} Theano generator has {expected} parameter "
                       f"arrays, this one has {len(params)}")
    arrays = iter(params)

    def effective(weight: np.ndarray) -> np.ndarray:
        # Theano stored weights normalised, with the scale as a separate scalar parameter.
        if not use_wscale:
            return weight
        scale = float(next(arrays))
        if not math.isfinite(scale):
            raise _Refused(f"a Theano weight scale is {scale}, not a finite number")
        return weight * scale

    def conv(name: str) -> list[tuple[str, np.ndarray]]:
        # Lasagne convolves (flipping the kernel), TF correlates;
        # [out, in, kh, kw] -> [kh, kw, in, out] with both spatial axes reversed.
        weight = effective(next(arrays).transpose(2, 3, 1, 0)[::-1, ::-1])
        return [(f"{name}/weight", weight), (f"{name}/bias", next(arrays))]

    dense_kernel = next(arrays)  # [C, latent, 4, 4], applied with 'full' padding to a 1x1 input
    variables = [("4x4/Dense/weight", effective(
        dense_kernel.transpose(1, 0, 2, 3).reshape(dense_kernel.shape[1], -1))),
        ("4x4/Dense/bias", next(arrays)), *conv("4x4/Conv")]
    for res_log2 in range(3, int(math.log2(resolution)) + 1):
        variables += conv(f"{2 ** res_log2}x{2 ** res_log2}/Conv0")
        variables += conv(f"{2 ** res_log2}x{2 ** res_log2}/Conv1")
    to_rgb = effective(next(arrays)[np.newaxis, np.newaxis])  # NIN weights are [in, out]
    variables += [("ToRGB_lod0/weight", to_rgb), ("ToRGB_lod0/bias", next(arrays))]
    return _convert_tf_variables(dict(variables), NVIDIA_THEANO, weights_include_scale=True)


_RESOLUTIONS = tuple(2 ** power for power in range(3, 11))
_TF_SCOPE = re.compile(r"(\d+)x\1/")


def _convert_tf_variables(variables: Mapping[str, Any], source_format: str,
                          weights_include_scale: bool) -> _ReadCheckpoint:
    """NVIDIA TF variable names and layouts -> PGGANGenerator state dict."""
    if any(name.startswith("FromRGB") for name in variables):
        raise _Refused("the network is a discriminator, not a generator")

    def take(name: str) -> torch.Tensor:
        if name not in variables:
            raise _Refused(f"variable '{name}' is missing")
        return _as_weight(name, variables[name])

    def conv_kernel(name: str) -> torch.Tensor:
        return take(name).permute(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]

    resolutions = [int(match.group(1)) for match in map(_TF_SCOPE.match, variables) if match]
    resolution = max(resolutions, default=4)
    blocks = int(math.log2(resolution)) - 1
    if 4 * 2 ** (blocks - 1) != resolution:
        raise _Refused(f"its variables describe a {resolution}x{resolution} network, "
                       "not a power of two")
    fused = "8x8/Conv0_up/weight" in variables
    dense = take("4x4/Dense/weight")  # [latent, C * 16]; output reshaped to [C, 4, 4]
    if dense.ndim != 2 or 0 in dense.shape or dense.shape[1] % 16:
        raise _Refused(f"variable '4x4/Dense/weight' has shape {list(dense.shape)}, not "
                       "[latent, channels * 16] with both sizes positive")
    latent = dense.shape[0]
    state = {
        # A 4x4 kernel with padding 3 on a 1x1 input reads the kernel reversed.
        "layers.0.conv.weight": dense.reshape(latent, -1, 4, 4).permute(1, 0, 2, 3).flip(2, 3),
        "layers.0.conv.bias": take("4x4/Dense/bias"),
        "layers.1.conv.weight": conv_kernel("4x4/Conv/weight"),
        "layers.1.conv.bias": take("4x4/Conv/bias"),
    }
    for block in range(1, blocks):
        scope = f"{4 * 2 ** block}x{4 * 2 ** block}"
        if fused:
            # conv2d_transpose kernel [kh, kw, out, in] -> conv_transpose2d layout [in, out, kh, kw]
            fused_kernel = take(f"{scope}/Conv0_up/weight")
            state[f"layers.{2 * block}.weight"] = fused_kernel.permute(3, 2, 0, 1)
            state[f"layers.{2 * block}.bias"] = take(f"{scope}/Conv0_up/bias")
        else:
            state[f"layers.{2 * block}.conv.weight"] = conv_kernel(f"{scope}/Conv0/weight")
            state[f"layers.{2 * block}.conv.bias"] = take(f"{scope}/Conv0/bias")
        state[f"layers.{2 * block + 1}.conv.weight"] = conv_kernel(f"{scope}/Conv1/weight")
        state[f"layers.{2 * block + 1}.conv.bias"] = take(f"{scope}/Conv1/bias")
    state["to_rgb.weight"] = conv_kernel("ToRGB_lod0/weight")
    state["to_rgb.bias"] = take("ToRGB_lod0/bias")
    return _ReadCheckpoint(_infer_config(state, fused), state, source_format, "Gs",
                           weights_include_scale)


# ---------------------------------------------------------------------------------------------
# This project's .safetensors

def _read_safetensors(path: str | os.PathLike, header_length: int) -> _ReadCheckpoint:
    """The JSON header and the architecture it claims are checked against the tensors' declared
    shapes (safetensors itself checks their byte ranges against the file) before any tensor is
    read."""
    if header_length > MAX_SAFETENSORS_HEADER_BYTES:
        raise _Refused(f"its safetensors header claims {header_length} bytes, more than the "
                       f"{MAX_SAFETENSORS_HEADER_BYTES} a PGGAN's header needs")
    with safe_open(str(path), framework="pt") as file:
        header_text = (file.metadata() or {}).get(SAFETENSORS_KEY)
        if header_text is None:
            raise _Refused(f"this .safetensors file has no '{SAFETENSORS_KEY}' metadata, so it was "
                           "not written by this project and its architecture is unknown")
        try:
            header = json.loads(header_text)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than json allows
            raise _Refused("its ganprior metadata is not valid JSON of a sane depth") from None
        if not isinstance(header, dict):
            raise _Refused("its ganprior metadata is not a JSON object")
        if header.get("format") != SAFETENSORS_FORMAT:
            raise _Refused(f"its metadata describes format {str(header.get('format'))[:40]!r}, "
                           f"not {SAFETENSORS_FORMAT!r}")
        if header.get("version") != SAFETENSORS_VERSION:
            raise _Refused(f"it is version {str(header.get('version'))[:40]!r} of the ganprior "
                           f"format; this code reads version {SAFETENSORS_VERSION}")
        config = _config_from_metadata(header.get("config"))
        _check_shapes_fit(config, {name: tuple(file.get_slice(name).get_shape())
                                   for name in file.keys()})
        state = {name: _finite(name, file.get_tensor(name).float()) for name in file.keys()}
    network = header.get("source_network")
    return _ReadCheckpoint(config, state, str(header.get("source_format", GANPRIOR))[:80],
                           None if network is None else str(network)[:80])


def _config_from_metadata(config: Any) -> PGGANConfig:
    """PGGANConfig from the JSON header, refusing anything but the exact types it is written
    with (PGGANConfig.from_dict would turn 16.7 or "16" into 16, and true into 1)."""
    def is_int(value: Any) -> bool:
        return type(value) is int

    if not isinstance(config, dict):
        raise _Refused("its architecture metadata is missing or not a JSON object")
    resolution, channels = config.get("resolution"), config.get("channels")
    latent, fused = config.get("latent_dim", 512), config.get("fused_scale", False)
    if not (is_int(resolution) and isinstance(channels, list) and all(map(is_int, channels))
            and is_int(latent) and type(fused) is bool):
        raise _Refused("its architecture metadata has values of the wrong type (resolution, "
                       "latent_dim and channels must be integers, fused_scale true or false)")
    if resolution not in _RESOLUTIONS:
        raise _Refused(f"its metadata claims resolution {resolution}; it must be one of "
                       f"{list(_RESOLUTIONS)}")
    try:
        config = PGGANConfig(resolution, tuple(channels), latent, fused)
    except ValueError as error:
        raise _Refused(f"its architecture metadata is invalid ({error})") from None
    _check_config_values(config)
    return config
