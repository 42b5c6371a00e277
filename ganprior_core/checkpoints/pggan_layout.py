"""A PGGAN generator's architecture, read from and checked against the shapes of its weights
before anything is allocated."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from ..networks.pggan import PGGANConfig
from .common import MAX_CHANNELS, MAX_LATENT, MAX_PARAMETERS, Refused

RESOLUTIONS = tuple(2 ** power for power in range(3, 11))


def check_config_values(config: PGGANConfig) -> None:
    channels = config.channels
    if not all(1 <= count <= MAX_CHANNELS for count in channels):
        raise Refused(f"it claims channel counts {list(channels)}; each must be between 1 and "
                       f"{MAX_CHANNELS}")
    if not 1 <= config.latent_dim <= MAX_LATENT:
        raise Refused(f"it claims a latent size of {config.latent_dim}; it must be between 1 "
                       f"and {MAX_LATENT}")


def expected_shapes(config: PGGANConfig) -> dict[str, tuple[int, ...]]:
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


def check_shapes_fit(config: PGGANConfig, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse unless `shapes` are exactly those of a generator with `config` (checked before the
    network or, for .safetensors, the tensors are allocated)."""
    check_config_values(config)
    expected = expected_shapes(config)
    parameters = sum(math.prod(shape) for shape in expected.values())
    if parameters > MAX_PARAMETERS:
        raise Refused(f"its architecture has {parameters} parameters, more than the "
                       f"{MAX_PARAMETERS} this loader accepts")
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise Refused(f"its tensors do not fit a {config.resolution}x{config.resolution} PGGAN "
                       f"generator (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, shape in expected.items():
        if tuple(shapes[name]) != shape:
            raise Refused(f"tensor '{name}' has shape {list(shapes[name])}, the architecture "
                           f"needs {list(shape)}")


def check_weights_fit(config: PGGANConfig, state: Mapping[str, torch.Tensor]) -> None:
    check_shapes_fit(config, {name: tuple(tensor.shape) for name, tensor in state.items()})


def refuse_mid_training(lod: Any) -> None:
    try:
        lod = float(np.asarray(lod, dtype=np.float64))
    except (TypeError, ValueError):
        raise Refused(f"its lod is {str(lod)[:40]}, not a number") from None
    if lod != 0:
        raise Refused(f"it was saved mid-training (lod = {lod:g}, still fading in a resolution); "
                       "only finished generators (lod 0) are supported")


def infer_config(state: Mapping[str, torch.Tensor], fused: bool) -> PGGANConfig:
    """Architecture from the shapes of a state dict in PGGANGenerator naming."""
    dense = state["layers.0.conv.weight"]  # [C, latent, 4, 4]
    if dense.ndim != 4 or tuple(dense.shape[2:]) != (4, 4):
        raise Refused(f"the first layer has shape {tuple(dense.shape)}, not a 4x4 dense kernel")
    blocks = 0
    while f"layers.{2 * blocks + 1}.conv.weight" in state:
        blocks += 1
    channels = tuple(state[f"layers.{2 * b + 1}.conv.weight"].shape[0] for b in range(blocks))
    if state["to_rgb.weight"].ndim < 1 or state["to_rgb.weight"].shape[0] != 3:
        raise Refused(f"it makes {list(state['to_rgb.weight'].shape)[:1]}-channel images; only "
                       "RGB generators are supported")
    try:
        config = PGGANConfig(4 * 2 ** (blocks - 1), channels, int(dense.shape[1]), fused)
    except ValueError as error:
        raise Refused(str(error)) from None
    check_weights_fit(config, state)
    return config
