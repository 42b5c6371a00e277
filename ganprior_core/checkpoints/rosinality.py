"""rosinality/stylegan2-pytorch files, read with torch_file's bounded reader: the converted
layout of convert_weight.py `{'g_ema': state_dict, 'latent_avg': tensor}`, train.py checkpoints
`{'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args': argparse.Namespace, 'ada_aug_p'}`, and a bare
g_ema state dict.

rosinality's Generator computes NVIDIA's StyleGAN2 maths under other names, with the same stored
(unscaled) weights:
- `style.{1..n}` EqualLinear(lr_mul 0.01, fused lrelu) after PixelNorm = `mapping.fc{i-1}`
  (weight * lr_mul / sqrt(in), bias * lr_mul, leaky ReLU times sqrt 2);
- `input.input` [1, C, 4, 4] = `synthesis.b4.const`;
- StyledConv: `conv.weight` [1, out, in, k, k] (scaled by 1/sqrt(fan_in), which demodulation
  cancels), `conv.modulation` EqualLinear(bias_init 1) = `affine`, `noise.weight` [1] =
  `noise_strength`, `activate.bias` (FusedLeakyReLU) = `bias`; its up-sampling conv is the
  stride-2 transposed conv followed by the [1,3,3,1] blur at gain 4 padded (1, 1), which is the
  network's conv0 with the same (unflipped) kernel;
- ToRGB: modulated 1x1 conv without demodulation, `bias` [1, 3, 1, 1]; the skip image is
  upsampled by upfirdn2d with the [1,3,3,1] kernel at gain 4, padding (2, 1), as NVIDIA's;
- `conv1` (on the const), `convs.{2k}` / `convs.{2k+1}` = conv0 / conv1 of the block at
  8 * 2^k, `to_rgb1` / `to_rgbs.{k}` the ToRGBs, `noises.noise_{i}` [1, 1, r, r] the noise
  buffers of conv layer i in running order.
Without `latent_avg` (train.py checkpoints), w_avg is estimated as the mean w of 4096 z drawn
with seed 0.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from .common import ROSINALITY, ReadCheckpoint, Refused, as_weight
from .safe_pickle import UnsafePickle
from .stylegan2_layout import default_resample_filter, infer_config

W_AVG_SAMPLES = 4096
W_AVG_SEED = 0
W_AVG_NOTE = f"w_avg estimated as the mean w of {W_AVG_SAMPLES} z (seed {W_AVG_SEED})"


class Namespace:
    """Stand-in for argparse.Namespace (train.py's `args`): records its attributes as data."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickle("an argparse.Namespace in it has no attribute dict")
        self.state = state


TORCH_CLASSES = {("argparse", "Namespace"): Namespace}
_STYLE = re.compile(r"style\.(\d+)\.weight")


def looks_like_rosinality(content: Any) -> bool:
    if not isinstance(content, Mapping):
        return False
    if isinstance(content.get("g_ema"), Mapping):
        return True
    return "input.input" in content and "style.1.weight" in content


def read_rosinality(content: Mapping[str, Any]) -> ReadCheckpoint:
    if "g_ema" in content:
        weights, network = content["g_ema"], "g_ema"
    else:
        weights, network = content, "bare g_ema state dict"
    if not isinstance(weights, Mapping) or "input.input" not in weights:
        raise Refused(f"its '{network}' is not a rosinality StyleGAN2 generator state dict")
    tensors = _convert(weights)
    config = infer_config(tensors)
    args = content.get("args")
    if isinstance(args, Namespace):
        _check_args(args.state, config)
    latent_avg = content.get("latent_avg")
    estimate = latent_avg is None
    if estimate:
        tensors["mapping.w_avg"] = torch.zeros(config.w_dim)
        network += f" ({W_AVG_NOTE})"
    else:
        w_avg = as_weight("latent_avg", latent_avg)
        if w_avg.numel() != config.w_dim:
            raise Refused(f"its latent_avg has {w_avg.numel()} values, not w_dim = "
                           f"{config.w_dim}")
        tensors["mapping.w_avg"] = w_avg.reshape(-1)
    return ReadCheckpoint(config, tensors, ROSINALITY, network, estimate_w_avg=estimate)


def _check_args(args: Mapping[str, Any], config: Any) -> None:
    for name, actual in (("size", config.resolution), ("latent", config.w_dim),
                         ("n_mlp", config.mapping_layers)):
        claimed = args.get(name)
        if claimed is not None and claimed != actual:
            raise Refused(f"its training args claim {name} = {str(claimed)[:20]} but its "
                           f"weights have {actual}")


def _convert(weights: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    used: set[str] = set()

    def take(name: str, dims: int | None = None) -> torch.Tensor:
        if name not in weights:
            raise Refused(f"tensor '{name}' is missing")
        used.add(name)
        value = as_weight(name, weights[name])
        if dims is not None and value.ndim != dims:
            raise Refused(f"tensor '{name}' has shape {list(value.shape)}, not {dims}-d")
        return value

    def leading_one(name: str, dims: int) -> torch.Tensor:
        value = take(name, dims)
        if value.shape[0] != 1:
            raise Refused(f"tensor '{name}' has shape {list(value.shape)}, expected a leading 1")
        return value[0].contiguous()

    filter_ = default_resample_filter()

    def check_kernel(name: str) -> None:
        # Blur / Upsample buffers: make_kernel([1, 3, 3, 1]) times factor^2 = 4.
        if name in weights:
            kernel = take(name)
            if kernel.shape != (4, 4) or not torch.allclose(kernel, filter_ * 4, atol=1e-6):
                raise Refused(f"'{name}' is not the [1, 3, 3, 1] blur kernel; other kernels "
                               "are not supported")

    tensors: dict[str, torch.Tensor] = {}
    layers = sorted(int(match.group(1)) for match in map(_STYLE.fullmatch, weights) if match)
    if not layers or layers != list(range(1, len(layers) + 1)):
        raise Refused(f"its mapping layers are style.{layers[:10]}, not style.1..style.n")
    for i in layers:
        tensors[f"mapping.fc{i - 1}.weight"] = take(f"style.{i}.weight", 2)
        tensors[f"mapping.fc{i - 1}.bias"] = take(f"style.{i}.bias", 1)

    def styled(source: str, target: str, noise_index: int) -> None:
        tensors[f"{target}.weight"] = leading_one(f"{source}.conv.weight", 5)
        tensors[f"{target}.affine.weight"] = take(f"{source}.conv.modulation.weight", 2)
        tensors[f"{target}.affine.bias"] = take(f"{source}.conv.modulation.bias", 1)
        strength = take(f"{source}.noise.weight", 1)
        if strength.numel() != 1:
            raise Refused(f"'{source}.noise.weight' has {strength.numel()} values, not 1")
        tensors[f"{target}.noise_strength"] = strength.reshape(())
        tensors[f"{target}.bias"] = take(f"{source}.activate.bias", 1)
        noise = take(f"noises.noise_{noise_index}", 4)
        if noise.shape[:2] != (1, 1):
            raise Refused(f"'noises.noise_{noise_index}' has shape {list(noise.shape)}, not "
                           "[1, 1, r, r]")
        tensors[f"{target}.noise_const"] = noise[0, 0].contiguous()
        tensors[f"{target}.resample_filter"] = filter_.clone()
        check_kernel(f"{source}.conv.blur.kernel")

    def to_rgb(source: str, target: str) -> None:
        tensors[f"{target}.weight"] = leading_one(f"{source}.conv.weight", 5)
        tensors[f"{target}.affine.weight"] = take(f"{source}.conv.modulation.weight", 2)
        tensors[f"{target}.affine.bias"] = take(f"{source}.conv.modulation.bias", 1)
        tensors[f"{target}.bias"] = take(f"{source}.bias", 4).reshape(-1)
        check_kernel(f"{source}.upsample.kernel")

    tensors["synthesis.b4.const"] = leading_one("input.input", 4)
    tensors["synthesis.b4.resample_filter"] = filter_.clone()
    styled("conv1", "synthesis.b4.conv1", 0)
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    block = 0
    while f"to_rgbs.{block}.conv.weight" in weights:
        if block >= 8:
            raise Refused("it has more blocks than a 1024x1024 StyleGAN2")
        res = 8 * 2 ** block
        prefix = f"synthesis.b{res}"
        tensors[f"{prefix}.resample_filter"] = filter_.clone()
        styled(f"convs.{2 * block}", f"{prefix}.conv0", 2 * block + 1)
        styled(f"convs.{2 * block + 1}", f"{prefix}.conv1", 2 * block + 2)
        to_rgb(f"to_rgbs.{block}", f"{prefix}.torgb")
        block += 1
    unused = [str(name) for name in weights if name not in used
              and not str(name).endswith((".blur.kernel", ".upsample.kernel"))]
    if unused:
        raise Refused(f"it has tensors a rosinality StyleGAN2 generator does not, such as "
                       f"'{unused[0][:80]}' ({len(unused)} in all)")
    return tensors
