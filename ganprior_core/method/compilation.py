"""The optimisation step's forward pass and loss, compiled once per process where it pays.

`image_and_loss(model, loss_fn, device, use_bf16, compile_setting, steps, notes, freeze_at)` returns a
callable `step(*loss_args) -> (image, loss)` computing `loss_fn(model(), *loss_args)` under bf16
autocast. With compilation it runs a `torch.compile`d function that takes the model and the loss
as *arguments*: their parameters and tensors are graph inputs, never constants, so a new
MultiLatentModel copy or a new image and mask reuse the graph compiled for the first one
(a ComfyUI session pays the tens of seconds of compilation once, not per image). Each
architecture/configuration gets its own compiled function (its own dynamo cache and recompile
budget), kept for the life of the process.

`compile_setting` is OptimizerConfig.compile: True, False or "auto". "auto" compiles when the
run's convolution work (cost.py: an estimate from the configuration alone, so the choice is
deterministic: same seed, same result) is large enough for the per-step saving to repay a cold
compilation (`AUTO_COMPILE_MIN_TFLOP_PER_THREAD`).

When compiling cannot work (no C++ compiler, e.g. Windows without MSVC; torch or Python installed
under a path with a space, which inductor's Linux/macOS link command does not quote; no usable
compiler cache folder, compiler_cache.py; any error while compiling) the step runs eagerly and
one note says why; the result is then the eager result. A failure is remembered for the
process, so later runs do not retry it.
"""
from __future__ import annotations

import os
import re
import sys
import sysconfig
import types
from dataclasses import dataclass
from typing import Callable

import torch

from . import compiler_cache, cost

COMPILE_SETTINGS = (True, False, "auto")
COMPILE_DEVICES = ("cpu", "cuda")
# "auto" compiles when the run's estimated conv work (forward + backward, all steps) is at least
# this many TFLOP per CPU thread: about where the 20-30 % faster compiled steps have paid for a
# cold compilation of 30-90 s on the machines measured (docs/benchmarks.md). More threads make
# steps faster but not compiling, hence per thread.
AUTO_COMPILE_MIN_TFLOP_PER_THREAD = 150.0
# On a GPU steps are ~100x faster and compiling is not, so only long runs repay it; the figure is
# where it paid back on an H200 (docs/benchmarks.md), sooner on slower GPUs.
AUTO_COMPILE_MIN_TFLOP_CUDA = 2000.0


@dataclass
class Stats:
    compiled_functions: int = 0  # distinct compiled callables created (one per configuration key)


STATS = Stats()
_compiled: dict[tuple, Callable] = {}
_failed: dict[tuple, str] = {}  # key -> why compiling failed (not retried in this process)


def _image_and_loss(model, loss_fn, device_type: str, use_bf16: bool, *loss_args):
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16):
        output = model()
        return output, loss_fn(output, *loss_args)


def _fresh_function(index: int):
    """A copy of `_image_and_loss` with its own code object: dynamo keys its cache (and its
    recompile limit) on the code object, so each configuration gets its own."""
    code = _image_and_loss.__code__.replace(co_name=f"_image_and_loss_{index}")
    return types.FunctionType(code, _image_and_loss.__globals__, code.co_name)


def _compile(index: int) -> Callable:
    return torch.compile(_fresh_function(index), dynamic=False)


def _unquoted_paths_with_spaces() -> list[str]:
    """Library folders inductor passes to the linker as `-L<dir>` without quoting."""
    folders = [os.path.join(os.path.dirname(torch.__file__), "lib"), sysconfig.get_config_var("LIBDIR")]
    return [folder for folder in folders if folder and re.search(r"\s", folder)]


def unavailable_reason(device: torch.device, notes: list[str]) -> str | None:
    """Why torch.compile cannot work for a run on `device` in this installation, or None where
    it can (an error while compiling is found only by trying: see image_and_loss). On a CPU the
    compiler cache folder is made fit for C++ builds first, with a note where it is replaced."""
    if device.type not in COMPILE_DEVICES:
        return f"torch.compile is not used on {device.type}"
    if device.type == "cpu":
        # (on Windows inductor quotes its /LIBPATH folders; a missing MSVC fails the first call)
        spaced = [] if sys.platform == "win32" else _unquoted_paths_with_spaces()
        if spaced:
            return (f"torch.compile cannot link its C++ kernels when torch or Python is installed "
                    f"under a path with a space ({spaced[0]!r}; inductor does not quote it)")
        if not compiler_cache.prepare_cache_dir(notes, for_cpu_build=True):
            return f"torch.compile has no usable cache folder ({compiler_cache.CACHE_VARIABLE})"
    return None


def _key(model, loss_fn, device: torch.device, use_bf16: bool) -> tuple:
    perceptual = getattr(loss_fn, "perceptual", None)
    return (device.type, device.index, use_bf16, model.generator.config, model.config,
            type(loss_fn).__name__, None if perceptual is None else len(perceptual))


def auto_compile_min_tflop(device_type: str) -> float:
    if device_type == "cuda":
        return AUTO_COMPILE_MIN_TFLOP_CUDA
    return AUTO_COMPILE_MIN_TFLOP_PER_THREAD * torch.get_num_threads()


def wants_compile(compile_setting, model, perceptual, steps: int, device_type: str = "cpu",
                  freeze_at: int | None = None) -> bool:
    """Whether to compile a run of `steps` steps (G1 frozen after `freeze_at`). "auto" decides
    from the configuration (and the thread count) alone, never from timings or from what this
    process compiled before, so the same seed gives the same result."""
    if compile_setting == "auto":
        if device_type not in COMPILE_DEVICES:
            return False
        depth = None if perceptual is None else len(perceptual)
        work = cost.estimated_run_tflop(model, depth, steps, freeze_at)
        return work >= auto_compile_min_tflop(device_type)
    return bool(compile_setting)


def parse_compile_setting(text: str | bool):
    """A compile setting from a CLI or node value: auto / on / off (or true / false)."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value == "auto":
        return "auto"
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"compile must be auto, on or off, got {text!r}")


def image_and_loss(model, loss_fn, device: torch.device, use_bf16: bool, compile_setting,
                   steps: int, notes: list[str], freeze_at: int | None = None
                   ) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The step's forward and loss, compiled or not (see the module docstring). Freezing G1
    (`freeze_at`) changes the graph: the step after it compiles a second, smaller one."""
    device_type = device.type

    def eager(*loss_args):
        return _image_and_loss(model, loss_fn, device_type, use_bf16, *loss_args)

    if not wants_compile(compile_setting, model, getattr(loss_fn, "perceptual", None), steps,
                         device.type, freeze_at):
        return eager
    reason = unavailable_reason(device, notes)
    key = _key(model, loss_fn, device, use_bf16)
    if reason is None and key in _failed:
        reason = _failed[key]
    if reason is not None:
        notes.append(f"{reason}: ran eagerly (same result, slower steps)")
        return eager
    if key not in _compiled:
        _compiled[key] = _compile(len(_compiled))
        STATS.compiled_functions += 1
    compiled = _compiled[key]
    state = {"eager": False, "calls": 0}

    def step(*loss_args):
        if state["eager"]:
            return eager(*loss_args)
        # The first call compiles, the backward graph too (not lazily at the first backward), so
        # that a compiler error surfaces here, before the optimizer has changed anything. A later
        # call can recompile (a guard failed); it is covered the same way.
        try:
            with torch._functorch.config.patch(force_non_lazy_backward_lowering=True):
                result = compiled(model, loss_fn, device_type, use_bf16, *loss_args)
        except Exception as error:  # noqa: BLE001 - any compiler failure: run eagerly instead
            lines = str(error).strip().splitlines()
            why = f"torch.compile failed ({type(error).__name__}: {lines[0][:200] if lines else ''})"
            _failed[key] = why
            done = state["calls"]
            notes.append(f"{why}: ran eagerly (same result, slower steps)" if done == 0 else
                         f"{why} after {done} compiled steps: ran the rest eagerly")
            state["eager"] = True
            return eager(*loss_args)  # an error of the maths itself is raised from here
        state["calls"] += 1
        return result

    return step
