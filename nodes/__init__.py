"""ComfyUI nodes: thin wrappers that declare inputs and call ganprior_core."""
from .inpaint_nodes import GANPriorInpaint, GANPriorMetrics
from .model_nodes import (
                          BuildMultiLatentGenerator,
                          GANPriorOptimizer,
                          GANPriorPreset,
                          LoadGANPrior,
                          LoadPerceptualModel,
                          SampleGANPrior,
)
from .restore_nodes import GANPriorRestore

# Node IDs (the keys) are what saved workflows and API prompts name: never change them, even
# where they say PGGAN of a node that serves StyleGAN2 as well. The display names may change.
NODE_CLASS_MAPPINGS = {
    "LoadPGGANPrior": LoadGANPrior,
    "SamplePGGANPrior": SampleGANPrior,
    "BuildMultiLatentGenerator": BuildMultiLatentGenerator,
    "GANPriorOptimizer": GANPriorOptimizer,
    "GANPriorPreset": GANPriorPreset,
    "LoadPerceptualModelVGG16": LoadPerceptualModel,
    "GANPriorInpaint": GANPriorInpaint,
    "GANPriorMetrics": GANPriorMetrics,
    "GANPriorRestore": GANPriorRestore,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadPGGANPrior": "Load GAN Prior",
    "SamplePGGANPrior": "Sample GAN Prior",
    "BuildMultiLatentGenerator": "Build Multi-Latent Generator",
    "GANPriorOptimizer": "GAN-Prior Optimizer",
    "GANPriorPreset": "GAN-Prior Preset",
    "LoadPerceptualModelVGG16": "Load Perceptual Model (VGG16)",
    "GANPriorInpaint": "GAN-Prior Inpaint",
    "GANPriorMetrics": "GAN-Prior Metrics",
    "GANPriorRestore": "GAN-Prior Restore",
}
