"""Reading any accepted file: the format is told by the file's first bytes, never by its name,
and every refusal becomes one CheckpointError naming the file."""
from __future__ import annotations

import os
import pickle

from ..files import UserFileError, require_regular_file
from ..networks.pggan import PGGANGenerator
from . import torch_file
from .common import STYLEGAN_REFUSAL, CheckpointError, LoadedCheckpoint, ReadCheckpoint, Refused
from .genforce import GAN_ZOO_REFUSAL, read_torch_file
from .nvidia_pggan import read_nvidia_pickle
from .pggan_layout import check_weights_fit
from .project_file import read_safetensors, save_generator
from .safe_pickle import ForbiddenGlobal, UnsafePickle

def load_generator(path: str | os.PathLike) -> PGGANGenerator:
    """Read any accepted checkpoint into a PGGANGenerator (eval mode, CPU, float32)."""
    return load_checkpoint(path).generator


def load_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Read any accepted checkpoint, saying which format and which of its networks was used."""
    checkpoint = _read_checkpoint(path)
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


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Convert any accepted checkpoint to this project's .safetensors."""
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
            return read_torch_file(data)
        if _looks_like_pickle(head):
            return read_nvidia_pickle(data)
        raise Refused("it is damaged or not a checkpoint at all: its first bytes match none of "
                       "the accepted formats")
    except Refused as refusal:
        raise CheckpointError(path, str(refusal)) from None
    except ForbiddenGlobal as refusal:
        raise CheckpointError(path, _forbidden_global_problem(refusal)) from None
    except UnsafePickle as refusal:
        raise CheckpointError(path, f"{refusal}; nothing in it was run") from None
    except Exception as error:  # truncated or damaged files fail deep inside the decoders
        raise CheckpointError(path, "it is damaged, truncated or not a checkpoint at all "
                                    f"({type(error).__name__}: {str(error)[:200]})") from None


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
        return STYLEGAN_REFUSAL
    return str(refusal)
