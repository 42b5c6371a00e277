"""VGG16 feature extractor for the perceptual loss, loaded from a file the user names.

The layout is torchvision's `vgg16().features`, so its `vgg16-*.pth` state dict loads directly;
there is no download and never a silently random network.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..files import UserFileError, name_a_reader_can_open, require_regular_file
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


# torchvision's vgg16-397923af.pth is 528 MB; anything much larger is not VGG16 weights, and is
# refused before it is read into memory.
MAX_VGG_FILE_BYTES = 1 << 30
_FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


def _read_state_dict(path: Path, wanted: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The tensors named in `wanted` (key -> shape, with or without "features."), read the way
    checkpoints are: the format from the content, not the suffix; torch files through the
    bounded `checkpoints.torch_file` reader (no torch.load); a .safetensors header bounded and
    every shape checked before a tensor is read. Failures are one-line PerceptualModelErrors."""
    from ..checkpoints import torch_file
    from ..checkpoints.common import MAX_SAFETENSORS_HEADER_BYTES
    from ..checkpoints.safe_pickle import ForbiddenGlobal, UnsafePickle

    expected = ("expected torchvision's vgg16-*.pth state dict or a .safetensors file with the "
                "same keys")
    size = path.stat().st_size
    if size == 0:
        raise PerceptualModelError(f"{path}: the VGG16 weights file is empty; {expected}")
    if size > MAX_VGG_FILE_BYTES:
        raise PerceptualModelError(f"{path}: {size:,} bytes is far more than VGG16 weights "
                                   f"(528 MB); {expected}")
    with open(path, "rb") as file:
        head = file.read(16)
    header_length = int.from_bytes(head[:8], "little")
    try:
        if len(head) > 8 and head[8:9] == b"{":
            if header_length > MAX_SAFETENSORS_HEADER_BYTES or header_length > size - 8:
                raise PerceptualModelError(
                    f"{path}: its safetensors header claims {header_length:,} bytes, more than "
                    f"the file or the {MAX_SAFETENSORS_HEADER_BYTES:,} accepted")
            return _read_safetensors(path, wanted)
        if torch_file.looks_like_torch_file(head):
            state = torch_file.read(path.read_bytes())
        else:
            raise PerceptualModelError(f"{path}: cannot read VGG16 weights: its first bytes "
                                       f"match neither a torch file nor .safetensors; {expected}")
    except PerceptualModelError:
        raise
    except ForbiddenGlobal as refusal:
        raise PerceptualModelError(f"{path}: refused, it is not a plain state dict "
                                   f"({_short(refusal)}); nothing in it was run") from None
    except UnsafePickle as refusal:
        raise PerceptualModelError(f"{path}: refused ({_short(refusal)}); nothing in it was "
                                   "run") from None
    except Exception as error:  # noqa: BLE001 - truncated or damaged files fail in the decoders
        raise PerceptualModelError(f"{path}: cannot read VGG16 weights, the file is damaged or "
                                   f"truncated ({type(error).__name__}: {_short(error)}); "
                                   f"{expected}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PerceptualModelError(f"{path} does not hold a state dict of tensors; {expected}")
    return {key: value for key, value in state.items() if isinstance(key, str)
            and key.removeprefix("features.") in wanted}


def _read_safetensors(path: Path, wanted: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open
    try:
        with name_a_reader_can_open(path) as name, safe_open(name, framework="pt") as file:
            tensors = {}
            for key in file.keys():
                name = key.removeprefix("features.")
                if name not in wanted:
                    continue  # never read: the classifier, or anything else
                piece = file.get_slice(key)
                shape, dtype = tuple(piece.get_shape()), piece.get_dtype()
                if shape != wanted[name] or dtype not in _FLOAT_DTYPES:
                    raise PerceptualModelError(
                        f"{path}: {key} is {dtype} {list(shape)[:8]}, VGG16 needs floating-point "
                        f"{list(wanted[name])}")
                tensors[key] = file.get_tensor(key)
            return tensors
    except PerceptualModelError:
        raise
    except UserFileError as error:  # the file's name, not its content
        raise PerceptualModelError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - safetensors' refusals of damaged files
        raise PerceptualModelError(f"{path}: not a readable .safetensors file, damaged or "
                                   f"truncated ({_short(error)})") from None


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]


def load_vgg16_features(path: str | Path, depth: int = DEFAULT_DEPTH) -> VGG16Features:
    """Load torchvision VGG16 weights (keys `features.{i}.weight` / `.bias`, classifier ignored)."""
    try:
        path = require_regular_file(path, "VGG16 weights file")
    except UserFileError as error:  # no file, a directory, a pipe (opening one would block)...
        raise PerceptualModelError(str(error)) from None
    model = VGG16Features(depth)
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    wanted = set(shapes)
    state = _read_state_dict(path, shapes)
    features = {key.removeprefix("features."): value for key, value in state.items()}
    for name, value in features.items():
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shapes[name] \
                or not value.dtype.is_floating_point:
            got = (f"{value.dtype} {list(value.shape)[:8]}" if isinstance(value, torch.Tensor)
                   else type(value).__name__)
            raise PerceptualModelError(f"{path}: VGG16 weights have the wrong shapes: features."
                                       f"{name} is {got}, expected {list(shapes[name])}")
        if not torch.isfinite(value).all():
            raise PerceptualModelError(f"{path}: features.{name} holds NaN or infinite values")
    missing = sorted(wanted - features.keys())
    if missing:
        raise PerceptualModelError(
            f"{path} is not a VGG16 state dict: missing {', '.join('features.' + m for m in missing[:4])}"
            f"{' …' if len(missing) > 4 else ''} (expected torchvision's vgg16 layout)")
    model.load_state_dict({name: value.float() for name, value in features.items()}, strict=False)
    return model
