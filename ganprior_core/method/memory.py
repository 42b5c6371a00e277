"""How much memory one image's optimisation needs, estimated from the configuration alone, so a
host can make room (or refuse) before anything is allocated."""
from __future__ import annotations

import torch

from ..families import family_of

# VGG16 features[:16] keeps about this many values per input pixel for the backward pass.
VGG_VALUES_PER_PIXEL = 300
# Activations kept for the backward pass, their gradients, and slack.
ACTIVATION_COPIES = 3


def module_bytes(module: torch.nn.Module | None) -> int:
    """Bytes of a module's parameters and buffers."""
    if module is None:
        return 0
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def estimated_run_bytes(prior: torch.nn.Module, model_config, perceptual_weight: float,
                        perceptual: torch.nn.Module | None) -> int:
    """A generous estimate (bytes) of one image's optimisation: the prior's private copy with its
    gradients and Adam's two moments (4x its size), a VGG16 copy when the perceptual loss is on,
    and float32 activations kept for the backward pass (every layer's feature maps, G1's once
    per code, x3 for gradients and slack; VGG16's values per pixel at the prior's resolution)."""
    config = prior.config
    needed = 4 * module_bytes(prior)
    elements = family_of(prior).activation_elements(config, model_config.split_layer,
                                                    model_config.num_codes)
    needed += ACTIVATION_COPIES * 4 * elements
    if perceptual is not None and perceptual_weight > 0:
        needed += module_bytes(perceptual)
        needed += ACTIVATION_COPIES * 4 * VGG_VALUES_PER_PIXEL * config.resolution ** 2
    return int(needed)
