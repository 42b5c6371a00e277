"""This project's own `.safetensors` prior file: the tensors in `PGGANGenerator` naming and a
JSON header describing the architecture, checked before any tensor is read."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from ..files import write_atomically
from ..networks.pggan import PGGANConfig, PGGANGenerator
from .common import (GANPRIOR, MAX_SAFETENSORS_HEADER_BYTES, SAFETENSORS_FORMAT, SAFETENSORS_KEY,
                     SAFETENSORS_VERSION, ReadCheckpoint, Refused, finite)
from .pggan_layout import RESOLUTIONS, check_config_values, check_shapes_fit

def save_generator(generator: PGGANGenerator, path: str | os.PathLike,
                   source_format: str = GANPRIOR, source_network: str | None = None,
                   extra_metadata: Mapping[str, Any] | None = None) -> None:
    """Write `generator` as this project's .safetensors.

    `extra_metadata` (JSON-serialisable) is merged into the JSON header; it cannot replace the
    keys that describe the network.
    """
    header = {**(extra_metadata or {}), "format": SAFETENSORS_FORMAT,
              "version": SAFETENSORS_VERSION, "config": generator.config.to_dict(),
              "source_format": source_format}
    if source_network is not None:
        header["source_network"] = source_network
    tensors = {name: tensor.detach().to("cpu", torch.float32).contiguous()
               for name, tensor in generator.state_dict().items()}
    # Serialised in memory, then written by the project's one atomic writer: a full disk is a
    # one-line error, the file gets the umask's permissions, and nothing half-written remains.
    write_atomically(Path(path), safetensors_bytes(tensors, metadata={SAFETENSORS_KEY: json.dumps(header)}))


def read_safetensors(path: str | os.PathLike, header_length: int) -> ReadCheckpoint:
    """The JSON header and the architecture it claims are checked against the tensors' declared
    shapes (safetensors itself checks their byte ranges against the file) before any tensor is
    read."""
    if header_length > MAX_SAFETENSORS_HEADER_BYTES:
        raise Refused(f"its safetensors header claims {header_length} bytes, more than the "
                       f"{MAX_SAFETENSORS_HEADER_BYTES} a PGGAN's header needs")
    with safe_open(str(path), framework="pt") as file:
        header_text = (file.metadata() or {}).get(SAFETENSORS_KEY)
        if header_text is None:
            raise Refused(f"this .safetensors file has no '{SAFETENSORS_KEY}' metadata, so it was "
                           "not written by this project and its architecture is unknown")
        try:
            header = json.loads(header_text)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than json allows
            raise Refused("its ganprior metadata is not valid JSON of a sane depth") from None
        if not isinstance(header, dict):
            raise Refused("its ganprior metadata is not a JSON object")
        if header.get("format") != SAFETENSORS_FORMAT:
            raise Refused(f"its metadata describes format {str(header.get('format'))[:40]!r}, "
                           f"not {SAFETENSORS_FORMAT!r}")
        if header.get("version") != SAFETENSORS_VERSION:
            raise Refused(f"it is version {str(header.get('version'))[:40]!r} of the ganprior "
                           f"format; this code reads version {SAFETENSORS_VERSION}")
        config = _config_from_metadata(header.get("config"))
        check_shapes_fit(config, {name: tuple(file.get_slice(name).get_shape())
                                   for name in file.keys()})
        state = {name: finite(name, file.get_tensor(name).float()) for name in file.keys()}
    network = header.get("source_network")
    return ReadCheckpoint(config, state, str(header.get("source_format", GANPRIOR))[:80],
                           None if network is None else str(network)[:80])


def _config_from_metadata(config: Any) -> PGGANConfig:
    """PGGANConfig from the JSON header, refusing anything but the exact types it is written
    with (PGGANConfig.from_dict would turn 16.7 or "16" into 16, and true into 1)."""
    def is_int(value: Any) -> bool:
        return type(value) is int

    if not isinstance(config, dict):
        raise Refused("its architecture metadata is missing or not a JSON object")
    resolution, channels = config.get("resolution"), config.get("channels")
    latent, fused = config.get("latent_dim", 512), config.get("fused_scale", False)
    if not (is_int(resolution) and isinstance(channels, list) and all(map(is_int, channels))
            and is_int(latent) and type(fused) is bool):
        raise Refused("its architecture metadata has values of the wrong type (resolution, "
                       "latent_dim and channels must be integers, fused_scale true or false)")
    if resolution not in RESOLUTIONS:
        raise Refused(f"its metadata claims resolution {resolution}; it must be one of "
                       f"{list(RESOLUTIONS)}")
    try:
        config = PGGANConfig(resolution, tuple(channels), latent, fused)
    except ValueError as error:
        raise Refused(f"its architecture metadata is invalid ({error})") from None
    check_config_values(config)
    return config
