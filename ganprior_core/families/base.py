"""What the library asks of a generator family, as one interface.

A family is one module in this package holding one object that satisfies `GeneratorFamily`
(checked by tests/families/test_interface.py for every registered family). Everything that differs between
PGGAN and StyleGAN2 lives behind it: what a code is and how it starts, where the generator can be
split and how the presets choose the split, the work and memory a run costs, how a sample is
drawn, the auto-stop rule chosen for the family, and the words a person reads about a file.
Nothing outside this package asks which family a generator is; it asks the family.

The method itself runs on a `SplitAdapter` (the family's adapter around the run's private copy
of the generator): `MultiLatentModel` calls only the members listed there.
"""
from __future__ import annotations

import math
from typing import Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from ..method.auto_stop import AutoStopConfig


@runtime_checkable
class SplitAdapter(Protocol):
    """The method's view of a generator split at layer k (`MultiLatentModel` holds one).

    features: what G1 hands G2 for N codes (PGGAN [N, M, H, W]; StyleGAN2 the features and the
    skip image); fused: the same for one fused code.
    """

    resolution: int
    num_layers: int

    def feature_shape(self, split: int) -> tuple[int, int, int]: ...
    def init_codes(self, count: int, seed: int, split: int) -> torch.Tensor: ...
    def init_g2_styles(self, codes: torch.Tensor, split: int) -> torch.Tensor | None: ...
    def g1(self, codes: torch.Tensor, split: int): ...
    def fuse(self, features, weights: torch.Tensor, beta: torch.Tensor): ...
    def g2_ws(self, codes: torch.Tensor, g2_styles: torch.Tensor | None, split: int): ...
    def g2(self, fused, g2_ws, split: int) -> torch.Tensor: ...
    def g1_parameters(self, split: int) -> list[nn.Parameter]: ...
    def g2_parameters(self, split: int) -> list[nn.Parameter]: ...
    def noise_parameters(self, split: int) -> tuple[list[nn.Parameter], list[nn.Parameter]]: ...


@runtime_checkable
class GeneratorFamily(Protocol):
    """One generator family. `config` arguments are the family's architecture config
    (`config_type`); `model_config` a MultiLatentConfig."""

    name: str  # the id scripts and files use: "pggan", "stylegan2"
    label: str  # what a person reads: "PGGAN", "StyleGAN2"
    generator_type: type[nn.Module]
    config_type: type
    # The auto-stop rule a run of this family uses unless the caller chose one.
    auto_stop: AutoStopConfig
    # The coarsest feature map the `paper` preset fuses at (presets scale it with the resolution).
    paper_coarsest_features: int
    # The checkpoint loader's format and network ids -> what they mean to a person.
    format_labels: Mapping[str, str]
    network_labels: Mapping[str, str]

    def z_dim(self, config) -> int: ...
    def check_options(self, model_config) -> None: ...
    def split(self, generator: nn.Module, model_config) -> SplitAdapter: ...
    def split_for_feature_resolution(self, config, feature_resolution: int) -> int: ...
    def forward_flop(self, config, split: int, codes: int, include_g1: bool = True) -> float: ...
    def activation_elements(self, config, split: int, codes: int) -> int: ...
    def training_bytes(self, config, split: int, codes: int, bf16: bool) -> int: ...
    def inference_bytes(self, config, batch: int) -> int: ...
    def check_latents(self, config, latents, truncation_psi: float, noise_mode: str) -> None: ...
    def generate(self, generator: nn.Module, latents: torch.Tensor, truncation_psi: float,
                 noise_mode: str) -> torch.Tensor: ...
    def describe(self, config) -> str: ...
    def describe_options(self, config, model_config) -> str: ...
    def describe_splits(self, config) -> list[str]: ...


def seeded_normal(count: int, dim: int, seed: int) -> torch.Tensor:
    """[count, dim] standard normal values from `seed` alone (never the global generator)."""
    return torch.randn(count, dim, generator=torch.Generator().manual_seed(seed))


def latents_shape(latents) -> object:
    """How a refusal quotes what it was given instead of codes."""
    return list(latents.shape) if hasattr(latents, "shape") else type(latents).__name__


def feature_map_elements(config, split: int, codes: int) -> int:
    """Values of every layer's feature map in one forward pass, G1's (layers up to `split`) once
    per code."""
    return sum(math.prod(config.feature_shape(k)) * (codes if k <= split else 1)
               for k in range(1, config.num_layers + 1))


# glibc's malloc serves a request below its mmap threshold (which it raises, up to 32 MiB on 64-bit
# systems, as larger blocks are freed) from its heap, where freed blocks stay resident and
# fragment; larger blocks are mapped and unmapped. So a training step's activations cost more
# resident memory per value where each layer's tensor is under 32 MiB (docs/memory.md).
HEAP_TENSOR_BYTES = 32 * 2 ** 20


def activation_memory(config, split: int, codes: int, value_bytes: float,
                      small_tensor_bytes: float, large_tensor_bytes: float,
                      in_flight_bytes: float) -> float:
    """Bytes of every layer's activations kept for the backward pass, G1's once per code: per
    output value of a layer, `small_tensor_bytes` where the layer's output tensor
    (`value_bytes` a value) is under HEAP_TENSOR_BYTES, else `large_tensor_bytes`; and the
    backward pass's gradients in flight at the largest layer, `in_flight_bytes` per value of
    its output."""
    total, largest = 0.0, 0
    for k in range(1, config.num_layers + 1):
        values = math.prod(config.feature_shape(k)) * (codes if k <= split else 1)
        small = values * value_bytes < HEAP_TENSOR_BYTES
        total += values * (small_tensor_bytes if small else large_tensor_bytes)
        largest = max(largest, values)
    return total + in_flight_bytes * largest


def inference_peak_elements(config, output_copies: float) -> int:
    """Values alive at once in a forward pass of one code without gradients, where that peaks:
    a layer's input and `output_copies` tensors of its output's size (the op results a layer
    holds before the previous one is freed)."""
    peak, previous = 0.0, 0
    for k in range(1, config.num_layers + 1):
        out = math.prod(config.feature_shape(k))
        peak = max(peak, previous + output_copies * out)
        previous = out
    return math.ceil(peak)


class SplitGeometry:
    """What both families' splits share: the generator and its split geometry."""

    def __init__(self, generator: nn.Module) -> None:
        self.generator = generator
        self.config = generator.config

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    def feature_shape(self, split: int) -> tuple[int, int, int]:
        return self.config.feature_shape(split)
