"""GAN-Prior Inpainting: ComfyUI nodes that inpaint with a pretrained PGGAN or StyleGAN2 as the prior.

ComfyUI imports this folder as a package under whatever name the folder has; the library
itself is `ganprior_core` (no ComfyUI inside).
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
