"""ganprior_core: inpainting with a pretrained GAN (PGGAN or StyleGAN2) as the image prior.

This package is the library's one public face: the nodes, the command line and scripts import
what they use from here (`from ganprior_core import load_generator, preset, inpaint_any_size`),
and `tests/test_layout.py` holds the nodes and the CLI to it. The flow is load -> build ->
optimise -> measure:
- load: `load_generator` / `load_checkpoint` read a prior file of any supported layout, never
  running anything from it; `family_of` tells what a generator is and what the method needs of it;
- build: `preset` and `MultiLatentConfig` (with `StyleGAN2Options`) describe the method's model;
- optimise: `inpaint` / `inpaint_any_size` with an `OptimizerConfig`, reporting `Progress`;
  `inpaint_batch` / `inpaint_batch_any_size` optimise several images (or seeds) together, each
  member's result equal to its own run's, in batches of what fits (`batch_size_that_fits`);
  before anything is allocated they refuse a run that would not fit in memory
  (`check_inpaint_fits`, `estimate_run`: a `MemoryEstimateError` naming what would fit);
- restore: `restore` / `restore_any_size` fit any degradation (`restoration_chain`: super-resolution,
  colorization, holes and their chains) and return a result consistent with the observation;
- measure: `measure` (PSNR and SSIM, whole image and inside the hole).
The modules `imaging`, `metrics`, `sampling`, `files` and `validation` are part of the face too.

Inside: `checkpoints` (formats), `families` (one module per generator family), `networks`,
`method` (the model, losses, fit loop, auto-stop, compilation, precision). `lab` holds the
research tools around the library (benchmarks, training, baselines, procedural data); neither the
library nor the nodes import it. See ganprior_core/README.md.
"""
from . import files, imaging, metrics, sampling, validation
from .checkpoints import (
    CHECKPOINT_EXTENSIONS,
    CheckpointError,
    LoadedCheckpoint,
    convert_checkpoint,
    load_checkpoint,
    load_generator,
)
from .families import (
    FAMILIES,
    G2_STYLE_SOURCES,
    LATENT_SPACES,
    NOISE_HANDLING,
    GeneratorFamily,
    StyleGAN2Options,
    family_of,
)
from .method.auto_stop import STOP_MODES, AutoStopConfig
from .method.batched import inpaint_batch, inpaint_batch_any_size
from .method.compilation import parse_compile_setting
from .method.config import MAX_LATENT_CODES, MAX_STEPS, SCHEDULES, VECTORIZE_CHOICES, OptimizerConfig, vectorizes
from .method.degradations import (
    DOWNSAMPLERS,
    Compose,
    Degradation,
    Downsample,
    Gray,
    Hole,
    ProjectionReport,
    restoration_chain,
)
from .method.fit import inpaint, inpaint_any_size
from .method.memory import (
    MemoryEstimate,
    MemoryEstimateError,
    available_memory,
    batch_size_that_fits,
    check_inpaint_fits,
    estimate_batch,
    estimate_run,
    estimated_run_bytes,
    module_bytes,
)
from .method.multi_latent import FINETUNE_SCOPES, MultiLatentConfig
from .method.perceptual import VGG_EXTENSIONS, PerceptualModelError, VGG16Features, load_vgg16_features
from .method.precision import PRECISIONS
from .method.presets import PRESET_NAMES, preset
from .method.restore import (
    RestoreResult,
    restore,
    restore_any_size,
    restore_batch,
    restore_batch_any_size,
)
from .method.results import BatchProgress, InpaintResult, Progress, StartRecord, TogetherProgress
from .method.starts import MAX_STARTS, StartsConfig
from .metrics import measure
from .priors import BUNDLED_PRIORS, PRIORS_DIR, bundled_prior_path

__all__ = [
    # modules
    "files", "imaging", "metrics", "sampling", "validation",
    # load
    "CHECKPOINT_EXTENSIONS", "CheckpointError", "LoadedCheckpoint", "convert_checkpoint",
    "load_checkpoint", "load_generator", "BUNDLED_PRIORS", "PRIORS_DIR", "bundled_prior_path",
    "FAMILIES", "GeneratorFamily", "family_of",
    # build
    "PRESET_NAMES", "preset", "MultiLatentConfig", "FINETUNE_SCOPES", "StyleGAN2Options",
    "LATENT_SPACES", "G2_STYLE_SOURCES", "NOISE_HANDLING",
    # optimise
    "OptimizerConfig", "AutoStopConfig", "STOP_MODES", "SCHEDULES", "PRECISIONS", "MAX_STEPS",
    "MAX_LATENT_CODES", "parse_compile_setting", "estimated_run_bytes", "module_bytes",
    "MemoryEstimate", "MemoryEstimateError", "available_memory", "check_inpaint_fits", "estimate_run",
    "inpaint", "StartsConfig", "StartRecord", "MAX_STARTS", "VECTORIZE_CHOICES", "vectorizes",
    "inpaint_any_size", "inpaint_batch", "inpaint_batch_any_size", "batch_size_that_fits",
    "estimate_batch", "InpaintResult", "Progress", "BatchProgress", "TogetherProgress",
    "VGG_EXTENSIONS", "VGG16Features", "PerceptualModelError", "load_vgg16_features",
    # restore: any degradation (method/restore.py, method/degradations.py)
    "restore", "restore_any_size", "restore_batch", "restore_batch_any_size", "RestoreResult",
    "Degradation", "Hole",
    "Downsample", "Gray",
    "Compose", "ProjectionReport", "restoration_chain", "DOWNSAMPLERS",
    # measure
    "measure",
]
