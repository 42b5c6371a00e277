"""VGG16 weight files for the tests: torchvision's layout with known random weights, and the
hostile files the VGG16 reader must refuse in one line (PAYLOAD_MARKER: what a payload would create)."""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from ganprior_core.checkpoints import save_generator
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator

PAYLOAD_MARKER = Path("/tmp/ganprior-vgg-payload-ran")
# Indices of the convolutions in torchvision's vgg16().features, and where its max pools sit.
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CONV_CHANNELS = ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                 (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512))


def torchvision_state_dict():
    generator = torch.Generator().manual_seed(0)
    state = {}
    for index, (cin, cout) in zip(CONV_INDICES, CONV_CHANNELS):
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=generator) * (2 / (9 * cin)) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(cout, generator=generator) * 0.1
    state["classifier.0.weight"] = torch.zeros(4, 4)  # present in the real file, must be ignored
    return state


VGG_SHAPES = {"0": (64, 3, 3, 3), "2": (64, 64, 3, 3), "5": (128, 64, 3, 3), "7": (128, 128, 3, 3),
              "10": (256, 128, 3, 3), "12": (256, 256, 3, 3), "14": (256, 256, 3, 3)}


def vgg_state(scale: float = 0.01) -> dict[str, torch.Tensor]:
    state = {}
    for index, shape in VGG_SHAPES.items():
        state[f"features.{index}.weight"] = torch.full(shape, scale)
        state[f"features.{index}.bias"] = torch.zeros(shape[0])
    return state


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/ganprior-vgg-payload-ran",))


def hostile_vgg_files(directory: Path) -> dict[str, tuple[Path, str]]:
    files = {}

    def add(name, data, message):
        path = directory / name
        path.write_bytes(data) if isinstance(data, bytes) else data(path)
        files[name] = (path, message)

    header = b'{"features.0.weight":{"dtype":"F32","shape":[64,3,3,3],"data_offsets":[0,4]}}'
    add("huge-header.safetensors", (1 << 40).to_bytes(8, "little") + b"{" + b" " * 32,
        "header claims")
    add("short-data.safetensors", len(header).to_bytes(8, "little") + header + b"\0\0\0\0",
        "not a readable .safetensors")
    wrong = vgg_state()
    wrong["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    add("wrong-shape.safetensors", lambda p: save_file(wrong, str(p)), "features.0.weight")
    add("wrong-shape.pth", lambda p: torch.save(wrong, p), "wrong shapes")
    integers = {k: v.to(torch.int32) for k, v in vgg_state().items()}
    add("integers.safetensors", lambda p: save_file(integers, str(p)), "floating-point")
    nan = vgg_state()
    nan["features.2.weight"][0, 0, 0, 0] = math.nan
    add("nan.pth", lambda p: torch.save(nan, p), "NaN")
    add("payload.pth", lambda p: torch.save({"features.0.weight": Payload()}, p), "nothing in it was run")
    good = io.BytesIO()
    torch.save(vgg_state(), good)
    add("truncated.pth", good.getvalue()[: len(good.getvalue()) // 2], "damaged")
    add("empty.pth", b"", "empty")
    add("text.safetensors", b"hello, not weights", "cannot read VGG16 weights")
    add("generator.safetensors", lambda p: save_generator(
        PGGANGenerator(PGGANConfig(16, (32, 32, 16), latent_dim=32)), p), "not a VGG16 state dict")
    return files
