"""NVIDIA's TensorFlow-era StyleGAN2 pickles (NVlabs/stylegan2): a tuple (G, D, Gs) of
`dnnlib.tflib.network.Network` objects, each pickled as NEWOBJ + BUILD of its __getstate__ dict
{version (3 or 4), name, static_kwargs, components: {mapping, synthesis} (nested Networks),
build_module_src (never run), build_func_name, variables: [(name, ndarray)]}.

Gs (the moving average) is converted to NVIDIA's PyTorch names with the conversions of
stylegan2-ada-pytorch's legacy.py (`convert_tf_generator`): dense kernels transposed, conv
kernels [kh, kw, in, out] -> [out, in, kh, kw], the up-sampling conv's kernel also flipped in both
spatial axes, mod_weight transposed and mod_bias + 1 as the affine layers, dlatent_avg as w_avg,
the synthesis' noise{i} variables [1, 1, r, r] as each layer's noise_const."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from . import safe_pickle
from .common import NVIDIA_SG2_TF, ReadCheckpoint, Refused, as_weight
from .safe_pickle import UnsafePickle
from .stylegan2_layout import (
    claimed_int,
    claimed_positive,
    default_resample_filter,
    infer_config,
)


class _TFNetwork:
    """Stand-in for dnnlib.tflib.network.Network: keeps the pickled state, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickle("a dnnlib.tflib Network in it has no state dict")
        self.state = state


TF_NETWORK_CLASSES = {("dnnlib.tflib.network", "Network"): _TFNetwork}

# Options that change the maths, with the only values the StyleGAN2 network here implements.
_FIXED_OPTIONS = {"architecture": "skip", "nonlinearity": "lrelu",
                  "mapping_nonlinearity": "lrelu", "normalize_latents": True,
                  "resample_kernel": [1, 3, 3, 1], "use_noise": True}


def read_sg2_tf_pickle(data: bytes) -> ReadCheckpoint:
    content = safe_pickle.load(data, TF_NETWORK_CLASSES)
    if isinstance(content, tuple) and len(content) == 3 and all(
            isinstance(item, _TFNetwork) for item in content):
        network, source_network = content[2], "Gs"
    elif isinstance(content, _TFNetwork):
        network, source_network = content, "single network"
    else:
        raise Refused(f"the pickle holds a {type(content).__name__}, not NVIDIA's StyleGAN "
                       "(G, D, Gs) TensorFlow networks")
    state = _state(network, "the generator")
    function = str(state.get("build_func_name"))[:40]
    components = state.get("components") or {}
    if not isinstance(components, dict):
        raise Refused("its StyleGAN TensorFlow network's components are not a dict")
    synthesis_function = str((_state(components["synthesis"], "the synthesis network")
                              if "synthesis" in components else {}).get("build_func_name"))[:40]
    if function.startswith("D"):
        raise Refused(f"the network is a discriminator ({function}), not a generator")
    if function == "G_style" or synthesis_function == "G_synthesis":
        raise Refused(f"it is a StyleGAN (version 1) TensorFlow generator ({function}, "
                       f"{synthesis_function}); only StyleGAN2 is supported")
    if function != "G_main":
        raise Refused(f"its StyleGAN TensorFlow generator is built by {function!r}, not by "
                       "StyleGAN2's G_main")
    if synthesis_function != "G_synthesis_stylegan2":
        raise Refused(f"its synthesis network is built by {synthesis_function!r}; only "
                       "StyleGAN2's G_synthesis_stylegan2 is supported")
    mapping = _state(components.get("mapping"), "the mapping network")
    synthesis = _state(components["synthesis"], "the synthesis network")
    options: dict[str, Any] = {}
    for part in (state, mapping, synthesis):
        kwargs = part.get("static_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise Refused("a network's static_kwargs are not a dict")
        options.update(kwargs)
    label_size = options.get("label_size", 0)
    if label_size not in (0, None):
        raise Refused(f"it is a conditional generator (label_size = {str(label_size)[:20]}); only "
                       "unconditional StyleGAN2 generators are supported")
    for option, supported in _FIXED_OPTIONS.items():
        value = options.get(option, supported)
        if isinstance(value, tuple | np.ndarray):
            value = list(np.asarray(value).tolist())
        if value != supported:
            raise Refused(f"it was built with {option}={str(value)[:40]}; only {supported!r} is "
                           "supported (StyleGAN2 config F)")
    variables = {}
    for prefix, part in (("", state), ("mapping/", mapping), ("synthesis/", synthesis)):
        entries = part.get("variables")
        if not isinstance(entries, list):
            raise Refused("a network's variables are not a list of (name, array)")
        for entry in entries:
            if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)):
                raise Refused("a network's variables are not a list of (name, array)")
            variables[prefix + entry[0]] = entry[1]
    lr_multiplier = claimed_positive("mapping_lrmul", options.get("mapping_lrmul", 0.01))
    tensors = _convert_variables(variables)
    config = infer_config(tensors, lr_multiplier, None)
    _check_claims(config, options)
    return ReadCheckpoint(config, tensors, NVIDIA_SG2_TF, source_network)


def _check_claims(config: Any, options: Mapping[str, Any]) -> None:
    """The architecture in the networks' static_kwargs must be the one their weights have."""
    claims = {"resolution": config.resolution, "num_channels": config.img_channels,
              "latent_size": config.z_dim, "dlatent_size": config.w_dim,
              "mapping_layers": config.mapping_layers}
    for name, actual in claims.items():
        claimed = options.get(name)
        if claimed is not None and claimed_int(name, claimed, 0, 2 ** 20) != actual:
            raise Refused(f"its static_kwargs claim {name} = {claimed} but its weights have "
                           f"{actual}")
    if options.get("fmap_base") is None:
        return
    # networks_stylegan2.py: nf(stage) = clip(int(fmap_base / 2 ** (stage * fmap_decay)),
    # fmap_min, fmap_max), with stage log2(resolution) - 1 for the layers at each resolution.
    base = claimed_int("fmap_base", options["fmap_base"], 1, 2 ** 40)
    low = claimed_int("fmap_min", options.get("fmap_min", 1), 0, 2 ** 40)
    high = claimed_int("fmap_max", options.get("fmap_max", 512), 1, 2 ** 40)
    decay = claimed_positive("fmap_decay", options.get("fmap_decay", 1.0))
    planned = [int(np.clip(int(base / 2.0 ** ((math.log2(res) - 1) * decay)), low, high))
               for res in config.resolutions]
    if planned != list(config.channels):
        raise Refused(f"its static_kwargs plan channels {planned[:10]} (fmap_base {base}, "
                       f"fmap_max {high}) but its weights have {list(config.channels)[:10]}")


def _state(network: Any, what: str) -> dict:
    if not isinstance(network, _TFNetwork) or not hasattr(network, "state"):
        raise Refused(f"{what} of this StyleGAN TensorFlow pickle is missing or has no state")
    state = network.state
    version = state.get("version")
    if version not in (3, 4):
        raise Refused(f"{what} is a StyleGAN TensorFlow network of state version "
                       f"{str(version)[:20]}; versions 3 and 4 are read")
    return state


def _convert_variables(variables: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in variables:
            raise Refused(f"variable '{name}' is missing")
        used.add(name)
        return as_weight(name, variables[name])

    def ndim(name: str, tensor: torch.Tensor, dims: int) -> torch.Tensor:
        if tensor.ndim != dims:
            raise Refused(f"variable '{name}' has {tensor.ndim} dimensions, not {dims}")
        return tensor

    def kernel(name: str, flip: bool = False) -> torch.Tensor:
        value = ndim(name, take(name), 4)  # [kh, kw, in, out]
        if flip:
            value = value.flip(0, 1)
        return value.permute(3, 2, 0, 1).contiguous()  # [out, in, kh, kw]

    def dense(name: str) -> torch.Tensor:
        return ndim(name, take(name), 2).t().contiguous()

    def noise(index: int) -> torch.Tensor:
        name = f"synthesis/noise{index}"
        value = ndim(name, take(name), 4)
        if value.shape[:2] != (1, 1):
            raise Refused(f"variable '{name}' has shape {list(value.shape)}, not [1, 1, r, r]")
        return value[0, 0].contiguous()

    if any("ToRGB_lod" in name for name in variables):
        raise Refused("its synthesis network has the 'orig' architecture (ToRGB_lod layers); "
                      "only StyleGAN2's 'skip' generator is supported")
    if any(name.endswith("/Skip/weight") for name in variables):
        raise Refused("its synthesis network has the 'resnet' architecture; only StyleGAN2's "
                      "'skip' generator is supported")
    tensors: dict[str, torch.Tensor] = {"mapping.w_avg": ndim("dlatent_avg",
                                                               take("dlatent_avg"), 1)}
    layer = 0
    while f"mapping/Dense{layer}/weight" in variables:
        tensors[f"mapping.fc{layer}.weight"] = dense(f"mapping/Dense{layer}/weight")
        tensors[f"mapping.fc{layer}.bias"] = take(f"mapping/Dense{layer}/bias")
        layer += 1
    resolution = 4
    while f"synthesis/{resolution * 2}x{resolution * 2}/Conv1/weight" in variables:
        resolution *= 2
        if resolution > 1024:
            break
    filter_ = default_resample_filter()

    def modulated(prefix: str, scope: str, noise_index: int | None, flip: bool = False) -> None:
        tensors[f"{prefix}.weight"] = kernel(f"{scope}/weight", flip)
        tensors[f"{prefix}.bias"] = take(f"{scope}/bias")
        tensors[f"{prefix}.affine.weight"] = dense(f"{scope}/mod_weight")
        tensors[f"{prefix}.affine.bias"] = take(f"{scope}/mod_bias") + 1
        if noise_index is not None:
            strength = take(f"{scope}/noise_strength")
            tensors[f"{prefix}.noise_strength"] = strength.reshape(()) \
                if strength.numel() == 1 else strength
            tensors[f"{prefix}.noise_const"] = noise(noise_index)
            tensors[f"{prefix}.resample_filter"] = filter_.clone()

    for res_log2 in range(2, int(math.log2(resolution)) + 1):
        res = 2 ** res_log2
        block, scope = f"synthesis.b{res}", f"synthesis/{res}x{res}"
        tensors[f"{block}.resample_filter"] = filter_.clone()
        if res == 4:
            const = ndim("synthesis/4x4/Const/const", take("synthesis/4x4/Const/const"), 4)
            tensors[f"{block}.const"] = const[0].contiguous()
            modulated(f"{block}.conv1", f"{scope}/Conv", 0)
        else:
            modulated(f"{block}.conv0", f"{scope}/Conv0_up", 2 * res_log2 - 5, flip=True)
            modulated(f"{block}.conv1", f"{scope}/Conv1", 2 * res_log2 - 4)
        modulated(f"{block}.torgb", f"{scope}/ToRGB", None)
    unused = [name for name in variables if name not in used and name != "lod"]
    if unused:
        raise Refused(f"it has variables a StyleGAN2 'skip' generator does not, such as "
                       f"'{unused[0][:80]}' ({len(unused)} in all)")
    return tensors
