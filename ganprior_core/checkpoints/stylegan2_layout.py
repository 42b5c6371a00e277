"""StyleGAN2 architecture checks shared by every StyleGAN2 reader: the architecture is read off
the shapes of an NVIDIA-named state dict, every claimed value is checked for type and range, and
the names and shapes must be exactly those of `StyleGAN2Config.expected_shapes()` before a
network is built."""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

import numpy as np
import torch

from ..networks.stylegan2 import RESAMPLE_TAPS, StyleGAN2Config
from .common import MAX_CHANNELS, MAX_LATENT, MAX_MAPPING_LAYERS, MAX_SG2_PARAMETERS, Refused

SG2_RESOLUTIONS = tuple(2 ** i for i in range(3, 11))  # 8 .. 1024
_TORGB = re.compile(r"synthesis\.b(\d+)\.torgb\.weight")


def default_resample_filter() -> torch.Tensor:
    """NVIDIA's setup_filter([1, 3, 3, 1]) as stored in every resample_filter buffer."""
    taps = torch.tensor(RESAMPLE_TAPS)
    kernel = torch.outer(taps, taps)
    return kernel / kernel.sum()


def claimed_int(name: str, value: Any, low: int, high: int) -> int:
    """An integer architecture value from a file (numpy integers accepted, bools refused)."""
    if isinstance(value, np.integer):
        value = int(value)
    if type(value) is not int or not low <= value <= high:
        raise Refused(f"it claims {name} = {repr(value)[:40]}; it must be an integer from {low} "
                       f"to {high}")
    return value


def claimed_positive(name: str, value: Any, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, np.integer | np.floating):
        value = value.item()
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise Refused(f"it claims {name} = {repr(value)[:40]}; it must be a positive finite number"
                       + (" or None" if allow_none else ""))
    return float(value)


def _shape(state: Mapping[str, torch.Tensor], name: str) -> tuple[int, ...]:
    if name not in state:
        raise Refused(f"tensor '{name}' is missing")
    return tuple(state[name].shape)


def infer_config(state: Mapping[str, torch.Tensor], mapping_lr_multiplier: float = 0.01,
                 conv_clamp: float | None = None) -> StyleGAN2Config:
    """The StyleGAN2Config an NVIDIA-named generator state dict describes (skip architecture)."""
    resolutions = sorted(int(match.group(1)) for match in map(_TORGB.fullmatch, state) if match)
    if not resolutions:
        raise Refused("it has no synthesis ToRGB layers (synthesis.b<res>.torgb.weight)")
    resolution = resolutions[-1]
    if resolution not in SG2_RESOLUTIONS:
        raise Refused(f"it describes a {resolution}x{resolution} StyleGAN2; the resolution must "
                       f"be one of {list(SG2_RESOLUTIONS)}")
    expected = [4 * 2 ** b for b in range(int(math.log2(resolution)) - 1)]
    if resolutions != expected:
        raise Refused(f"its ToRGB layers are at {resolutions[:12]}, not at every resolution "
                       f"4..{resolution} (a StyleGAN2 'skip' generator has one per block)")
    channels = []
    for res in expected:
        shape = _shape(state, f"synthesis.b{res}.conv1.weight")
        if len(shape) != 4:
            raise Refused(f"'synthesis.b{res}.conv1.weight' has shape {list(shape)}, not "
                           "[out, in, 3, 3]")
        channels.append(claimed_int(f"channels at {res}x{res}", shape[0], 1, MAX_CHANNELS))
    mapping_layers = 0
    while f"mapping.fc{mapping_layers}.weight" in state:
        mapping_layers += 1
    mapping_layers = claimed_int("mapping layers", mapping_layers, 1, MAX_MAPPING_LAYERS)
    fc0 = _shape(state, "mapping.fc0.weight")
    if len(fc0) != 2:
        raise Refused(f"'mapping.fc0.weight' has shape {list(fc0)}, not [w_dim, z_dim]")
    torgb = _shape(state, f"synthesis.b{resolution}.torgb.weight")
    try:
        config = StyleGAN2Config(
            resolution, tuple(channels), claimed_int("z_dim", fc0[1], 1, MAX_LATENT),
            claimed_int("w_dim", fc0[0], 1, MAX_LATENT), mapping_layers, mapping_lr_multiplier,
            conv_clamp, claimed_int("image channels", torgb[0] if torgb else 0, 1, 4))
    except ValueError as error:
        raise Refused(f"its architecture is invalid ({error})") from None
    check_parameter_count(config)
    return config


def parameter_count(config: StyleGAN2Config) -> int:
    return sum(math.prod(shape) for shape in config.expected_shapes().values())


def check_parameter_count(config: StyleGAN2Config) -> None:
    count = parameter_count(config)
    if count > MAX_SG2_PARAMETERS:
        raise Refused(f"its architecture has {count} parameters, more than the "
                       f"{MAX_SG2_PARAMETERS} this loader accepts")


def check_config_values(config: StyleGAN2Config) -> None:
    """Limits on a config read from a header (the dataclass checks positivity and the plan)."""
    if config.resolution not in SG2_RESOLUTIONS:
        raise Refused(f"it claims resolution {config.resolution}; it must be one of "
                       f"{list(SG2_RESOLUTIONS)}")
    for name, value, high in (("z_dim", config.z_dim, MAX_LATENT),
                              ("w_dim", config.w_dim, MAX_LATENT),
                              ("mapping layers", config.mapping_layers, MAX_MAPPING_LAYERS),
                              ("image channels", config.img_channels, 4),
                              *((f"channels at {4 * 2 ** i}", c, MAX_CHANNELS)
                                for i, c in enumerate(config.channels))):
        claimed_int(name, value, 1, high)
    check_parameter_count(config)


def check_shapes_fit(config: StyleGAN2Config, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Exactly the names and shapes the config's generator has, nothing missing or extra."""
    expected = config.expected_shapes()
    missing = [name for name in expected if name not in shapes]
    if missing:
        raise Refused(f"tensor '{missing[0]}' is missing ({len(missing)} missing in all) for a "
                       f"{config.resolution}x{config.resolution} StyleGAN2 with channels "
                       f"{list(config.channels)}")
    extra = [name for name in shapes if name not in expected]
    if extra:
        raise Refused(f"it has tensors a StyleGAN2 'skip' generator does not, such as "
                       f"'{str(extra[0])[:80]}' ({len(extra)} in all)")
    for name, shape in expected.items():
        if tuple(shapes[name]) != shape:
            raise Refused(f"tensor '{name}' has shape {list(shapes[name])}, expected "
                           f"{list(shape)} for this architecture")


def check_weights_fit(config: StyleGAN2Config, state: Mapping[str, torch.Tensor]) -> None:
    check_config_values(config)
    check_shapes_fit(config, {name: tuple(tensor.shape) for name, tensor in state.items()})
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise Refused(f"'{name}' is not a floating-point tensor")
        if not torch.isfinite(tensor).all():
            raise Refused(f"tensor '{name}' holds NaN or infinite values")
