"""Reading any accepted file: the format is told by the file's first bytes and content, never by
its name, and every refusal becomes one CheckpointError naming the file."""
from __future__ import annotations

import os
import pickle

import torch

from ..files import UserFileError, require_regular_file
from ..networks.pggan import PGGANGenerator
from ..networks.stylegan2 import StyleGAN2Generator
from . import rosinality, stylegan2_layout, torch_file
from .common import STYLEGAN_REFUSAL, CheckpointError, LoadedCheckpoint, ReadCheckpoint, Refused
from .genforce import GAN_ZOO_REFUSAL, read_torch_content
from .nvidia_pggan import read_nvidia_pickle
from .nvidia_stylegan2 import read_sg2ada_pickle
from .nvidia_stylegan2_tf import read_sg2_tf_pickle
from .pggan_layout import check_weights_fit
from .project_file import read_safetensors, save_generator
from .safe_pickle import ForbiddenGlobal, UnsafePickle


def load_generator(path: str | os.PathLike) -> PGGANGenerator | StyleGAN2Generator:
    """Read any accepted checkpoint into a PGGANGenerator or StyleGAN2Generator (eval mode, CPU,
    float32)."""
    return load_checkpoint(path).generator


def load_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Read any accepted checkpoint, saying which family, format and network of it was used."""
    checkpoint = _read_checkpoint(path)
    return _BUILDERS[checkpoint.family](path, checkpoint)


def _build_pggan(path: str | os.PathLike, checkpoint: ReadCheckpoint) -> LoadedCheckpoint:
    try:
        check_weights_fit(checkpoint.config, checkpoint.state_dict)
    except Refused as refusal:
        raise CheckpointError(path, str(refusal)) from None
    generator = PGGANGenerator(checkpoint.config)
    state = checkpoint.state_dict
    if checkpoint.weights_include_scale:
        scales = {f"{name}.weight": module.scale for name, module in generator.named_modules()
                  if hasattr(module, "scale")}
        state = {name: tensor / scales[name] if name in scales else tensor
                 for name, tensor in state.items()}
    generator.load_state_dict(state)  # names and shapes were checked above
    return LoadedCheckpoint(generator.eval(), checkpoint.source_format,
                            checkpoint.source_network)


def _build_stylegan2(path: str | os.PathLike, checkpoint: ReadCheckpoint) -> LoadedCheckpoint:
    try:  # config limits, exact names and shapes, finite floats: before the network is built
        stylegan2_layout.check_weights_fit(checkpoint.config, checkpoint.state_dict)
    except Refused as refusal:
        raise CheckpointError(path, str(refusal)) from None
    generator = StyleGAN2Generator(checkpoint.config)
    generator.load_state_dict({name: tensor.float().contiguous()
                               for name, tensor in checkpoint.state_dict.items()})
    generator.eval().requires_grad_(False)
    if checkpoint.estimate_w_avg:
        z = torch.randn(rosinality.W_AVG_SAMPLES, checkpoint.config.z_dim,
                        generator=torch.Generator().manual_seed(rosinality.W_AVG_SEED))
        with torch.no_grad():
            generator.mapping.w_avg.copy_(generator.mapping(z)[:, 0].mean(0))
    return LoadedCheckpoint(generator, checkpoint.source_format, checkpoint.source_network)


# Checked weights -> a generator, per family (families.FAMILIES names).
_BUILDERS = {"pggan": _build_pggan, "stylegan2": _build_stylegan2}


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Convert any accepted checkpoint (PGGAN or StyleGAN2) to this project's .safetensors."""
    loaded = load_checkpoint(source)
    save_generator(loaded.generator, destination, source_format=loaded.source_format,
                   source_network=loaded.source_network)


def _read_checkpoint(path: str | os.PathLike) -> ReadCheckpoint:
    try:
        require_regular_file(path, "checkpoint file")
    except UserFileError as error:  # no file, a directory, a pipe (opening one would block)...
        raise CheckpointError(path, str(error).removeprefix(f"{path}: ")) from None
    try:
        with open(path, "rb") as file:
            head = file.read(16)
        if not head:
            raise Refused("the file is empty")
        if _looks_like_safetensors(head, os.path.getsize(path)):
            return read_safetensors(path, int.from_bytes(head[:8], "little"))
        with open(path, "rb") as file:
            data = file.read()
        if torch_file.looks_like_torch_file(head):
            content = torch_file.read(data, rosinality.TORCH_CLASSES)
            if rosinality.looks_like_rosinality(content):
                return rosinality.read_rosinality(content)
            return read_torch_content(content)
        if _looks_like_pickle(head):
            return _read_pickle(data)
        raise Refused("it is damaged or not a checkpoint at all: its first bytes match none of "
                       "the accepted formats")
    except Refused as refusal:
        raise CheckpointError(path, str(refusal)) from None
    except UserFileError as error:  # the file's name, not its content
        raise CheckpointError(path, str(error).removeprefix(f"{path}: ")) from None
    except ForbiddenGlobal as refusal:
        raise CheckpointError(path, _forbidden_global_problem(refusal)) from None
    except UnsafePickle as refusal:
        raise CheckpointError(path, f"{refusal}; nothing in it was run") from None
    except Exception as error:  # truncated or damaged files fail deep inside the decoders
        raise CheckpointError(path, "it is damaged, truncated or not a checkpoint at all "
                                    f"({type(error).__name__}: {str(error)[:200]})") from None


def _read_pickle(data: bytes) -> ReadCheckpoint:
    """PGGAN pickles first; a pickle naming a global they never use is read again by the
    StyleGAN2 reader its first such global points to (each reader has its own allow-list)."""
    try:
        return read_nvidia_pickle(data)
    except ForbiddenGlobal as refusal:
        if refusal.module == "models.utils.config":
            raise
        if refusal.module == "dnnlib.tflib.network":
            return read_sg2_tf_pickle(data)
        return read_sg2ada_pickle(data)


def _looks_like_safetensors(head: bytes, file_size: int) -> bool:
    # 8-byte little-endian header length, then the JSON header itself.
    header_length = int.from_bytes(head[:8], "little")
    return len(head) > 8 and head[8:9] == b"{" and header_length <= file_size - 8


def _looks_like_pickle(head: bytes) -> bool:
    # Protocol 2+ pickles open with PROTO and their version; protocols 0 and 1 with the opcode
    # that starts their top-level object (a tuple, list, dict or global).
    return (head[0] == pickle.PROTO[0] and len(head) > 1 and head[1] <= pickle.HIGHEST_PROTOCOL
            or head[:1] in (b"(", b")", b"]", b"}", b"c"))


def _forbidden_global_problem(refusal: ForbiddenGlobal) -> str:
    if refusal.module == "models.utils.config":  # pytorch_GAN_zoo pickles its BaseConfig object
        return GAN_ZOO_REFUSAL
    if refusal.module.startswith(("dnnlib", "torch_utils")):
        return f"{STYLEGAN_REFUSAL}: {refusal}"
    return str(refusal)
