"""Conversions between ComfyUI's tensors and the core's.

ComfyUI: IMAGE [B, H, W, C] in [0, 1]; MASK [B, H, W] or [H, W], 1 = area to inpaint.
Core: images [3, H, W] in [0, 1]; hole masks [H, W], 1 = hole. Both masks mean the same thing,
so masks only change shape, never value.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def to_core_images(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, C] -> [B, 3, H, W] float32 (alpha dropped, gray repeated)."""
    if images.dim() != 4:
        raise ValueError(f"expected an IMAGE batch [B, H, W, C], got shape {tuple(images.shape)}")
    channels = images.shape[-1]
    rgb = images[..., :3] if channels >= 3 else images[..., :1].expand(*images.shape[:3], 3)
    return rgb.permute(0, 3, 1, 2).float()


def to_comfy_images(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, H, W, 3] float32 on the CPU."""
    return images.permute(0, 2, 3, 1).float().cpu().contiguous()


def to_core_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, H', W'] or [H', W'] -> [B, H, W] at the image size (bilinear, as ComfyUI resizes masks)."""
    if masks.dim() == 2:
        masks = masks[None]
    if masks.dim() != 3:
        raise ValueError(f"expected a MASK [B, H, W] or [H, W], got shape {tuple(masks.shape)}")
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
