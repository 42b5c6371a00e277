"""The inpainting node and the metrics node."""
from __future__ import annotations

import logging

import torch

from ..ganprior_core import (
    MAX_STARTS,
    OptimizerConfig,
    StartsConfig,
    check_inpaint_fits,
    estimated_run_bytes,
    inpaint_any_size,
    inpaint_batch_any_size,
    measure,
)
from ..ganprior_core.imaging import FIT_MODES, hole_pixels
from ..ganprior_core.validation import check_seed
from . import host, previews, tensors
from .inputs import CATEGORY, GENERATOR_TOOLTIP, seed_input

log = logging.getLogger(__name__)
DEFAULT_STARTS = StartsConfig()


class GANPriorInpaint:
    DESCRIPTION = ("Fills the masked area (mask 1 = inpaint) with what the GAN prior can generate: "
                   "latent codes, weights and generator are optimised per image until the generator "
                   "reproduces the known pixels. By default each run stops by itself once the fill "
                   "stops improving and returns an image from before its best check; the optimizer or preset node's "
                   "stop = fixed runs the paper's fixed number of steps. Any size and aspect; known "
                   "pixels are kept exactly. An empty mask reconstructs the whole image (GAN "
                   "inversion).")
    CATEGORY = CATEGORY
    FUNCTION = "inpaint"
    RETURN_TYPES = ("IMAGE", "IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("image", "generated", "mask", "info")
    OUTPUT_TOOLTIPS = (
        "The input with the masked area filled, at the input's size; with candidates > 1, each "
        "image's candidates in a row, the best first.",
        "The generator's whole image, brought back to the input's size (not composited): "
        "with an empty mask, the reconstruction. Ordered as `image`.",
        "The mask used for compositing: resized to the image, one per image of `image`.",
        "Per image (and candidate): time, steps run and why the run stopped (auto-stop: the "
        "returned image's step), the start's seed and agreement, final loss and notes.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "Images to inpaint; each image gets its own "
                                               "optimisation, a batch's optimised together (with "
                                               "starts = 1; on a CPU the same results as one by "
                                               "one, on a GPU one vectorised fp32 pass, the same "
                                               "up to float rounding). An alpha channel is "
                                               "ignored: the mask says what to fill."}),
                "mask": ("MASK", {"tooltip": "1 = fill, 0 = keep (LoadImage's mask from the alpha "
                                             "channel works as is). Resized to the image; a batch of "
                                             "1 applies to every image. Empty: reconstruction."}),
                "generator": ("MULTI_LATENT_GENERATOR", {"tooltip": GENERATOR_TOOLTIP}),
                "seed": seed_input("Seed of the random latent codes the optimisation starts from. "
                                   "Image i of a batch uses seed + i."),
                "fit": (list(FIT_MODES), {"default": FIT_MODES[0],
                                          "tooltip": "How an image that is not the prior's square "
                                                     "resolution gets there: resize (stretch) or pad "
                                                     "(keep the aspect; the padding is generated "
                                                     "freely and cropped away)."}),
            },
            "optional": {
                "optimizer": ("GANPRIOR_OPTIMIZER", {"tooltip": "Optimisation settings; default: "
                                                                "the GAN-Prior Optimizer node's defaults."}),
                "perceptual_model": ("PERCEPTUAL_MODEL", {"tooltip": "VGG16 for the perceptual loss; "
                                                                     "without it only the pixel loss "
                                                                     "is used."}),
                "starts": ("INT", {"default": DEFAULT_STARTS.starts, "min": 1, "max": MAX_STARTS,
                                   "tooltip": "Independent starts per image (their own seeds, "
                                              "derived from seed). After "
                                              f"{DEFAULT_STARTS.choose_at} steps they are compared "
                                              "by how well their fills of the hole agree, and the "
                                              "best continue; the others stop there. On a GPU the "
                                              "starts run side by side in one vectorised fp32 pass "
                                              "where they fit; on a CPU one after another. 1: one "
                                              "run."}),
                "candidates": ("INT", {"default": DEFAULT_STARTS.candidates, "min": 1,
                                       "max": MAX_STARTS,
                                       "tooltip": "Fills returned per image, the best first (at "
                                                  "most `starts`): a batch to look at and pick "
                                                  "from; info gives each one's seed, which re-runs "
                                                  "it alone with starts = 1."}),
            },
        }

    def inpaint(self, image, mask, generator, seed, fit, optimizer=None, perceptual_model=None,
                starts=DEFAULT_STARTS.starts, candidates=DEFAULT_STARTS.candidates):
        optimizer = optimizer or OptimizerConfig()
        check_seed(seed)  # before `seed + index` wraps a seed beyond the widget's range
        starts_config = StartsConfig(starts, DEFAULT_STARTS.choose_at, candidates)
        starts_config.validate()
        device = host.torch_device()
        try:
            return self._inpaint(image, mask, generator, seed, fit, optimizer, perceptual_model,
                                 device, starts_config)
        finally:
            host.release_memory()

    def _inpaint(self, image, mask, generator, seed, fit, optimizer, perceptual_model, device,
                 starts):
        # ComfyUI runs nodes under inference_mode; the optimisation needs autograd, and tensors
        # made in inference mode cannot take part in it: clone inside.
        with torch.inference_mode(False), torch.enable_grad():
            images = tensors.to_core_images(image)  # checked; a view of the IMAGE where it can be
            masks = tensors.to_core_masks(mask, images.shape[-2:])
            input_notes = tensors.input_notes(image, mask)
            batch = len(tensors.match_batch_sizes(images, masks)[0])  # refuses unequal batches
            # The run copies the prior and VGG16 to the device: once the inputs are known to be
            # good, let ComfyUI unload its own models if they leave too little room there (the
            # cache goes back to it afterwards, in `inpaint`).
            host.make_room(working_memory(generator, optimizer, perceptual_model), device)
            # Before any image-sized copy: the run and every copy of the batch this node holds
            # must fit, else one line says what would (an out-of-memory kill takes the host).
            check_inpaint_fits(generator.prior, generator.config, optimizer, perceptual_model,
                               device, image_size=tuple(images.shape[-2:]),
                               image_copies=node_image_copies(batch * starts.candidates),
                               starts=starts.starts)
            images, masks = tensors.match_batch_sizes(images.clone(), masks.clone())
            seeds = [(seed + index) % 2 ** 64 for index in range(len(images))]
            together = None
            if starts.starts == 1 and len(images) > 1:
                # One run for the batch, each image's result equal to its own run's, as many
                # images at once as fit (the library's inpaint_batch_any_size).
                progress = previews.InpaintTogetherProgress(len(images), optimizer.steps)
                together = inpaint_batch_any_size(
                    generator.prior, list(images), list(masks), generator.config, optimizer,
                    seeds, fit, device, perceptual_model,
                    callbacks=[progress.reporter(index) for index in range(len(images))],
                    image_copies=NODE_IMAGE_COPIES_PER_IMAGE + NODE_RUN_IMAGE_COPIES)
            else:
                progress = previews.InpaintProgress(len(images), optimizer.steps)
            filled, generated, used_masks, info, shown = [], [], [], [], []
            for index, (original, hole) in enumerate(zip(images, masks)):
                result = together[index] if together is not None else inpaint_any_size(
                    generator.prior, original, hole, generator.config, optimizer, seeds[index],
                    fit, device, perceptual_model, callback=progress.reporter(index),
                    starts=starts)
                has_hole = bool(hole_pixels(hole).any())
                for rank, candidate in enumerate(result.candidates(), start=1):
                    # The node shows what it returns: the filled image, or with nothing to fill
                    # (an empty mask) the reconstruction.
                    shown.append(candidate.composite if has_hole else candidate.output)
                    generated.append(candidate.output)
                    filled.append(candidate.composite)
                    used_masks.append(hole)
                    info.append("; ".join([_info_line(candidate, index, rank, starts.candidates),
                                           *candidate.notes, *input_notes]))
                # The bar counts the steps this image took, every start's.
                progress.finished(index, result.steps_of_the_run, shown[-starts.candidates],
                                  result.summary())
                for note in result.notes:
                    log.warning("GAN-Prior Inpaint, image %d: %s", index + 1, note)
        outputs = (tensors.to_comfy_images(torch.stack(filled)),
                   tensors.to_comfy_images(torch.stack(generated)),
                   torch.stack(used_masks).contiguous(), "\n".join(info))
        # The node's last picture is the image it returns (and its UI output, inside ComfyUI).
        ui = progress.done(torch.stack(shown))
        return outputs if ui is None else {"ui": ui, "result": outputs}


def _info_line(result, index: int, rank: int, candidates: int) -> str:
    which = f"image {index + 1}" + (f", candidate {rank}" if candidates > 1 else "")
    if not result.loss_history:  # nothing was known: a sample, no steps to count
        return f"{which}: unconditional sample (seed {result.seed})"
    choice = result.describe_choice()
    return (f"{which}: {result.seconds:.1f} s, {result.describe_stop()}, "
            f"{choice + ', ' if choice else ''}final loss {result.loss_history[-1]:.5f}")


# Image-sized [3, H, W] float32 copies the node holds per image of a batch (its copy of the
# input and mask, the composite and generated image, their stacked batches and ComfyUI IMAGEs),
# and those one run holds besides: measured 6.4 for one 4096x4096 image, 15.2 for two
# (docs/memory.md).
NODE_IMAGE_COPIES_PER_IMAGE = 9.0
NODE_RUN_IMAGE_COPIES = 3.0


def node_image_copies(batch: int) -> float:
    return NODE_IMAGE_COPIES_PER_IMAGE * batch + NODE_RUN_IMAGE_COPIES


def working_memory(generator, optimizer, perceptual_model) -> int:
    """Device memory (bytes) one image's optimisation needs (the library's estimate)."""
    return estimated_run_bytes(generator.prior, generator.config, optimizer.perceptual_weight,
                               perceptual_model)


class GANPriorMetrics:
    DESCRIPTION = ("PSNR and SSIM of an image against a reference (the paper's metrics), over the "
                   "whole image; with a mask, the report adds the scores inside the masked area.")
    CATEGORY = CATEGORY
    FUNCTION = "measure"
    RETURN_TYPES = ("FLOAT", "FLOAT", "STRING")
    RETURN_NAMES = ("psnr", "ssim", "report")
    OUTPUT_TOOLTIPS = ("PSNR in dB of the whole image (mean over a batch; inf if identical).",
                       "SSIM of the whole image (mean over a batch).",
                       "Whole-image and in-mask scores per image, for Preview as Text.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The result to score."}),
                "reference": ("IMAGE", {"tooltip": "The ground truth, same size as the image."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "The inpainted area (1 = inpainted), resized to the "
                                             "image: adds scores inside it."}),
            },
        }

    def measure(self, image, reference, mask=None):
        images, references = tensors.match_batch_sizes(tensors.to_core_images(image),
                                                       tensors.to_core_images(reference))
        if images.shape != references.shape:
            raise ValueError(f"image {images.shape[-1]}x{images.shape[-2]} and reference "
                             f"{references.shape[-1]}x{references.shape[-2]} (width x height) must "
                             "be the same size")
        holes = [None] * len(images)
        if mask is not None:
            _, holes = tensors.match_batch_sizes(images, tensors.to_core_masks(mask, images.shape[-2:]))
        reports = [measure(result, truth, hole if hole is not None and bool(hole_pixels(hole).any())
                           else None)
                   for result, truth, hole in zip(images, references, holes)]
        text = "\n".join(report.multi_line() if len(reports) == 1
                         else f"image {index + 1}: {report.one_line()}"
                         for index, report in enumerate(reports))
        return (sum(r.psnr for r in reports) / len(reports),
                sum(r.ssim for r in reports) / len(reports), text)
