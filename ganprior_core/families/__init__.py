"""The generator families the method runs on, one module each, behind one interface
(`base.GeneratorFamily`). `family_of(generator or config)` is the one place that tells which
family something is; callers then ask the family (families/base.py says what it answers).

Adding a family: ganprior_core/README.md, "Adding a family".
"""
from __future__ import annotations

from .base import GeneratorFamily, SplitAdapter
from .pggan import PGGAN
from .stylegan2 import (
    G2_STYLE_SOURCES,
    GENERATE_NOISE_MODES,
    LATENT_SPACES,
    NOISE_HANDLING,
    STYLEGAN2,
    StyleGAN2Options,
)

FAMILIES: dict[str, GeneratorFamily] = {family.name: family for family in (PGGAN, STYLEGAN2)}


def family_of(generator_or_config) -> GeneratorFamily:
    """The family of a generator or of its architecture config; a ValueError for anything else."""
    for family in FAMILIES.values():
        if isinstance(generator_or_config, (family.generator_type, family.config_type)):
            return family
    labels = " or ".join(family.label for family in FAMILIES.values())
    raise ValueError(f"not a generator this method can split: {type(generator_or_config).__name__} "
                     f"(expected a {labels} generator)")


def z_dim_of(generator_or_config) -> int:
    """Length of the generator's input code z."""
    config = getattr(generator_or_config, "config", generator_or_config)
    return family_of(generator_or_config).z_dim(config)


__all__ = ["FAMILIES", "auto_stop_rule", "G2_STYLE_SOURCES", "GENERATE_NOISE_MODES", "GeneratorFamily",
           "LATENT_SPACES", "NOISE_HANDLING", "PGGAN", "STYLEGAN2", "SplitAdapter", "StyleGAN2Options",
           "family_of", "z_dim_of"]


def auto_stop_rule(generator_or_config, chosen=None):
    """The auto-stop rule a run uses: `chosen` where one was given, else its family's."""
    return chosen if chosen is not None else family_of(generator_or_config).auto_stop
