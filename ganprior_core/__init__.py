"""ganprior_core: inpainting with a pretrained GAN (PGGAN or StyleGAN2) as the image prior.

The library's flow is load -> build -> optimise -> measure:
- `checkpoints`: read a prior file of any supported layout (`load_generator`), never running
  anything from it; write this project's `.safetensors`.
- `networks`: the generators (`pggan`, `stylegan2`), each splittable into G1 and G2.
- `method` (entry point `optimize`): the multi-latent model, its losses, presets, the per-image
  optimisation with auto-stop, compilation and precision.
- `imaging`, `metrics`, `sampling`: image and mask files and checks, PSNR/SSIM, seeded samples.

`lab` holds the research tools around the library (benchmarks, training, baselines, procedural
data); the library and the ComfyUI nodes never import it. See ganprior_core/README.md.
"""
