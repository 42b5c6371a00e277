"""GAN-Prior Inpainting: ComfyUI nodes that inpaint with a pretrained PGGAN or StyleGAN2 as the prior.

ComfyUI imports this folder as a package under whatever name the folder has; the library
itself is `ganprior_core` (no ComfyUI inside). Importing the node modules registers nothing with
ComfyUI: the model folders and the example-workflow route are registered here, once.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.registration import register

register()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
