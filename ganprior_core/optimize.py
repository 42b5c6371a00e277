"""The import path of earlier releases (`from ganprior_core.optimize import inpaint, preset`),
kept so that scripts written against it keep running. New code imports the same objects from the
package itself: `from ganprior_core import inpaint, preset`."""
from . import (
    MAX_LATENT_CODES,
    MAX_STEPS,
    PRECISIONS,
    PRESET_NAMES,
    SCHEDULES,
    InpaintResult,
    OptimizerConfig,
    Progress,
    inpaint,
    inpaint_any_size,
    preset,
)
from .method.presets import split_for_feature_resolution

__all__ = ["MAX_LATENT_CODES", "MAX_STEPS", "PRECISIONS", "SCHEDULES", "OptimizerConfig",
           "inpaint", "inpaint_any_size", "PRESET_NAMES", "preset", "split_for_feature_resolution",
           "InpaintResult", "Progress"]
