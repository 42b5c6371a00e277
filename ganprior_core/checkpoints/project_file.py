"""This project's own `.safetensors` prior file: the tensors in `PGGANGenerator` or
`StyleGAN2Generator` naming and a JSON header describing the architecture
({"format": "ganprior-pggan" | "ganprior-stylegan2", "version": 1, "config": ...}), checked with
exact types before any tensor is read."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from ..families import family_of
from ..files import name_a_reader_can_open, write_atomically
from ..networks.pggan import PGGANConfig, PGGANGenerator
from ..networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from . import stylegan2_layout
from .common import (
    GANPRIOR,
    GANPRIOR_SG2,
    MAX_SAFETENSORS_HEADER_BYTES,
    SAFETENSORS_FORMAT,
    SAFETENSORS_FORMAT_SG2,
    SAFETENSORS_KEY,
    SAFETENSORS_VERSION,
    ReadCheckpoint,
    Refused,
    finite,
)
from .pggan_layout import RESOLUTIONS, check_config_values, check_shapes_fit


def save_generator(generator: PGGANGenerator | StyleGAN2Generator, path: str | os.PathLike,
                   source_format: str | None = None, source_network: str | None = None,
                   extra_metadata: Mapping[str, Any] | None = None) -> None:
    """Write `generator` (PGGAN or StyleGAN2) as this project's .safetensors.

    `extra_metadata` (JSON-serialisable) is merged into the JSON header; it cannot replace the
    keys that describe the network.
    """
    file_format = _FILE_FORMATS[family_of(generator).name]
    header = {**(extra_metadata or {}), "format": file_format.header_format,
              "version": SAFETENSORS_VERSION, "config": generator.config.to_dict(),
              "source_format": source_format or file_format.source_format}
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
    with name_a_reader_can_open(path) as name, safe_open(name, framework="pt") as file:
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
        file_format = _FORMAT_BY_HEADER.get(header.get("format"))
        if file_format is None:
            raise Refused(f"its metadata describes format {str(header.get('format'))[:40]!r}, "
                           f"not {' or '.join(map(repr, _FORMAT_BY_HEADER))}")
        if header.get("version") != SAFETENSORS_VERSION:
            raise Refused(f"it is version {str(header.get('version'))[:40]!r} of the ganprior "
                           f"format; this code reads version {SAFETENSORS_VERSION}")
        shapes = {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}
        config = file_format.config_from_metadata(header.get("config"))
        file_format.check_shapes_fit(config, shapes)
        state = {name: finite(name, file.get_tensor(name).float()) for name in file.keys()}
    network = header.get("source_network")
    return ReadCheckpoint(config, state, str(header.get("source_format", file_format.source_format))[:80],
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


_SG2_FIELDS = {"resolution": "int", "channels": "list", "z_dim": "int", "w_dim": "int",
               "mapping_layers": "int", "mapping_lr_multiplier": "float",
               "conv_clamp": "float or null", "img_channels": "int"}


def _sg2_config_from_metadata(config: Any) -> StyleGAN2Config:
    """StyleGAN2Config from the JSON header: exactly the fields to_dict writes, with exactly
    their types (from_dict would accept 16.0 for 16 or true for 1)."""
    if not isinstance(config, dict):
        raise Refused("its architecture metadata is missing or not a JSON object")
    if set(config) != set(_SG2_FIELDS):
        odd = sorted(set(config) ^ set(_SG2_FIELDS))
        raise Refused(f"its StyleGAN2 architecture metadata has missing or unknown fields "
                       f"({', '.join(str(name)[:30] for name in odd[:5])})")

    def right_type(kind: str, value: Any) -> bool:
        if kind == "int":
            return type(value) is int
        if kind == "list":
            return isinstance(value, list) and all(type(item) is int for item in value)
        if kind == "float":
            return type(value) is float
        return value is None or type(value) is float

    wrong = [name for name, kind in _SG2_FIELDS.items() if not right_type(kind, config[name])]
    if wrong:
        raise Refused(f"its StyleGAN2 architecture metadata has values of the wrong type "
                       f"({', '.join(f'{name} must be {_SG2_FIELDS[name]}' for name in wrong)})")
    if config["resolution"] not in stylegan2_layout.SG2_RESOLUTIONS:
        raise Refused(f"its metadata claims resolution {config['resolution']}; it must be one "
                       f"of {list(stylegan2_layout.SG2_RESOLUTIONS)}")
    if len(config["channels"]) > 16:
        raise Refused("its metadata lists more channel counts than any StyleGAN2 has")
    try:
        parsed = StyleGAN2Config.from_dict(config)
    except ValueError as error:
        raise Refused(f"its architecture metadata is invalid ({error})") from None
    stylegan2_layout.check_config_values(parsed)
    return parsed


@dataclass(frozen=True)
class _FileFormat:
    """How one family's networks are written to and read from this project's file."""

    header_format: str  # the JSON header's "format"
    source_format: str  # LoadedCheckpoint.source_format of a file this project wrote itself
    config_from_metadata: Callable[[Any], Any]
    check_shapes_fit: Callable[[Any, Mapping[str, tuple[int, ...]]], None]


# Keyed by family name (families.FAMILIES).
_FILE_FORMATS = {
    "pggan": _FileFormat(SAFETENSORS_FORMAT, GANPRIOR, _config_from_metadata, check_shapes_fit),
    "stylegan2": _FileFormat(SAFETENSORS_FORMAT_SG2, GANPRIOR_SG2, _sg2_config_from_metadata,
                             stylegan2_layout.check_shapes_fit),
}
_FORMAT_BY_HEADER = {file_format.header_format: file_format for file_format in _FILE_FORMATS.values()}
