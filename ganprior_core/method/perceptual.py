"""VGG16 feature extractor for the perceptual loss, loaded from a file the user names.

The layout is torchvision's `vgg16().features`, so its `vgg16-*.pth` state dict loads directly;
there is no download and never a silently random network.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..files import UserFileError, require_regular_file
from ..imaging.checks import to_unit_range

VGG_EXTENSIONS = (".pth", ".pt", ".safetensors")
DEFAULT_DEPTH = 16  # features[:16] ends with relu3_3, as in mGANprior
# torchvision's VGG16 "D" configuration; "M" is a 2x2 max pool.
VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
               512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualModelError(ValueError):
    pass


def _vgg16_feature_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    in_channels = 3
    for item in VGG16_PLAN:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = item
    return layers


class VGG16Features(nn.Sequential):
    """`torchvision.models.vgg16().features[:depth]`; takes images in [-1, 1]."""

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        all_layers = _vgg16_feature_layers()
        if not 1 <= depth <= len(all_layers):
            raise PerceptualModelError(
                f"VGG16 feature depth must be between 1 and {len(all_layers)}, got {depth}")
        super().__init__(*all_layers[:depth])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (to_unit_range(images, clamp=False) - self.mean) / self.std
        for layer in self:
            x = layer(x)
        return x


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file to the user
        raise PerceptualModelError(
            f"cannot read VGG16 weights from {path}: {error}. Expected torchvision's "
            f"vgg16-*.pth state dict or a .safetensors file with the same keys") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PerceptualModelError(f"{path} does not hold a state dict of tensors")
    return state


def load_vgg16_features(path: str | Path, depth: int = DEFAULT_DEPTH) -> VGG16Features:
    """Load torchvision VGG16 weights (keys `features.{i}.weight` / `.bias`, classifier ignored)."""
    try:
        path = require_regular_file(path, "VGG16 weights file")
    except UserFileError as error:  # no file, a directory, a pipe (opening one would block)...
        raise PerceptualModelError(str(error)) from None
    state = _read_state_dict(path)
    model = VGG16Features(depth)
    wanted = {name for name, _ in model.named_parameters()}
    features = {key.removeprefix("features."): value for key, value in state.items()
                if key.removeprefix("features.") in wanted}
    missing = sorted(wanted - features.keys())
    if missing:
        raise PerceptualModelError(
            f"{path} is not a VGG16 state dict: missing {', '.join('features.' + m for m in missing[:4])}"
            f"{' …' if len(missing) > 4 else ''} (expected torchvision's vgg16 layout)")
    try:
        model.load_state_dict(features, strict=False)
    except RuntimeError as error:
        raise PerceptualModelError(f"{path}: VGG16 weights have the wrong shapes: {error}") from error
    return model
