"""Checks of settings that come from users: seeds, devices, numbers.

Each raises ValueError with a message that names the setting, the value and what is accepted, so
the CLI can print it as one line and a ComfyUI node shows it as the node's error.
"""
from __future__ import annotations

import math
import numbers

import torch

MAX_SEED = 2 ** 64 - 1  # what torch.Generator.manual_seed and ComfyUI's seed widgets take
COMPUTE_DEVICES = ("cpu", "cuda", "mps", "xpu")


def check_seed(seed, name: str = "seed") -> int:
    """An integer seed in 0 ... 2**64 - 1 (numpy integers accepted), returned as int."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{name} must be an integer in 0 ... {MAX_SEED}, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be in 0 ... {MAX_SEED} (2^64 - 1), got {seed}")
    return int(seed)


def check_count(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in minimum ... maximum (bools and floats are refused: 2.5 steps is a mistake)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in {minimum} ... {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def check_non_negative(value, name: str) -> float:
    """A finite real number >= 0. NaN would otherwise pass every `< 0` test and then act as 0
    (or poison the optimisation), and inf gives a black result instead of an error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return float(value)


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists on this machine: cpu, cuda, cuda:N, mps or xpu."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; accepted: cpu, cuda, cuda:N, mps, xpu") from None
    kind = resolved.type
    if kind not in COMPUTE_DEVICES:
        raise ValueError(f"device {device!r} cannot run the optimisation; accepted: cpu, cuda, "
                         "cuda:N, mps, xpu")
    if kind == "cpu":
        return resolved
    backend = {"cuda": torch.cuda, "xpu": getattr(torch, "xpu", None),
               "mps": getattr(torch.backends, "mps", None)}[kind]
    if backend is None or not backend.is_available():
        raise ValueError(f"device {device!r} is not available on this machine (this torch "
                         f"{torch.__version__} has no usable {kind.upper()} device); use --device cpu")
    if resolved.index is not None and kind in ("cuda", "xpu"):
        count = backend.device_count()
        if resolved.index >= count:
            raise ValueError(f"device {device!r} does not exist: this machine has {count} "
                             f"{kind} device(s), {kind}:0 ... {kind}:{count - 1}")
    return resolved
