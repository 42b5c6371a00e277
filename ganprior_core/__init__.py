"""ganprior_core: image inpainting with a pretrained PGGAN as the prior (no ComfyUI inside)."""
