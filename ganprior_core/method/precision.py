"""Which arithmetic the networks run in: bf16 autocast only where the hardware has bf16 units.

On CPUs without native bf16 instructions oneDNN emulates bf16 convolutions, and they run several
times slower than fp32 (docs/speed.md has the measurements), so `auto` must not pick bf16 there.
The choice depends only on the device and the CPU's feature flags, never on timings, so the same
machine always makes the same choice and the same seed gives the same result.
"""
from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
# CPU feature flags (Linux /proc/cpuinfo names) of native bf16 arithmetic: AVX-512 BF16 (Intel
# Cooper Lake and later, AMD Zen 4 and later) and AMX (Intel Sapphire Rapids and later).
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags where the OS lists them (Linux), else none."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """True where bf16 autocast is faster than fp32 on `device`."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return platform.machine().lower() in ("x86_64", "amd64") and bool(
            cpu_flags() & set(NATIVE_BF16_CPU_FLAGS))
    return False


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether a run with this precision setting autocasts to bf16 on `device`."""
    if precision == "auto":
        return native_bf16(device)
    return precision == "bf16"


def describe_choice(precision: str, device: torch.device) -> str | None:
    """A note for the result when `auto` chose, saying what and why; None otherwise."""
    if precision != "auto":
        return None
    if uses_bf16(precision, device):
        return f"precision auto: bf16 ({device.type} has native bf16 arithmetic)"
    reason = ("this CPU has no native bf16 instructions (AVX-512 BF16 or AMX), where bf16 runs "
              "slower than fp32" if device.type == "cpu" else f"no bf16 autocast chosen on {device.type}")
    return f"precision auto: fp32 ({reason})"
