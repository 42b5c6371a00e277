"""Test images: exact 8-bit values, and a smooth image resampling keeps close."""
import torch


def quantized_image(height, width, seed=0):
    """Values that are exact multiples of 1/255, so an 8-bit round trip is lossless."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), generator=generator).float() / 255


def smooth_image(height, width):
    rows = torch.linspace(0, 1, height)[:, None].expand(height, width)
    cols = torch.linspace(0, 1, width)[None, :].expand(height, width)
    return torch.stack([rows, cols, 0.5 + 0.4 * torch.sin(3 * rows + 2 * cols)])
