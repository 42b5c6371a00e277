"""What an image or a hole mask must be: the value checks every entry point shares, and the one rule
for which mask values are holes.

Images are float32 tensors [3, H, W] in [0, 1]; hole masks are float32 [H, W] with 1 = hole.
Masks coming from outside may be soft (e.g. feathered ComfyUI masks): wherever a binary mask is
needed, pixels >= HOLE_THRESHOLD count as hole.

Tensors from callers are checked, not trusted: an image must be floating point, finite and in
[0, 1] (a uint8, [0, 255] or [-1, 1] image is refused with a message saying so, instead of being
optimised into nonsense); a mask must be finite and in [0, 1] (bool masks are fine). Overshoot of
up to RANGE_TOLERANCE, which bicubic resampling leaves at sharp edges, is accepted. A tensor must
hold values that can be read here (check_holds_values): one on the meta device, in a sparse
layout or on a device this library does not run on is refused with one line, not a RuntimeError
from deep inside torch.
"""
from __future__ import annotations

import torch

from ..validation import COMPUTE_DEVICES

HOLE_THRESHOLD = 0.5  # the one rule: a mask value >= this is a hole (0.5 itself is a hole)
# Below this many pixels on a side there is no structure for the prior to match: a 1x1 "image"
# would still run a whole optimisation, so it is refused instead.
MIN_IMAGE_SIDE = 8
# Values up to this far outside [0, 1] are resampling overshoot (bicubic rings by ~0.1 at hard
# edges) and are clamped; anything further is an image in another range ([0, 255], [-1, 1]).
RANGE_TOLERANCE = 0.25


def hole_pixels(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor, True where `mask` (1 = hole, any shape, soft or bool) marks a hole: values
    >= HOLE_THRESHOLD. Every decision about which pixels are holes goes through here (or, for
    NumPy arrays, compares with HOLE_THRESHOLD the same way)."""
    if mask.dtype == torch.bool:
        return mask
    return mask >= HOLE_THRESHOLD


def to_signed_range(image: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] (the project's images) to [-1, 1] (what the generators produce)."""
    return image * 2 - 1


def to_unit_range(image: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Generator pixels in [-1, 1] to [0, 1]; clamped unless `clamp` is false (for a loss that
    needs the gradient of the raw values)."""
    image = (image + 1) / 2
    return image.clamp(0, 1) if clamp else image


def check_holds_values(tensor: torch.Tensor, name: str) -> None:
    """Refuse a tensor whose values cannot be read here: one on the meta device has a shape and
    no values (reading it, as every value check does, raises a bare RuntimeError), a sparse one
    has no dense pixels, and a device outside validation.COMPUTE_DEVICES is one this library
    never runs on. Anything that is not a tensor passes (the callers' type checks name it)."""
    if not isinstance(tensor, torch.Tensor):
        return
    kind = tensor.device.type
    if kind == "meta":
        raise ValueError(f"{name} is on the meta device: it holds no values; pass a tensor with data")
    if kind not in COMPUTE_DEVICES:
        raise ValueError(f"{name} is on the {kind} device, which this method cannot read; pass a "
                         f"tensor on {', '.join(COMPUTE_DEVICES)}")
    if tensor.layout != torch.strided:
        raise ValueError(f"{name} is a {str(tensor.layout).removeprefix('torch.')} tensor; pass a "
                         "dense one (tensor.to_dense())")


def check_same_device(tensors: dict[str, torch.Tensor]) -> None:
    """Refuse tensors that must be computed together but sit on different devices, naming them."""
    devices = {name: tensor.device for name, tensor in tensors.items() if isinstance(tensor, torch.Tensor)}
    if len(set(devices.values())) > 1:
        where = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"{where}: put them on one device first (.to(device))")


def check_image_values(values: torch.Tensor, name: str, data_range: float = 1.0) -> None:
    """Refuse pixel values that are not floating point, not finite or not in [0, data_range].

    Any shape; overshoot within RANGE_TOLERANCE * data_range is accepted (see the module doc).
    """
    if not isinstance(values, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(values).__name__}")
    check_holds_values(values, name)
    if not values.dtype.is_floating_point:
        hint = " (divide a uint8 image by 255: image.float() / 255)" if values.dtype == torch.uint8 else ""
        raise ValueError(f"{name} must be a floating-point tensor with values in [0, {data_range:g}], "
                         f"got dtype {values.dtype}{hint}")
    _check_finite_in_range(values, name, data_range, "pixel")


def _check_finite_in_range(values: torch.Tensor, name: str, upper: float, unit: str) -> None:
    if values.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(values.shape)})")
    finite = torch.isfinite(values)
    if not finite.all():
        raise ValueError(f"{name} contains {int((~finite).sum())} NaN or infinite {unit} value(s); "
                         f"every value must be a finite number in [0, {upper:g}]")
    low, high = float(values.min()), float(values.max())
    slack = RANGE_TOLERANCE * upper
    if low < -slack or high > upper + slack:
        guess = None if upper != 1 else "[0, 255]" if high > 2 else "[-1, 1]" if low < 0 else None
        hint = f" (looks like {guess}: convert it to [0, 1] first)" if guess else ""
        raise ValueError(f"{name} values must be in [0, {upper:g}], got {low:.4g} ... {high:.4g}{hint}")


def check_image(image: torch.Tensor, name: str) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        hint = ""
        if isinstance(image, torch.Tensor) and image.dim() == 3 and image.shape[-1] == 3:
            hint = " (channels-last? use image.permute(2, 0, 1))"
        elif isinstance(image, torch.Tensor) and image.dim() == 4 and image.shape[:2] == (1, 3):
            hint = " (a batch of one? pass image[0])"
        raise ValueError(f"{name} must be an RGB tensor [3, H, W] with values in [0, 1], "
                         f"got {shape}{hint}")
    check_image_values(image, name)


def check_mask(hole_mask: torch.Tensor) -> None:
    if not isinstance(hole_mask, torch.Tensor) or hole_mask.dim() != 2:
        shape = tuple(hole_mask.shape) if isinstance(hole_mask, torch.Tensor) else type(hole_mask).__name__
        raise ValueError(f"hole mask must be a tensor [H, W] (1 = hole), got {shape}")
    check_mask_values(hole_mask, "hole mask")


def check_mask_values(hole_mask: torch.Tensor, name: str) -> None:
    """Refuse mask values that are not finite or not in [0, 1] (1 = hole); bool masks pass.

    A NaN would count as known everywhere it appears (NaN >= 0.5 is false) and a [0, 255] mask
    would turn every soft edge into hole, so both are errors rather than guesses.
    """
    if not isinstance(hole_mask, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(hole_mask).__name__}")
    check_holds_values(hole_mask, name)
    if hole_mask.dtype == torch.bool:
        return
    _check_finite_in_range(hole_mask.float(), name, 1.0, "mask")
