"""The restoration node: super-resolution, colorization and holes, alone or together (issue 33)."""
from __future__ import annotations

import logging

import torch

from ..ganprior_core import (
    DOWNSAMPLERS,
    MAX_STARTS,
    OptimizerConfig,
    StartsConfig,
    check_inpaint_fits,
    restoration_chain,
    restore_any_size,
    restore_batch_any_size,
)
from ..ganprior_core.imaging import FIT_MODES, MAX_IMAGE_PIXELS, hole_pixels
from ..ganprior_core.validation import check_seed
from . import host, previews, tensors
from .inpaint_nodes import node_image_copies, working_memory
from .inputs import CATEGORY, GENERATOR_TOOLTIP, seed_input

log = logging.getLogger(__name__)
DEFAULT_STARTS = StartsConfig()
MAX_SCALE = 8
# Image-sized copies a restoration's step holds besides inpainting's (ganprior_core's
# method/restore.py: the high-resolution image, its observation, their gradients, the projection).
RESTORE_RUN_IMAGE_COPIES = 6.0


class GANPriorRestore:
    DESCRIPTION = ("Restores images with what the GAN prior can generate: super-resolution (scale: "
                   "the input is the low-resolution image, made with `downsampler`), colorization "
                   "(gray: a colour input is read as its luma) and holes (mask), alone or together "
                   "in one run. The result is consistent with the input: degrading it as said "
                   "gives the input back (info says how exactly). Stops by itself as Inpaint does.")
    CATEGORY = CATEGORY
    FUNCTION = "restore"
    RETURN_TYPES = ("IMAGE", "IMAGE", "STRING")
    RETURN_NAMES = ("image", "generated", "info")
    OUTPUT_TOOLTIPS = (
        "The restored image, `scale` times the input's size, consistent with the input; with "
        "candidates > 1, each image's candidates in a row, the best first.",
        "The generator's whole image at the result's size, before it was made consistent with "
        "the input. Ordered as `image`.",
        "Per image (and candidate): time, steps run and why the run stopped, the start's seed "
        "and agreement, final loss, how consistent the result is, and notes.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "Images to restore (the low-resolution and/or gray "
                                               "input); each image gets its own optimisation, a "
                                               "batch's optimised together (with starts = 1; on a "
                                               "CPU the same results as one by one, on a GPU "
                                               "vectorised fp32 passes, the same up to float "
                                               "rounding). An alpha channel is ignored."}),
                "generator": ("MULTI_LATENT_GENERATOR", {"tooltip": GENERATOR_TOOLTIP}),
                "seed": seed_input("Seed of the random latent codes the optimisation starts from. "
                                   "Image i of a batch uses seed + i."),
                "fit": (list(FIT_MODES), {"default": FIT_MODES[0],
                                          "tooltip": "How a result that is not the prior's square "
                                                     "resolution gets there: resize (stretch) or pad "
                                                     "(keep the aspect; the padding is generated "
                                                     "freely and cropped away)."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Holes to fill, on the input's grid: 1 = fill, 0 = "
                                             "keep. Resized to the image; a batch of 1 applies to "
                                             "every image. Not connected: no hole."}),
                "optimizer": ("GANPRIOR_OPTIMIZER", {"tooltip": "Optimisation settings; default: "
                                                                "the GAN-Prior Optimizer node's defaults."}),
                "perceptual_model": ("PERCEPTUAL_MODEL", {"tooltip": "VGG16 for the perceptual loss "
                                                                     "(on the input's grid; left out "
                                                                     "under 32 pixels a side); "
                                                                     "without it only the pixel "
                                                                     "loss is used."}),
                "scale": ("INT", {"default": 1, "min": 1, "max": MAX_SCALE,
                                  "tooltip": "Super-resolution factor: the result is this many "
                                             "times the input on each side. 1: none."}),
                "downsampler": (list(DOWNSAMPLERS), {"default": DOWNSAMPLERS[0],
                                                     "tooltip": "How the low-resolution input was "
                                                                "made: area (mean of scale x scale "
                                                                "blocks), bilinear or bicubic "
                                                                "(antialiased, as PIL makes "
                                                                "thumbnails). Used when scale > 1."}),
                "gray": ("BOOLEAN", {"default": False,
                                     "tooltip": "Colourise: the input is gray (a colour input is "
                                                "read as its BT.601 luma); the result keeps that "
                                                "luma and takes its colour from the prior."}),
                "starts": ("INT", {"default": DEFAULT_STARTS.starts, "min": 1, "max": MAX_STARTS,
                                   "tooltip": "Independent starts per image (their own seeds, "
                                              "derived from seed). After "
                                              f"{DEFAULT_STARTS.choose_at} steps they are compared "
                                              "by how well their results agree, and the best "
                                              "continue; the others stop there. 1: one run."}),
                "candidates": ("INT", {"default": DEFAULT_STARTS.candidates, "min": 1,
                                       "max": MAX_STARTS,
                                       "tooltip": "Results returned per image, the best first (at "
                                                  "most `starts`); info gives each one's seed."}),
            },
        }

    def restore(self, image, generator, seed, fit, mask=None, optimizer=None, perceptual_model=None,
                scale=1, downsampler=DOWNSAMPLERS[0], gray=False, starts=DEFAULT_STARTS.starts,
                candidates=DEFAULT_STARTS.candidates):
        optimizer = optimizer or OptimizerConfig()
        check_seed(seed)  # before `seed + index` wraps a seed beyond the widget's range
        if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
            raise ValueError(f"scale must be an integer from 1 to {MAX_SCALE}, got {scale!r}")
        if downsampler not in DOWNSAMPLERS:
            raise ValueError(f"unknown downsampler {downsampler!r}; accepted: {', '.join(DOWNSAMPLERS)}")
        starts_config = StartsConfig(starts, DEFAULT_STARTS.choose_at, candidates)
        starts_config.validate()
        device = host.torch_device()
        try:
            return self._restore(image, mask, generator, seed, fit, optimizer, perceptual_model,
                                 scale, downsampler, bool(gray), device, starts_config)
        finally:
            host.release_memory()

    def _restore(self, image, mask, generator, seed, fit, optimizer, perceptual_model, scale,
                 downsampler, gray, device, starts):
        with torch.inference_mode(False), torch.enable_grad():
            images = tensors.to_core_images(image)
            if mask is None:
                masks = torch.zeros(1, *images.shape[-2:])
            else:
                masks = tensors.to_core_masks(mask, images.shape[-2:])
            input_notes = tensors.input_notes(image, mask)
            batch = len(tensors.match_batch_sizes(images, masks)[0])  # refuses unequal batches
            holes = [bool(hole_pixels(hole).any()) for hole in masks]
            if scale == 1 and not gray and not all(holes):
                raise ValueError("nothing to restore: set scale above 1, turn gray on, or connect a "
                                 "mask with a hole for every image (GAN-Prior Inpaint reconstructs)")
            size = (images.shape[-2] * scale, images.shape[-1] * scale)
            if size[0] * size[1] > MAX_IMAGE_PIXELS:
                raise ValueError(f"scale {scale}: the result would be {size[1]}x{size[0]} pixels, "
                                 f"over the {MAX_IMAGE_PIXELS:,} accepted")
            host.make_room(working_memory(generator, optimizer, perceptual_model), device)
            check_inpaint_fits(generator.prior, generator.config, optimizer, perceptual_model,
                               device, image_size=size,
                               image_copies=node_image_copies(batch * starts.candidates)
                               + RESTORE_RUN_IMAGE_COPIES,
                               starts=starts.starts)
            images, masks = tensors.match_batch_sizes(images.clone(), masks.clone())
            seeds = [(seed + index) % 2 ** 64 for index in range(len(images))]
            chains = [restoration_chain(gray=gray, scale=scale,
                                        downsampler=downsampler if scale > 1 else None,
                                        hole_mask=hole if bool(hole_pixels(hole).any()) else None)
                      for hole in masks]
            together = None
            if starts.starts == 1 and len(images) > 1:
                # One run for the batch, each image's result equal to its own run's, as many
                # images at once as fit (the library's restore_batch_any_size).
                progress = previews.InpaintTogetherProgress(len(images), optimizer.steps)
                together = restore_batch_any_size(
                    generator.prior, list(images), chains, generator.config, optimizer, seeds,
                    fit, device, perceptual_model,
                    callbacks=[progress.reporter(index) for index in range(len(images))],
                    image_copies=node_image_copies(1) + RESTORE_RUN_IMAGE_COPIES)
            else:
                progress = previews.InpaintProgress(len(images), optimizer.steps)
            restored, generated, info, shown = [], [], [], []
            for index, (observed, degradation) in enumerate(zip(images, chains)):
                result = together[index] if together is not None else restore_any_size(
                    generator.prior, observed, degradation, generator.config, optimizer,
                    seeds[index], fit, device, perceptual_model,
                    callback=progress.reporter(index), starts=starts)
                for rank, candidate in enumerate(result.candidates(), start=1):
                    shown.append(candidate.restored)
                    restored.append(candidate.restored)
                    generated.append(candidate.output)
                    info.append("; ".join([_info_line(candidate, index, rank, starts.candidates),
                                           *candidate.notes, *input_notes]))
                progress.finished(index, result.steps_of_the_run, shown[-starts.candidates],
                                  result.summary())
                for note in result.notes:
                    log.warning("GAN-Prior Restore, image %d: %s", index + 1, note)
        outputs = (tensors.to_comfy_images(torch.stack(restored)),
                   tensors.to_comfy_images(torch.stack(generated)), "\n".join(info))
        ui = progress.done(torch.stack(shown))
        return outputs if ui is None else {"ui": ui, "result": outputs}


def _info_line(result, index: int, rank: int, candidates: int) -> str:
    which = f"image {index + 1}" + (f", candidate {rank}" if candidates > 1 else "")
    report = result.projection
    consistency = (f"consistent with the input (max error {report.max_error * 255:.3g} grey levels)"
                   if report.consistent else
                   f"NOT consistent with the input (max error {report.max_error * 255:.3g} grey levels)")
    if not result.loss_history:
        return f"{which}: unconditional sample (seed {result.seed}), {consistency}"
    choice = result.describe_choice()
    return (f"{which}: {result.seconds:.1f} s, {result.describe_stop()}, "
            f"{choice + ', ' if choice else ''}final loss {result.loss_history[-1]:.5f}, {consistency}")
