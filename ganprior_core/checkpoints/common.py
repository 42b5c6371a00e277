"""What every checkpoint reader shares: the format names, the limits on what a file may claim,
the error users see, and the checks of a single weight."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..families import family_of
from ..networks.pggan import PGGANConfig, PGGANGenerator
from ..networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator

CHECKPOINT_EXTENSIONS = (".pth", ".pt", ".pkl", ".safetensors")

GENFORCE = "genforce-pth"
GENFORCE_ZOO = "genforce-zoo-pth"
NVIDIA_TF = "nvidia-tf-pkl"
NVIDIA_THEANO = "nvidia-theano-pkl"
GANPRIOR = "ganprior"
NVIDIA_SG2ADA = "nvidia-sg2ada-pkl"  # stylegan2-ada-pytorch / stylegan3 repository pickles
NVIDIA_SG2_TF = "nvidia-sg2-tf-pkl"  # TensorFlow-era NVlabs/stylegan2 pickles
ROSINALITY = "rosinality-pt"  # rosinality/stylegan2-pytorch files
GANPRIOR_SG2 = "ganprior-stylegan2"

ACCEPTED_FORMATS = (
    "genforce/genforce model-zoo PyTorch file (.pth; generator_smooth or generator, or a bare "
    "state dict)",
    "genforce/mGANprior PyTorch state dict (.pth)",
    "NVIDIA official PGGAN pickle, TensorFlow or Theano version (.pkl)",
    "NVIDIA StyleGAN2 network pickle from stylegan2-ada-pytorch or the stylegan3 repository "
    "(.pkl; G_ema, else G)",
    "NVIDIA StyleGAN2 TensorFlow pickle of (G, D, Gs) (.pkl)",
    "rosinality stylegan2-pytorch checkpoint or converted file (.pt; g_ema)",
    "ganprior .safetensors written by this project (PGGAN or StyleGAN2)",
)

SAFETENSORS_KEY = "ganprior"
SAFETENSORS_FORMAT = "ganprior-pggan"
SAFETENSORS_FORMAT_SG2 = GANPRIOR_SG2
SAFETENSORS_VERSION = 1

# Limits on architecture claims, far above every published PGGAN (512 channels, latent 512,
# 23 M parameters) and far below what would exhaust memory.
MAX_CHANNELS = 4096
MAX_LATENT = 8192
MAX_PARAMETERS = 200_000_000
# StyleGAN2: the 1024x1024 config F generator has 30 M parameters.
MAX_SG2_PARAMETERS = 200_000_000
MAX_MAPPING_LAYERS = 64
MAX_SAFETENSORS_HEADER_BYTES = 16 * 1024 * 1024


class CheckpointError(ValueError):
    """A file that is not a GAN prior (PGGAN or StyleGAN2 generator) this project can load."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        # One line, of bounded length: problems quote names and errors taken from the file.
        self.problem = problem = " ".join(problem.split())[:600]
        super().__init__(f"cannot load a GAN prior from '{path}': {problem}. "
                         f"Accepted formats: {'; '.join(ACCEPTED_FORMATS)}.")


class Refused(Exception):
    """Raised inside the readers; load_checkpoint turns it into a CheckpointError naming the file."""


@dataclass
class ReadCheckpoint:
    config: PGGANConfig | StyleGAN2Config
    state_dict: dict[str, torch.Tensor]  # PGGANGenerator / StyleGAN2Generator naming and layouts
    source_format: str
    # Which network of the file was read ("generator_smooth", "Gs", ...), for the user to see;
    # None where the format holds only one.
    source_network: str | None
    # True when weights are stored already multiplied by their equalised-lr scale (Theano models,
    # TF models trained without use_wscale); the generator wants them unscaled.
    weights_include_scale: bool = False
    # StyleGAN2 files without the running mean of w (rosinality train.py checkpoints): the
    # loader sets mapping.w_avg to the mean of the mapping network over seeded z.
    estimate_w_avg: bool = False

    @property
    def family(self) -> str:
        return family_of(self.config).name


@dataclass(frozen=True)
class LoadedCheckpoint:
    generator: PGGANGenerator | StyleGAN2Generator
    source_format: str  # one of the *_pth / *_pkl names above, or GANPRIOR / GANPRIOR_SG2
    # Which network of the file was read: "generator_smooth", "generator", "bare state dict",
    # "Gs", "G_ema", ...; None where the format holds only one.
    source_network: str | None

    @property
    def family(self) -> str:
        """"pggan" or "stylegan2": which kind of generator `generator` is."""
        return family_of(self.generator).name

    def describe(self, name: str) -> str:
        """What a person choosing a prior reads about it: family and architecture, the format
        and network read, and what each split layer k hands over."""
        family = family_of(self.generator)
        source = family.format_labels.get(self.source_format, self.source_format)
        if self.source_network is not None:
            source += ", " + family.network_labels.get(self.source_network, self.source_network)
        config = self.generator.config
        return "\n".join([f"{name}: {family.describe(config)}", f"read from: {source}",
                          *family.describe_splits(config)])


STYLEGAN_REFUSAL = ("it is a StyleGAN model in a layout this project does not read (StyleGAN2 "
                    "is read from NVIDIA's and rosinality's files and this project's own)")


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
