"""NVIDIA's official PGGAN pickles of (G, D, Gs): the TensorFlow-era `tfutil.Network` state and
the legacy Theano `network.Network` state. The pickled build code is never run."""
from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any, Mapping

import numpy as np
import torch

from . import safe_pickle
from .common import NVIDIA_TF, NVIDIA_THEANO, ReadCheckpoint, Refused, as_weight
from .pggan_layout import RESOLUTIONS, infer_config, refuse_mid_training


class _PickledNetwork:
    """Stand-in for tfutil.Network / network.Network: keeps the pickled state, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


_NETWORK_CLASSES = {("tfutil", "Network"): _PickledNetwork,
                    ("network", "Network"): _PickledNetwork}  # the Theano code's class


def read_nvidia_pickle(data: bytes) -> ReadCheckpoint:
    # Theano-era pickles are Python 2 byte strings; safe_pickle decodes them as latin1, as
    # NVIDIA's own loader does.
    content = safe_pickle.load(data, _NETWORK_CLASSES)
    if isinstance(content, tuple) and len(content) == 3 and all(
            isinstance(item, _PickledNetwork) for item in content):
        network, network_name = content[2], "Gs"  # the moving average NVIDIA samples from
    elif isinstance(content, _PickledNetwork):
        network, network_name = content, "single network"
    else:
        raise Refused(f"the pickle holds a {type(content).__name__}, not NVIDIA's (G, D, Gs) "
                       "networks")
    state = network.state
    if not isinstance(state, dict):
        raise Refused("the pickled network has no state dict")
    if "version" in state:
        return replace(_convert_tf_state(state), source_network=network_name)
    if "build_func_spec" in state:
        return replace(_convert_theano_state(state), source_network=network_name)
    raise Refused("the pickled network is neither a TensorFlow-era nor a Theano-era PGGAN")


# Options of NVIDIA's G_paper that change the maths; the values here are the ones this network has.
_TF_FIXED_OPTIONS = {"label_size": 0, "normalize_latents": True, "use_pixelnorm": True,
                     "use_leakyrelu": True, "pixelnorm_epsilon": 1e-8}
_THEANO_FIXED_OPTIONS = {"label_size": 0, "normalize_latents": True, "use_pixelnorm": True,
                         "use_leakyrelu": True, "use_batchnorm": False, "tanh_at_end": None}


def _refuse_other_options(options: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    for option, supported in fixed.items():
        value = options.get(option, supported)
        if value != supported:
            raise Refused(f"it was built with {option}={value!r}, which this PGGAN network "
                           f"does not implement (it needs {option}={supported!r})")


def _refuse_non_generator(function_name: Any) -> None:
    if str(function_name).startswith("D"):
        raise Refused(f"the network is a discriminator ({function_name}), not a generator")
    raise Refused(f"the network is built by {function_name!r}, not by PGGAN's generator G_paper")


def _convert_tf_state(state: Mapping[str, Any]) -> ReadCheckpoint:
    if state["version"] != 2:
        raise Refused(f"its tfutil.Network state has version {state['version']}, not 2")
    if state.get("build_func_name") != "G_paper":  # build_module_src is never executed
        _refuse_non_generator(state.get("build_func_name"))
    options = state.get("static_kwargs") or {}
    _refuse_other_options(options, _TF_FIXED_OPTIONS)
    variables = dict(state["variables"])
    refuse_mid_training(variables.get("lod", 0.0))
    use_wscale = options.get("use_wscale", True)  # G_paper's default
    return _convert_tf_variables(variables, NVIDIA_TF, weights_include_scale=not use_wscale)


def _convert_theano_state(state: Mapping[str, Any]) -> ReadCheckpoint:
    """Theano param_values -> TF variable names and layouts, then the TF conversion."""
    spec = state["build_func_spec"]
    if not isinstance(spec, dict):
        raise Refused("its build_func_spec is not a dict")
    if spec.get("func") not in ("G_paper", "G_progressive_8"):
        _refuse_non_generator(spec.get("func"))
    _refuse_other_options(spec, _THEANO_FIXED_OPTIONS)
    refuse_mid_training((state.get("toplevel_params") or {}).get("cur_lod", 0.0))
    resolution = spec.get("resolution", 32)  # the Theano G_paper default
    if type(resolution) is not int or resolution not in RESOLUTIONS:
        raise Refused(f"its build_func_spec claims resolution {str(resolution)[:40]}; it must be "
                       f"one of {list(RESOLUTIONS)}")
    use_wscale = spec.get("use_wscale", True)
    params = [np.asarray(value) for value in state["param_values"]]
    # Dense, Conv, then Conv0 and Conv1 per resolution 8..R, then toRGB per resolution.
    layers = 3 * (int(math.log2(resolution)) - 1)
    expected = layers * (3 if use_wscale else 2)  # (weight, scale, bias) or (weight, bias)
    if len(params) != expected:
        raise Refused(f"a {resolution}x{resolution} Theano generator has {expected} parameter "
                       f"arrays, this one has {len(params)}")
    arrays = iter(params)

    def effective(weight: np.ndarray) -> np.ndarray:
        # Theano stored weights normalised, with the scale as a separate scalar parameter.
        if not use_wscale:
            return weight
        scale = float(next(arrays))
        if not math.isfinite(scale):
            raise Refused(f"a Theano weight scale is {scale}, not a finite number")
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
_TF_SCOPE = re.compile(r"(\d+)x\1/")


def _convert_tf_variables(variables: Mapping[str, Any], source_format: str,
                          weights_include_scale: bool) -> ReadCheckpoint:
    """NVIDIA TF variable names and layouts -> PGGANGenerator state dict."""
    if any(name.startswith("FromRGB") for name in variables):
        raise Refused("the network is a discriminator, not a generator")

    def take(name: str) -> torch.Tensor:
        if name not in variables:
            raise Refused(f"variable '{name}' is missing")
        return as_weight(name, variables[name])

    def conv_kernel(name: str) -> torch.Tensor:
        return take(name).permute(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]

    resolutions = [int(match.group(1)) for match in map(_TF_SCOPE.match, variables) if match]
    resolution = max(resolutions, default=4)
    blocks = int(math.log2(resolution)) - 1
    if 4 * 2 ** (blocks - 1) != resolution:
        raise Refused(f"its variables describe a {resolution}x{resolution} network, "
                       "not a power of two")
    fused = "8x8/Conv0_up/weight" in variables
    dense = take("4x4/Dense/weight")  # [latent, C * 16]; output reshaped to [C, 4, 4]
    if dense.ndim != 2 or 0 in dense.shape or dense.shape[1] % 16:
        raise Refused(f"variable '4x4/Dense/weight' has shape {list(dense.shape)}, not "
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
    return ReadCheckpoint(infer_config(state, fused), state, source_format, "Gs",
                           weights_include_scale)
