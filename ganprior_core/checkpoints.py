"""Load pretrained PGGAN generators from the formats users download, and write this project's own.

Accepted (detected by content, not by extension):
- genforce / mGANprior PyTorch state dicts (`layer{i}.conv.weight`, `layer{i}.wscale.bias`, ...);
- NVIDIA's official pickles of (G, D, Gs), both the TensorFlow-era `tfutil.Network` state and the
  legacy Theano `network.Network` state. They are read with a restricted unpickler that knows only
  numpy arrays and a stand-in for the network class, so nothing in the file is ever run;
- this project's `.safetensors` (tensors in `PGGANGenerator` naming + a JSON header).

facebookresearch pytorch_GAN_zoo PGAN checkpoints are recognised and refused: their format layer is
an `nn.Linear` with one bias per output position (16 per channel), which the PGGAN network here
(one bias per channel, as in NVIDIA's and genforce's models) cannot represent exactly.

Layouts and scales follow the public code: NVIDIA progressive_growing_of_gans (networks.py,
tfutil.py, legacy.py; the Theano branch's network.py) and genforce/mganprior
(models/pggan_generator*.py and its TF converter).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .network import PGGANConfig, PGGANGenerator

try:  # numpy >= 2 moved the array-reconstruction helpers; old pickles still name numpy.core
    from numpy._core import multiarray as _numpy_multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _numpy_multiarray

CHECKPOINT_EXTENSIONS = (".pth", ".pt", ".pkl", ".safetensors")

GENFORCE = "genforce-pth"
NVIDIA_TF = "nvidia-tf-pkl"
NVIDIA_THEANO = "nvidia-theano-pkl"
GANPRIOR = "ganprior"

ACCEPTED_FORMATS = (
    "genforce/mGANprior PyTorch state dict (.pth)",
    "NVIDIA official PGGAN pickle, TensorFlow or Theano version (.pkl)",
    "ganprior .safetensors written by this project",
)

SAFETENSORS_KEY = "ganprior"
SAFETENSORS_FORMAT = "ganprior-pggan"
SAFETENSORS_VERSION = 1

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save since 1.6
_LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]  # torch.save before 1.6


class CheckpointError(ValueError):
    """A file that is not a PGGAN generator this project can load."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"cannot load a PGGAN generator from '{path}': {problem}. "
                         f"Accepted formats: {'; '.join(ACCEPTED_FORMATS)}.")


class _Refused(Exception):
    """Raised inside the readers; load_generator turns it into a CheckpointError naming the file."""


@dataclass
class _ReadCheckpoint:
    config: PGGANConfig
    state_dict: dict[str, torch.Tensor]  # PGGANGenerator naming and layouts
    source_format: str
    # True when weights are stored already multiplied by their equalised-lr scale (Theano models,
    # TF models trained without use_wscale); the generator wants them unscaled.
    weights_include_scale: bool = False


# ---------------------------------------------------------------------------------------------
# Public API

def load_generator(path: str | os.PathLike) -> PGGANGenerator:
    """Read any accepted checkpoint into a PGGANGenerator (eval mode, CPU, float32)."""
    return _load(path)[0]


def save_generator(generator: PGGANGenerator, path: str | os.PathLike,
                   source_format: str = GANPRIOR,
                   extra_metadata: Mapping[str, Any] | None = None) -> None:
    """Write `generator` as this project's .safetensors.

    `extra_metadata` (JSON-serialisable) is merged into the JSON header; it cannot replace the
    keys that describe the network.
    """
    header = {**(extra_metadata or {}), "format": SAFETENSORS_FORMAT,
              "version": SAFETENSORS_VERSION, "config": generator.config.to_dict(),
              "source_format": source_format}
    tensors = {name: tensor.detach().to("cpu", torch.float32).contiguous()
               for name, tensor in generator.state_dict().items()}
    path = Path(path)
    partial = path.with_name(path.name + ".partial")  # never leave a half-written model in a list
    save_file(tensors, str(partial), metadata={SAFETENSORS_KEY: json.dumps(header)})
    os.replace(partial, path)


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Convert any accepted checkpoint to this project's .safetensors."""
    generator, source_format = _load(source)
    save_generator(generator, destination, source_format=source_format)


# ---------------------------------------------------------------------------------------------
# Detection

def _load(path: str | os.PathLike) -> tuple[PGGANGenerator, str]:
    checkpoint = _read_checkpoint(path)
    generator = PGGANGenerator(checkpoint.config)
    state = checkpoint.state_dict
    if checkpoint.weights_include_scale:
        scales = {f"{name}.weight": module.scale for name, module in generator.named_modules()
                  if hasattr(module, "scale")}
        state = {name: tensor / scales[name] if name in scales else tensor
                 for name, tensor in state.items()}
    try:
        generator.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(path, f"its weights do not fit a PGGAN generator ({error})") from None
    return generator.eval(), checkpoint.source_format


def _read_checkpoint(path: str | os.PathLike) -> _ReadCheckpoint:
    if not os.path.isfile(path):
        raise CheckpointError(path, "no such file")
    try:
        with open(path, "rb") as file:
            head = file.read(16)
        if not head:
            raise _Refused("the file is empty")
        if head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_TORCH_MAGIC):
            return _read_torch_file(path)
        if _looks_like_safetensors(head):
            return _read_safetensors(path)
        return _read_nvidia_pickle(path)
    except _Refused as refusal:
        raise CheckpointError(path, str(refusal)) from None
    except Exception as error:  # truncated or damaged files fail deep inside the decoders
        raise CheckpointError(path, "it is damaged, truncated or not a checkpoint at all "
                                    f"({type(error).__name__}: {error})") from error


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length, then the JSON header itself.
    header_length = int.from_bytes(head[:8], "little")
    return len(head) > 8 and head[8:9] == b"{" and header_length < 100_000_000


def _refuse_if_stylegan(name: str) -> None:
    if name.startswith(("dnnlib", "torch_utils", "mapping.", "synthesis.")):
        raise _Refused("it is a StyleGAN model, not a PGGAN generator; StyleGAN is not supported")


# ---------------------------------------------------------------------------------------------
# torch.save files: genforce state dicts (and pytorch_GAN_zoo, recognised to be refused)

_GAN_ZOO_REFUSAL = (
    "it is a facebookresearch pytorch_GAN_zoo PGAN checkpoint, which is not supported: its format "
    "layer has one bias per output position (16 per channel) that this PGGAN network cannot "
    "represent, so a conversion could not reproduce its images")


def _read_torch_file(path: str | os.PathLike) -> _ReadCheckpoint:
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "models.utils.config" in str(error):  # pytorch_GAN_zoo pickles its BaseConfig object
            raise _Refused(_GAN_ZOO_REFUSAL) from None
        raise _Refused("it holds Python objects other than tensors, which are not loaded for "
                       f"safety; nothing in it was run (torch said: {error})") from None
    if not isinstance(content, Mapping):
        raise _Refused(f"it holds a {type(content).__name__}, not a state dict")
    if "netG" in content or "avgG" in content:
        raise _Refused(_GAN_ZOO_REFUSAL)
    if "layer0.conv.weight" in content:
        return _convert_genforce(content)
    for key in content:
        _refuse_if_stylegan(str(key))
    keys = ", ".join(list(map(str, content))[:5])
    raise _Refused(f"it is a PyTorch file but not a genforce PGGAN generator "
                   f"(its keys begin {keys})")


def _convert_genforce(weights: Mapping[str, torch.Tensor]) -> _ReadCheckpoint:
    _refuse_mid_training(weights.get("lod", 0.0))
    blocks = 0
    while f"layer{2 * blocks + 1}.conv.weight" in weights:
        blocks += 1
    fused = "layer2.weight" in weights  # genforce keeps Conv0_up as [k, k, in, out]

    def take(key: str) -> torch.Tensor:
        if key not in weights:
            raise _Refused(f"'{key}' is missing")
        return weights[key].float()

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
    return _ReadCheckpoint(_infer_config(state, fused), state, GENFORCE)


def _refuse_mid_training(lod: Any) -> None:
    lod = float(np.asarray(lod, dtype=np.float64))
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
    if state["to_rgb.weight"].shape[0] != 3:
        raise _Refused(f"it makes {state['to_rgb.weight'].shape[0]}-channel images; only RGB "
                       "generators are supported")
    try:
        return PGGANConfig(4 * 2 ** (blocks - 1), channels, int(dense.shape[1]), fused)
    except ValueError as error:
        raise _Refused(str(error)) from None


# ---------------------------------------------------------------------------------------------
# NVIDIA pickles

class _PickledNetwork:
    """Stand-in for tfutil.Network / network.Network: keeps the pickled state, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


_ALLOWED_PICKLE_GLOBALS = {
    **{(module, name): getattr(_numpy_multiarray, name)
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")
       for name in ("_reconstruct", "scalar")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("tfutil", "Network"): _PickledNetwork,
    ("network", "Network"): _PickledNetwork,  # the Theano code's class
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_PICKLE_GLOBALS.get((module, name))
        if allowed is None:
            _refuse_if_stylegan(module)
            raise _Refused(f"the pickle asks for '{module}.{name}', which PGGAN weights never "
                           "need; it was refused and nothing in the file was run")
        return allowed


def _read_nvidia_pickle(path: str | os.PathLike) -> _ReadCheckpoint:
    with open(path, "rb") as file:
        # NVIDIA's own loader uses latin1: Theano-era pickles are Python 2 byte strings.
        content = _RestrictedUnpickler(file, encoding="latin1").load()
    if isinstance(content, tuple) and len(content) == 3 and all(
            isinstance(item, _PickledNetwork) for item in content):
        network = content[2]  # (G, D, Gs): Gs is the moving average NVIDIA samples from
    elif isinstance(content, _PickledNetwork):
        network = content
    else:
        raise _Refused(f"the pickle holds a {type(content).__name__}, not NVIDIA's (G, D, Gs) "
                       "networks")
    state = network.state
    if not isinstance(state, dict):
        raise _Refused("the pickled network has no state dict")
    if "version" in state:
        return _convert_tf_state(state)
    if "build_func_spec" in state:
        return _convert_theano_state(state)
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
    if spec.get("func") not in ("G_paper", "G_progressive_8"):
        _refuse_non_generator(spec.get("func"))
    _refuse_other_options(spec, _THEANO_FIXED_OPTIONS)
    _refuse_mid_training((state.get("toplevel_params") or {}).get("cur_lod", 0.0))
    resolution = int(spec.get("resolution", 32))  # the Theano G_paper default
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
        return weight * float(next(arrays)) if use_wscale else weight

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


_TF_SCOPE = re.compile(r"(\d+)x\1/")


def _convert_tf_variables(variables: Mapping[str, Any], source_format: str,
                          weights_include_scale: bool) -> _ReadCheckpoint:
    """NVIDIA TF variable names and layouts -> PGGANGenerator state dict."""
    if any(name.startswith("FromRGB") for name in variables):
        raise _Refused("the network is a discriminator, not a generator")

    def take(name: str) -> torch.Tensor:
        if name not in variables:
            raise _Refused(f"variable '{name}' is missing")
        return torch.from_numpy(np.ascontiguousarray(variables[name], dtype=np.float32))

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
    return _ReadCheckpoint(_infer_config(state, fused), state, source_format, weights_include_scale)


# ---------------------------------------------------------------------------------------------
# This project's .safetensors

def _read_safetensors(path: str | os.PathLike) -> _ReadCheckpoint:
    with safe_open(str(path), framework="pt") as file:
        header_text = (file.metadata() or {}).get(SAFETENSORS_KEY)
        if header_text is None:
            raise _Refused(f"this .safetensors file has no '{SAFETENSORS_KEY}' metadata, so it was "
                           "not written by this project and its architecture is unknown")
        state = {name: file.get_tensor(name).float() for name in file.keys()}
    header = json.loads(header_text)
    if header.get("format") != SAFETENSORS_FORMAT:
        raise _Refused(f"its metadata describes format {header.get('format')!r}, "
                       f"not {SAFETENSORS_FORMAT!r}")
    if header.get("version") != SAFETENSORS_VERSION:
        raise _Refused(f"it is version {header.get('version')!r} of the ganprior format; this "
                       f"code reads version {SAFETENSORS_VERSION}")
    try:
        config = PGGANConfig.from_dict(header["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise _Refused(f"its architecture metadata is invalid ({error})") from None
    return _ReadCheckpoint(config, state, str(header.get("source_format", GANPRIOR)))
