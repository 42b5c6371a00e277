"""The method's public entry point: configure a run, pick a preset, fit an image.

The pieces live in `ganprior_core.method` (config, presets, results, fit); this module gathers
what scripts and the nodes use, so `from ganprior_core.optimize import inpaint, preset` keeps
working.
"""
from .method.config import MAX_LATENT_CODES, MAX_STEPS, SCHEDULES, OptimizerConfig
from .method.fit import inpaint, inpaint_any_size
from .method.precision import PRECISIONS
from .method.presets import PRESET_NAMES, preset, split_for_feature_resolution
from .method.results import InpaintResult, Progress

__all__ = ["MAX_LATENT_CODES", "MAX_STEPS", "PRECISIONS", "SCHEDULES", "OptimizerConfig",
           "inpaint", "inpaint_any_size", "PRESET_NAMES", "preset", "split_for_feature_resolution",
           "InpaintResult", "Progress"]
