"""What every checkpoint reader shares: the format names, the limits on what a file may claim,
the error users see, and the checks of a single weight."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..networks.pggan import PGGANConfig, PGGANGenerator

CHECKPOINT_EXTENSIONS = (".pth", ".pt", ".pkl", ".safetensors")

GENFORCE = "genforce-pth"
GENFORCE_ZOO = "genforce-zoo-pth"
NVIDIA_TF = "nvidia-tf-pkl"
NVIDIA_THEANO = "nvidia-theano-pkl"
GANPRIOR = "ganprior"

ACCEPTED_FORMATS = (
    "genforce/genforce model-zoo PyTorch file (.pth; generator_smooth or generator, or a bare "
    "state dict)",
    "genforce/mGANprior PyTorch state dict (.pth)",
    "NVIDIA official PGGAN pickle, TensorFlow or Theano version (.pkl)",
    "ganprior .safetensors written by this project",
)

SAFETENSORS_KEY = "ganprior"
SAFETENSORS_FORMAT = "ganprior-pggan"
SAFETENSORS_VERSION = 1

# Limits on architecture claims, far above every published PGGAN (512 channels, latent 512,
# 23 M parameters) and far below what would exhaust memory.
MAX_CHANNELS = 4096
MAX_LATENT = 8192
MAX_PARAMETERS = 200_000_000
MAX_SAFETENSORS_HEADER_BYTES = 16 * 1024 * 1024


class CheckpointError(ValueError):
    """A file that is not a PGGAN generator this project can load."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        # One line, of bounded length: problems quote names and errors taken from the file.
        self.problem = problem = " ".join(problem.split())[:600]
        super().__init__(f"cannot load a PGGAN generator from '{path}': {problem}. "
                         f"Accepted formats: {'; '.join(ACCEPTED_FORMATS)}.")


class Refused(Exception):
    """Raised inside the readers; load_checkpoint turns it into a CheckpointError naming the file."""


@dataclass
class ReadCheckpoint:
    config: PGGANConfig
    state_dict: dict[str, torch.Tensor]  # PGGANGenerator naming and layouts
    source_format: str
    # Which network of the file was read ("generator_smooth", "Gs", ...), for the user to see;
    # None where the format holds only one.
    source_network: str | None
    # True when weights are stored already multiplied by their equalised-lr scale (Theano models,
    # TF models trained without use_wscale); the generator wants them unscaled.
    weights_include_scale: bool = False


@dataclass(frozen=True)
class LoadedCheckpoint:
    generator: PGGANGenerator
    source_format: str  # one of the *_pth / *_pkl names above, or GANPRIOR
    # Which network of the file was read: "generator_smooth", "generator", "bare state dict",
    # "Gs", ...; None where the format holds only one.
    source_network: str | None


STYLEGAN_REFUSAL = "it is a StyleGAN model, not a PGGAN generator; StyleGAN is not supported"


def refuse_if_stylegan(name: str) -> None:
    if name.startswith(("dnnlib", "torch_utils", "mapping.", "synthesis.")):
        raise Refused(STYLEGAN_REFUSAL)


def finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(tensor).all():
        raise Refused(f"tensor '{name}' holds NaN or infinite values")
    return tensor


def as_weight(name: str, value: Any) -> torch.Tensor:
    """A float32 tensor of a file's weight, refused unless it is a finite numeric array."""
    if isinstance(value, np.ndarray | np.generic):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor) or value.dtype == torch.bool or value.is_complex():
        raise Refused(f"'{name}' is a {type(value).__name__}, not a numeric array")
    return finite(name, value.float())
