"""`torch.save` files of PGGAN generators: genforce/genforce model-zoo files and genforce /
mGANprior state dicts (and facebookresearch pytorch_GAN_zoo checkpoints, recognised to be refused)."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from .common import GENFORCE, GENFORCE_ZOO, ReadCheckpoint, Refused, as_weight, refuse_if_stylegan
from .pggan_layout import infer_config, refuse_mid_training

GAN_ZOO_REFUSAL = (
    "it is a facebookresearch pytorch_GAN_zoo PGAN checkpoint, which is not supported: its format "
    "layer has one bias per output position (16 per channel) that this PGGAN network cannot "
    "represent, so a conversion could not reproduce its images")

_ZOO_NETWORKS = ("generator_smooth", "generator")  # the moving average first, as genforce does


def read_torch_content(content: Any) -> ReadCheckpoint:
    """A genforce / mGANprior generator from what torch_file read."""
    if not isinstance(content, Mapping):
        raise Refused(f"it holds a {type(content).__name__}, not a state dict")
    if "netG" in content or "avgG" in content:
        raise Refused(GAN_ZOO_REFUSAL)
    for network in _ZOO_NETWORKS:
        if network in content:
            weights = content[network]
            if not isinstance(weights, Mapping) or "layer0.weight" not in weights:
                raise Refused(f"its '{network}' is not a genforce PGGAN state dict")
            return _convert_genforce_zoo(weights, network)
    if "layer0.weight" in content:
        return _convert_genforce_zoo(content, "bare state dict")
    if "layer0.conv.weight" in content:
        return _convert_genforce(content)
    for key in content:
        refuse_if_stylegan(str(key))
    keys = ", ".join(str(key)[:40] for key in list(content)[:5])
    raise Refused(f"it is a PyTorch file but not a genforce PGGAN generator "
                   f"(its keys begin {keys})")


def _convert_genforce(weights: Mapping[str, Any]) -> ReadCheckpoint:
    refuse_mid_training(weights.get("lod", 0.0))
    blocks = 0
    while f"layer{2 * blocks + 1}.conv.weight" in weights:
        blocks += 1
    fused = "layer2.weight" in weights  # genforce keeps Conv0_up as [k, k, in, out]

    def take(key: str) -> torch.Tensor:
        if key not in weights:
            raise Refused(f"'{key}' is missing")
        return as_weight(key, weights[key])

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
    return ReadCheckpoint(infer_config(state, fused), state, GENFORCE, None)


def _convert_genforce_zoo(weights: Mapping[str, Any], network: str) -> ReadCheckpoint:
    """genforce/genforce PGGANGenerator state dict -> PGGANGenerator state dict.

    Its ConvBlocks store weights unscaled (wscale = gain / sqrt(fan_in) is applied at run time,
    as here) and pixel-normalise their *input*, so block i+1's normalisation is this network's
    normalisation at the end of layer i, and output{j} normalises the last layer's activation
    before its 1x1 conv, as to_rgb's input already is here. Fused-scale up layers keep
    conv_transpose's [in, out, 3, 3] layout, which FusedUpConvLayer uses too. `lod` 0 means the
    last output{j} (resolution 4 * 2**j = R) makes the image.
    """
    refuse_mid_training(weights.get("lod", 0.0))

    def take(key: str) -> torch.Tensor:
        if key not in weights:
            raise Refused(f"'{key}' is missing from its {network}")
        return as_weight(key, weights[key])

    blocks = 0
    while f"layer{2 * blocks + 1}.weight" in weights:
        blocks += 1
    if blocks == 0:
        raise Refused(f"its {network} has no 'layer1.weight'")
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
    return ReadCheckpoint(infer_config(state, fused), state, GENFORCE_ZOO, network)
