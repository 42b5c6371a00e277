"""The named configurations: the paper's method, mGANprior and single-code inversion, for PGGAN
and StyleGAN2 priors (the split scales with the resolution in the same way for both)."""
from __future__ import annotations

from ..families import family_of
from .config import OptimizerConfig
from .multi_latent import MultiLatentConfig

PRESET_NAMES = ("paper", "mganprior", "single-z")


def split_for_feature_resolution(generator_config, feature_resolution: int) -> int:
    """The split k whose G1 ends with the block at `feature_resolution` (at least 4x4); the
    family numbers its layers (PGGAN: k = 2 * block + 2; StyleGAN2: k = 2 * block + 1)."""
    return family_of(generator_config).split_for_feature_resolution(generator_config,
                                                                    feature_resolution)


def _scaled_feature_resolution(resolution: int, divisor: int, coarsest: int) -> int:
    """resolution / divisor, but no coarser than `coarsest` and never the output itself."""
    return min(max(resolution // divisor, coarsest), resolution // 2)


def preset(name: str, generator_config) -> tuple[MultiLatentConfig, OptimizerConfig]:
    """Named configurations. Split layers scale with the resolution: at 256x256 `paper` fuses at
    k=8 (32x32 features) and `mganprior` at k=4 (8x8), as in the paper and mGANprior. Smaller
    generators keep `paper` at 16x16 or finer and `mganprior` at 8x8 or finer (k=6 and k=4 at
    64x64): the coarser maps the 256x256 ratio would give filled held-out facades worse
    (ganprior_core/README.md, presets).

    StyleGAN2 (`generator_config` a StyleGAN2Config) splits after that block's conv1
    (k = 2 * block + 1): `paper` N=30, alpha + beta, finetune all, at resolution/8 but no coarser
    than 32x32 (and below the output): k = 3, 5, 7, 7, 11 at 16, 32, 64, 256, 1024 (32x32 rather
    than PGGAN's 16x16 at 64x64: chosen on held-out facades, docs/stylegan2_prior.md);
    `mganprior` N=30, alpha only, frozen, at resolution/32 but no coarser than 8x8:
    k = 3, 3, 3, 3, 7 at 16, 32, 64, 256, 1024; `single-z` one w+ code for every style
    slot through the whole synthesis (N=1, k = num_layers: G2 is empty, the image is the code's
    skip image), frozen generator: the usual w+ projection.
    """
    resolution = generator_config.resolution
    if name == "paper":
        coarsest = family_of(generator_config).paper_coarsest_features
        feature_resolution = _scaled_feature_resolution(resolution, 8, coarsest=coarsest)
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
