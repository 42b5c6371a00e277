"""Conversions between ComfyUI's tensors and the core's.

ComfyUI: IMAGE [B, H, W, C] in [0, 1]; MASK [B, H, W] or [H, W], 1 = area to inpaint.
Core: images [3, H, W] in [0, 1]; hole masks [H, W], 1 = hole. Both masks mean the same thing,
so masks only change shape, never value. Both are checked here, at the node boundary, with the
core's rules (layout, finite values in [0, 1]), so a mistake is a ValueError naming the input.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..ganprior_core.imaging import check_image_values, check_mask_values

IMAGE_CHANNELS = (1, 3, 4)  # gray, RGB, RGBA


def to_core_images(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, C] -> [B, 3, H, W] float32 (C = 1, 3 or 4: alpha dropped, gray repeated).

    Refused with a ValueError that says what ComfyUI's IMAGE is: anything but a non-empty
    [B, H, W, C] batch, channels-first [B, C, H, W] tensors (a wrong layout would otherwise be
    read as a very narrow image with garbage colours), and values that are not finite floats in
    [0, 1] (imaging.check_image_values).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected an IMAGE batch [B, H, W, C], got {shape}")
    if images.shape[0] == 0:
        raise ValueError(f"the IMAGE batch is empty (shape {tuple(images.shape)}): nothing to process")
    channels = images.shape[-1]
    if channels not in IMAGE_CHANNELS:
        layout = (" It looks channels-first [B, C, H, W]; ComfyUI's IMAGE is channels-last."
                  if images.shape[1] in IMAGE_CHANNELS else "")
        raise ValueError(f"an IMAGE [B, H, W, C] needs C = 1, 3 or 4 channels, got shape "
                         f"{tuple(images.shape)}.{layout}")
    check_image_values(images, "IMAGE")
    rgb = images[..., :3] if channels >= 3 else images.expand(*images.shape[:3], 3)
    return rgb.permute(0, 3, 1, 2).float()


def input_notes(images: torch.Tensor, masks: torch.Tensor | None = None) -> list[str]:
    """What the conversions to the core's tensors do not keep of checked inputs, one note each:
    a 4th (alpha) channel of IMAGE (dropped: the MASK says what to fill, the outputs are RGB),
    float64 values (computed in float32), a MASK of another size (resized to the image)."""
    notes = []
    if images.shape[-1] == 4:
        notes.append("IMAGE has a 4th (alpha) channel: it is dropped (MASK says what to fill) and "
                     "the outputs are RGB")
    if images.dtype == torch.float64:
        notes.append("IMAGE is float64: computed and returned in float32")
    if masks is not None and tuple(masks.shape[-2:]) != tuple(images.shape[1:3]):
        notes.append(f"MASK {masks.shape[-1]}x{masks.shape[-2]} resized to the image's "
                     f"{images.shape[2]}x{images.shape[1]} (bilinear)")
    return notes


def to_comfy_images(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, H, W, 3] float32 on the CPU."""
    return images.permute(0, 2, 3, 1).float().cpu().contiguous()


def to_core_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, H', W'] or [H', W'] -> [B, H, W] at the image size (bilinear, as ComfyUI resizes masks)."""
    if not isinstance(masks, torch.Tensor) or masks.dim() not in (2, 3):
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"expected a MASK [B, H, W] or [H, W], got {shape}")
    if masks.dim() == 2:
        masks = masks[None]
    if masks.shape[0] == 0:
        raise ValueError(f"the MASK batch is empty (shape {tuple(masks.shape)})")
    check_mask_values(masks, "MASK")
    masks = masks.float()
    if tuple(masks.shape[-2:]) != tuple(size):
        masks = F.interpolate(masks[:, None], size=tuple(size), mode="bilinear",
                              align_corners=False)[:, 0]
    return masks


def match_batch_sizes(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat a batch of 1 to the other's size (one mask for many images, many masks for one image)."""
    count = max(first.shape[0], second.shape[0])
    if first.shape[0] not in (1, count) or second.shape[0] not in (1, count):
        raise ValueError(f"batches of {first.shape[0]} and {second.shape[0]} do not match: give "
                         "equal batches, or a batch of 1 on one side")
    return first.expand(count, *first.shape[1:]), second.expand(count, *second.shape[1:])


def to_pil(image: torch.Tensor) -> Image.Image:
    """[3, H, W] in [0, 1] -> 8-bit RGB PIL image (for progress previews)."""
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).cpu().numpy()))
