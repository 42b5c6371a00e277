"""ComfyUI nodes: thin wrappers that declare inputs and call ganprior_core."""
from .inpaint_nodes import GANPriorInpaint, GANPriorMetrics
from .model_nodes import (
                          BuildMultiLatentGenerator,
                          GANPriorOptimizer,
                          GANPriorPreset,
                          LoadPerceptualModel,
                          LoadPGGANPrior,
                          SamplePGGANPrior,
)

NODE_CLASS_MAPPINGS = {
    "LoadPGGANPrior": LoadPGGANPrior,
    "SamplePGGANPrior": SamplePGGANPrior,
    "BuildMultiLatentGenerator": BuildMultiLatentGenerator,
    "GANPriorOptimizer": GANPriorOptimizer,
    "GANPriorPreset": GANPriorPreset,
    "LoadPerceptualModelVGG16": LoadPerceptualModel,
    "GANPriorInpaint": GANPriorInpaint,
    "GANPriorMetrics": GANPriorMetrics,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadPGGANPrior": "Load PGGAN Prior",
    "SamplePGGANPrior": "Sample PGGAN Prior",
    "BuildMultiLatentGenerator": "Build Multi-Latent Generator",
    "GANPriorOptimizer": "GAN-Prior Optimizer",
    "GANPriorPreset": "GAN-Prior Preset",
    "LoadPerceptualModelVGG16": "Load Perceptual Model (VGG16)",
    "GANPriorInpaint": "GAN-Prior Inpaint",
    "GANPriorMetrics": "GAN-Prior Metrics",
}
