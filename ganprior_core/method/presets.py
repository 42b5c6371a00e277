"""The named configurations: the paper's method, mGANprior and single-code inversion."""
from __future__ import annotations

import math

from ..networks.pggan import PGGANConfig
from .config import OptimizerConfig
from .multi_latent import MultiLatentConfig

PRESET_NAMES = ("paper", "mganprior", "single-z")


def split_for_feature_resolution(generator_config: PGGANConfig, feature_resolution: int) -> int:
    """The split k whose G1 ends with the block at `feature_resolution` (at least 4x4)."""
    block = max(0, int(math.log2(max(feature_resolution, 4))) - 2)
    block = min(block, len(generator_config.channels) - 1)
    return 2 * block + 2


def _scaled_feature_resolution(resolution: int, divisor: int, coarsest: int) -> int:
    """resolution / divisor, but no coarser than `coarsest` and never the output itself."""
    return min(max(resolution // divisor, coarsest), resolution // 2)


def preset(name: str, generator_config: PGGANConfig) -> tuple[MultiLatentConfig, OptimizerConfig]:
    """Named configurations. Split layers scale with the resolution: at 256x256 `paper` fuses at
    k=8 (32x32 features) and `mganprior` at k=4 (8x8), as in the paper and mGANprior. Smaller
    generators keep `paper` at 16x16 or finer and `mganprior` at 8x8 or finer (k=6 and k=4 at
    64x64): the coarser maps the 256x256 ratio would give filled held-out facades worse
    (ganprior_core/README.md, presets)."""
    resolution = generator_config.resolution
    if name == "paper":
        feature_resolution = _scaled_feature_resolution(resolution, 8, coarsest=16)
        model = MultiLatentConfig(num_codes=30,
                                  split_layer=split_for_feature_resolution(generator_config, feature_resolution),
                                  use_alpha=True, use_beta=True, finetune="all")
        return model, OptimizerConfig()
    if name == "mganprior":
        feature_resolution = _scaled_feature_resolution(resolution, 32, coarsest=8)
        model = MultiLatentConfig(num_codes=30,
                                  split_layer=split_for_feature_resolution(generator_config, feature_resolution),
                                  use_alpha=True, use_beta=False, finetune="none")
        return model, OptimizerConfig(lr_generator=0.0)
    if name == "single-z":
        model = MultiLatentConfig(num_codes=1, split_layer=generator_config.num_layers,
                                  use_alpha=False, use_beta=False, finetune="none")
        return model, OptimizerConfig(lr_generator=0.0)
    raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
