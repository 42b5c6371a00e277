"""Nodes that load and configure models: prior, multi-latent generator, optimiser, VGG16."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..ganprior_core import (
    FINETUNE_SCOPES,
    G2_STYLE_SOURCES,
    LATENT_SPACES,
    NOISE_HANDLING,
    PRECISIONS,
    PRESET_NAMES,
    SCHEDULES,
    STOP_MODES,
    MultiLatentConfig,
    OptimizerConfig,
    StyleGAN2Options,
    load_checkpoint,
    load_vgg16_features,
    parse_compile_setting,
)
from ..ganprior_core import preset as preset_configs
from ..ganprior_core.sampling import sample_images
from . import host, tensors
from .inputs import CATEGORY, COMPILE_CHOICES, STOP_TOOLTIP, prior_input, seed_input


@dataclass(frozen=True)
class MultiLatentSpec:
    """What flows along a MULTI_LATENT_GENERATOR link: the (shared, read-only) prior and the
    configuration. GAN-Prior Inpaint builds a private working copy from it on every run."""

    prior: torch.nn.Module  # a PGGANGenerator or a StyleGAN2Generator
    config: MultiLatentConfig


class LoadGANPrior:
    DESCRIPTION = ("Loads a pretrained PGGAN or StyleGAN2 generator from ComfyUI/models/pggan (the info "
                   "says which family and layout was read). PGGAN: a genforce model-zoo "
                   ".pth (generator_smooth when present, else generator, or a bare state dict), a "
                   "genforce/mGANprior .pth, an NVIDIA .pkl (TensorFlow or Theano; Gs) or this pack's "
                   ".safetensors; StyleGAN2: the formats this pack's loader reads. The format is read "
                   "from the file's content; nothing in the file is "
                   "run. The bundled 64x64 facades prior is always listed.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("PGGAN_PRIOR", "STRING")
    RETURN_NAMES = ("prior", "info")
    OUTPUT_TOOLTIPS = ("The generator (PGGAN or StyleGAN2). Shared and cached: nodes downstream "
                       "never change it.",
                       "Family (PGGAN / StyleGAN2), resolution, layer count, which format and which "
                       "network of the file was read (e.g. generator_smooth), and the feature shape "
                       "each split layer k gives (StyleGAN2: and the skip image's).")

    @classmethod
    def INPUT_TYPES(cls):
        names = host.model_names("pggan")
        return {"required": {"prior_name": (names, {"tooltip": (
            "A file in models/pggan: a PGGAN (genforce model-zoo or mGANprior .pth, NVIDIA .pkl "
            "(TensorFlow or Theano), ganprior .safetensors) or a StyleGAN2 generator.")})}}

    @classmethod
    def VALIDATE_INPUTS(cls, prior_name=None):
        # Replaces ComfyUI's "value not in list" for this input: a workflow naming a file this
        # install lacks stops with one instruction (which file, which folder, where to get it).
        # None: the name comes from a link, checked when the node runs.
        return True if prior_name is None else host.missing_model_message("pggan", prior_name) or True

    @classmethod
    def IS_CHANGED(cls, prior_name):
        # The file's identity (resolved path, size, modification time, inode), not only its
        # name: a prior retrained or downloaded again under the same name is read again instead
        # of served from ComfyUI's cache of this node's outputs (the pack keeps no cache of its own).
        return host.model_identity("pggan", prior_name)

    def load(self, prior_name):
        # Loaded outside inference mode: the optimisation copies these weights into autograd.
        with torch.inference_mode(False):
            loaded = load_checkpoint(host.model_path("pggan", prior_name))
        return (loaded.generator.eval(), loaded.describe(prior_name))


class SampleGANPrior:
    DESCRIPTION = "Random images from the prior: what it can generate, hence what it can fill in."
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("`count` random images of the prior at its own resolution, one latent code "
                       "each: what it can generate, hence what it can fill in.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "prior": prior_input("The prior to draw images from."),
            "count": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": "Number of images."}),
            "seed": seed_input("Seed of the latent codes."),
        }}

    def sample(self, prior, count, seed):
        # On the prior's own device (the CPU): sampling is one forward pass, and moving the
        # cached prior would change a shared object.
        return (tensors.to_comfy_images(sample_images(prior, count, seed)),)


# The classes' earlier names, for code that imported them. Saved workflows and prompts name the
# node IDs (nodes/__init__.py), which keep the PGGAN in their names.
LoadPGGANPrior, SamplePGGANPrior = LoadGANPrior, SampleGANPrior


class BuildMultiLatentGenerator:
    DESCRIPTION = ("The paper's generator: N latent codes pass the prior's first k layers (G1), their "
                   "feature maps are weighted per channel (alpha) and per code (beta), summed, and "
                   "finished by the remaining layers (G2). StyleGAN2: the stylegan2_ inputs choose "
                   "what a code is, what drives G2's styles and how the noise is handled (defaults "
                   "chosen on held-out facades: a w+ code per code, one shared learnt w+ for G2, "
                   "the file's constant noise; a PGGAN prior takes only the defaults), and the skip "
                   "image is summed with the beta weights.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("MULTI_LATENT_GENERATOR",)
    RETURN_NAMES = ("generator",)
    OUTPUT_TOOLTIPS = ("The prior with this configuration. GAN-Prior Inpaint optimises a private copy.",)

    @classmethod
    def INPUT_TYPES(cls):
        defaults, options = MultiLatentConfig(), StyleGAN2Options()
        return {"required": {
            "prior": prior_input("The prior to split at layer k: its first k layers (G1) run once "
                                 "per code, the rest (G2) finish the fused features."),
            "num_codes": ("INT", {"default": defaults.num_codes, "min": 1, "max": 256,
                                  "tooltip": "N, the number of latent codes (paper: 30; 1 = plain "
                                             "single-code GAN inversion)."}),
            "split_layer": ("INT", {"default": defaults.split_layer, "min": 1, "max": 18,
                                    "tooltip": "k: the codes' feature maps are fused after layer k "
                                               "(1..number of conv layers; each resolution has two). "
                                               "256x256 PGGAN: k=4 -> 512x8x8 (mGANprior), k=6 -> "
                                               "512x16x16, k=8 -> 512x32x32 (paper). 64x64 prior: "
                                               "k=6 -> 16x16, k=8 -> 32x32. StyleGAN2 (b4.conv1 is "
                                               "layer 0): k=2b+1 ends with the 4*2^b block, e.g. "
                                               "256x256: k=3 -> 8x8, k=7 -> 32x32. The loader's info "
                                               "lists the shape of every k."}),
            "use_alpha": ("BOOLEAN", {"default": defaults.use_alpha,
                                      "tooltip": "Learn a weight per channel for each code (alpha). "
                                                 "Off: all 1."}),
            "use_beta": ("BOOLEAN", {"default": defaults.use_beta,
                                     "tooltip": "Learn a weight per code's feature map (beta, the "
                                                "paper's addition). Off: the plain mean, as mGANprior."}),
            "finetune": (list(FINETUNE_SCOPES), {"default": defaults.finetune,
                                                 "tooltip": "Generator weights optimised with the "
                                                            "codes: all layers, only G2 (after k), or "
                                                            "none (frozen prior). StyleGAN2: conv, "
                                                            "affine and ToRGB weights; never the "
                                                            "mapping or the noise."}),
        }, "optional": {
            # Optional, so API prompts and workflows saved before these inputs still run.
            "stylegan2_latent_space": (list(LATENT_SPACES), {
                "default": options.latent_space,
                "tooltip": "StyleGAN2 only: what each code is. w+: one w per style slot of G1; w: "
                           "one w for all of G1's slots; z: a z through the (frozen) mapping "
                           "network. PGGAN codes are always z: keep the default."}),
            "stylegan2_g2_styles": (list(G2_STYLE_SOURCES), {
                "default": options.g2_styles,
                "tooltip": "StyleGAN2 only: what drives G2's styles. learned: a shared w+ optimised "
                           "with the codes; codes: the mean of the codes' last G1 w; average: the "
                           "generator's w_avg, fixed."}),
            "stylegan2_noise": (list(NOISE_HANDLING), {
                "default": options.noise,
                "tooltip": "StyleGAN2 only: const keeps the file's noise maps; optimised fits them "
                           "with the codes (in the run's private copy; the prior is never changed)."}),
        }}

    def build(self, prior, num_codes, split_layer, use_alpha, use_beta, finetune,
              stylegan2_latent_space=StyleGAN2Options.latent_space,
              stylegan2_g2_styles=StyleGAN2Options.g2_styles, stylegan2_noise=StyleGAN2Options.noise):
        config = MultiLatentConfig(num_codes, split_layer, use_alpha, use_beta, finetune,
                                   StyleGAN2Options(stylegan2_latent_space, stylegan2_g2_styles,
                                                    stylegan2_noise))
        config.validate(prior.config)
        return (MultiLatentSpec(prior, config),)


class GANPriorOptimizer:
    DESCRIPTION = ("Settings of the per-image optimisation (Adam): when to stop (auto: once the fill "
                   "stops improving, at most `steps`; fixed: exactly `steps`, the paper's protocol), "
                   "learning rate per parameter group, loss weights, precision, compilation. Without "
                   "this node GAN-Prior Inpaint uses these defaults.")
    CATEGORY = CATEGORY
    FUNCTION = "configure"
    RETURN_TYPES = ("GANPRIOR_OPTIMIZER",)
    RETURN_NAMES = ("optimizer",)
    OUTPUT_TOOLTIPS = ("These optimisation settings, for GAN-Prior Inpaint's optimizer input.",)

    TOOLTIPS = {
        "steps": "The most optimisation steps per image with stop = auto; exactly this many with "
                 "stop = fixed (the paper: 3000). Time grows linearly with the steps run.",
        "lr_latent": "Learning rate of the latent codes z.",
        "lr_alpha": "Learning rate of the channel weights alpha.",
        "lr_beta": "Learning rate of the feature-map weights beta.",
        "lr_generator": "Learning rate of the fine-tuned generator weights (0 = frozen).",
        "schedule": "constant, or cosine decay of all learning rates to 0 at the last step.",
        "mse_weight": "Weight of the pixel loss on the known pixels.",
        "perceptual_weight": "Weight of the VGG16 perceptual loss (paper's choice: 0.1 for "
                             "inpainting, 1 for reconstruction). Needs Load Perceptual Model; "
                             "ignored without it.",
        "precision": "auto: bfloat16 autocast where the device has native bf16 arithmetic (recent "
                     "NVIDIA GPUs, CPUs with AVX-512 BF16 or AMX), else fp32. bf16 on a CPU "
                     "without it runs several times slower than fp32.",
        "preview_every": "Show the current image in the progress preview every this many steps.",
        "compile": "torch.compile the forward pass and loss. auto: only where the run is long "
                   "enough to repay the compilation (large priors; paid once per ComfyUI session, "
                   "about a minute); on: always; off: never. Where compiling cannot work the run "
                   "falls back to eager and says so.",
        "stop": STOP_TOOLTIP,
        "freeze_g1_at": "With finetune = all: from this step on the codes and G1 are frozen and their "
                        "features computed once, so a step runs only G2 (several times faster; "
                        "docs/late_phase.md). 0: never, every step runs G1 (the paper's computation).",
    }

    @classmethod
    def INPUT_TYPES(cls):
        defaults = OptimizerConfig()
        spec = {
            "steps": ("INT", {"default": defaults.steps, "min": 1, "max": 1000000}),
            "lr_latent": ("FLOAT", {"default": defaults.lr_latent, "min": 0.0, "max": 10.0, "step": 0.001}),
            "lr_alpha": ("FLOAT", {"default": defaults.lr_alpha, "min": 0.0, "max": 10.0, "step": 0.001}),
            "lr_beta": ("FLOAT", {"default": defaults.lr_beta, "min": 0.0, "max": 10.0, "step": 0.001}),
            "lr_generator": ("FLOAT", {"default": defaults.lr_generator, "min": 0.0, "max": 1.0,
                                       "step": 0.00001, "round": False}),
            "schedule": (list(SCHEDULES), {"default": defaults.schedule}),
            "mse_weight": ("FLOAT", {"default": defaults.mse_weight, "min": 0.0, "max": 100.0, "step": 0.01}),
            "perceptual_weight": ("FLOAT", {"default": defaults.perceptual_weight, "min": 0.0,
                                            "max": 100.0, "step": 0.01}),
            "precision": (list(PRECISIONS), {"default": defaults.precision}),
            "preview_every": ("INT", {"default": defaults.preview_every, "min": 1, "max": 10000}),
        }
        optional = {
            # Inputs added after the node first shipped: optional, so API prompts saved before
            # them still run, as they ran then (configure's defaults: compile off, stop fixed,
            # freeze_g1_at the library's 100). The widgets show the library's defaults, and keep
            # their order (required, then optional), so saved workflows' values stay in place.
            "compile": (list(COMPILE_CHOICES), {"default": defaults.compile}),
            "stop": (list(STOP_MODES), {"default": defaults.stop}),
            "freeze_g1_at": ("INT", {"default": defaults.freeze_g1_at or 0, "min": 0, "max": 1000000}),
        }
        return {"required": {name: (kind, {**options, "tooltip": cls.TOOLTIPS[name]})
                             for name, (kind, options) in spec.items()},
                "optional": {name: (kind, {**options, "tooltip": cls.TOOLTIPS[name]})
                             for name, (kind, options) in optional.items()}}

    @classmethod
    def VALIDATE_INPUTS(cls, compile=None, lr_latent=None, lr_alpha=None, lr_beta=None,
                        lr_generator=None, mse_weight=None, perceptual_weight=None):
        # Learning rates and loss weights: NaN passes ComfyUI's min/max check (every comparison
        # with NaN is false) and would fail only once the node runs, so they are checked here.
        # ComfyUI skips its own checks for the inputs named here and passes None for a linked
        # input (its value is not known before the run, where OptimizerConfig.validate checks it).
        # `compile` replaces the list check: workflows saved while it was an on/off switch carry
        # true/false, which keep meaning on/off instead of failing "not in list".
        if compile is not None:
            try:
                parse_compile_setting(compile)
            except ValueError as error:
                return str(error)
        values = dict(lr_latent=lr_latent, lr_alpha=lr_alpha, lr_beta=lr_beta,
                      lr_generator=lr_generator, mse_weight=mse_weight,
                      perceptual_weight=perceptual_weight)
        declared = cls.INPUT_TYPES()["required"]
        for name, value in values.items():
            if value is None:
                continue
            options = declared[name][1]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return (f"{name} must be a finite number between {options['min']:g} and "
                        f"{options['max']:g}, got {value!r}")
            if not options["min"] <= value <= options["max"]:  # ComfyUI's min/max check, kept
                return f"{name} must be between {options['min']:g} and {options['max']:g}, got {value!r}"
        return True

    def configure(self, compile="off", stop="fixed", freeze_g1_at=OptimizerConfig.freeze_g1_at, **settings):
        config = OptimizerConfig(**settings, compile=parse_compile_setting(compile), stop=stop,
                                 freeze_g1_at=freeze_g1_at or None)
        config.validate()
        return (config,)


class GANPriorPreset:
    DESCRIPTION = ("A named configuration for the prior: 'paper' (30 codes fused at 1/8 of the "
                   "resolution but no coarser than 16x16, alpha + beta, full fine-tuning), "
                   "'mganprior' (30 codes at 1/32 but no coarser than 8x8, alpha only, frozen "
                   "generator) or 'single-z' (one code, plain GAN inversion).")
    CATEGORY = CATEGORY
    FUNCTION = "choose"
    RETURN_TYPES = ("MULTI_LATENT_GENERATOR", "GANPRIOR_OPTIMIZER")
    RETURN_NAMES = ("generator", "optimizer")
    OUTPUT_TOOLTIPS = ("The prior with the preset's model (codes N, split layer k scaled to the prior's "
                       "resolution, alpha, beta, fine-tuning), for GAN-Prior Inpaint's generator input.",
                       "The preset's optimisation settings with this node's steps and stop, for "
                       "GAN-Prior Inpaint's optimizer input.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "prior": prior_input("The prior to configure: its resolution sets the split layer."),
            "preset": (list(PRESET_NAMES), {"default": PRESET_NAMES[0],
                                            "tooltip": "paper: this paper's method; mganprior: "
                                                       "the mGANprior baseline; single-z: one "
                                                       "latent code, frozen generator."}),
            "steps": ("INT", {"default": 0, "min": 0, "max": 1000000,
                              "tooltip": "The most steps per image (stop = auto) or exactly this "
                                         "many (stop = fixed); 0 keeps the preset's "
                                         f"({OptimizerConfig().steps})."}),
        }, "optional": {
            # Added after the node first shipped: optional, so API prompts saved before it run
            # as they ran then (choose's default: fixed); the widget shows the library's default.
            "stop": (list(STOP_MODES), {"default": OptimizerConfig().stop, "tooltip": STOP_TOOLTIP}),
        }}

    def choose(self, prior, preset, steps, stop="fixed"):
        model_config, optimizer_config = preset_configs(preset, prior.config)
        optimizer_config = replace(optimizer_config, stop=stop, **({"steps": steps} if steps else {}))
        return (MultiLatentSpec(prior, model_config), optimizer_config)


class LoadPerceptualModel:
    DESCRIPTION = ("Loads torchvision's VGG16 weights (vgg16-397923af.pth or a .safetensors copy) "
                   "from ComfyUI/models/vgg for the perceptual loss. Nothing is downloaded.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("PERCEPTUAL_MODEL",)
    RETURN_NAMES = ("perceptual_model",)
    OUTPUT_TOOLTIPS = ("VGG16's convolutional layers for GAN-Prior Inpaint's perceptual loss (weighted "
                       "by the optimizer's perceptual_weight). Shared and cached: never changed.",)

    @classmethod
    def INPUT_TYPES(cls):
        names = host.model_names("vgg")
        return {"required": {"vgg_name": (names, {"tooltip": "A file in models/vgg."})}}

    @classmethod
    def VALIDATE_INPUTS(cls, vgg_name=None):
        # As Load GAN Prior's: a missing file is one instruction, not "value not in list".
        return True if vgg_name is None else host.missing_model_message("vgg", vgg_name) or True

    @classmethod
    def IS_CHANGED(cls, vgg_name):
        return host.model_identity("vgg", vgg_name)  # as Load GAN Prior's: the file, not its name

    def load(self, vgg_name):
        # Outside inference mode: the loss back-propagates through these weights.
        with torch.inference_mode(False):
            return (load_vgg16_features(host.model_path("vgg", vgg_name)),)
