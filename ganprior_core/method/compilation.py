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
run's convolution work (an estimate from the configuration alone, so the choice is
deterministic: same seed, same result) is large enough for the per-step saving to repay a cold
compilation (`AUTO_COMPILE_MIN_TFLOP_PER_THREAD`).

When compiling cannot work (no C++ compiler, e.g. Windows without MSVC; torch or Python installed
under a path with a space, which inductor's Linux/macOS link command does not quote; any error
while compiling) the step runs eagerly and one note says why; the result is then the eager
result. A failure is remembered for the process, so later runs do not retry it.
"""
from __future__ import annotations

import getpass
import os
import re
import sys
import sysconfig
import tempfile
import types
from dataclasses import dataclass
from typing import Callable

import torch

from .perceptual import VGG16_PLAN

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


def estimated_step_tflop(model, perceptual_depth: int | None, include_g1: bool = True) -> float:
    """Conv/matmul TFLOP of one step (forward + backward ~ 3x forward), from the shapes alone;
    without G1 for a step after the codes and G1 were frozen."""
    config = model.generator.config
    split = model.config.split_layer
    codes = model.config.num_codes
    flops = model.family.forward_flop(config, split, codes, include_g1)
    if perceptual_depth:
        size, in_channels, seen = config.resolution, 3, 0
        for item in VGG16_PLAN:
            seen += 1 if item == "M" else 2
            if seen > perceptual_depth:
                break
            if item == "M":
                size //= 2
            else:
                flops += 2.0 * in_channels * item * 9 * size * size
                in_channels = item
    return 3 * flops / 1e12


def _unquoted_paths_with_spaces() -> list[str]:
    """Library folders inductor passes to the linker as `-L<dir>` without quoting."""
    folders = [os.path.join(os.path.dirname(torch.__file__), "lib"), sysconfig.get_config_var("LIBDIR")]
    return [folder for folder in folders if folder and re.search(r"\s", folder)]


def _spaceless_cache_dir(notes: list[str]) -> bool:
    """Inductor writes and compiles its C++ under its cache folder, and its build command breaks
    on a space there ("input file is the same as output file"). Move it if needed; False when no
    folder without a space is found."""
    default_cache_dir = _default_cache_dir
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir()
    if not re.search(r"\s", os.path.abspath(current)):
        return True
    user = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(default_cache_dir()))
    candidates = [os.path.join(os.path.expanduser("~"), ".cache", "ganprior", user),
                  os.path.join(tempfile.gettempdir(), user), os.path.join("/tmp", user)]
    for candidate in candidates:
        if not re.search(r"\s", os.path.abspath(candidate)) and _folder_problem(candidate) is None:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(candidate)
            notes.append(f"torch.compile's cache folder {current!r} has a space, which breaks its "
                         f"C++ build; using {candidate!r} instead")
            return True
    return False


CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


def _folder_problem(folder: str) -> str | None:
    """Why `folder` cannot be torch's compiler cache (None if it can): it must be, or be
    creatable as, a folder files can be written in. Nothing is created here."""
    from ..files import UserFileError, check_output_folder
    if not os.path.isabs(folder):
        folder = os.path.abspath(folder)
    if folder == "/proc" or folder.startswith(("/proc/", "/sys/", "/dev/")):
        return "it lies under /proc, /sys or /dev"
    if os.path.exists(folder) and not os.path.isdir(folder):
        return "it is a file, not a folder"
    try:
        check_output_folder(folder, "cache")
    except UserFileError as error:
        return str(error).split(": ", 1)[-1]
    return None


def prepare_cache_dir(notes: list[str]) -> bool:
    """Make sure torch's compiler cache folder is usable before anything imports the compiler
    stack (torch.optim.Adam does, even with compiling off: torch._dynamo creates the folder on
    import and a file, an unwritable folder or a path under /proc there raises). An unusable
    TORCHINDUCTOR_CACHE_DIR (or default folder) is replaced by a usable one, with a note naming
    the variable. False when no usable folder was found (compiling is then not tried)."""
    given = os.environ.get(CACHE_VARIABLE)
    default = _default_cache_dir()
    current = given or default
    problem = _folder_problem(current)
    if problem is None:
        return True
    user = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(default)) or "torchinductor"
    for candidate in _fallback_cache_dirs(user):
        if candidate != current and _folder_problem(candidate) is None:
            os.environ[CACHE_VARIABLE] = candidate
            what = f"{CACHE_VARIABLE}={given!r}" if given else f"torch's default cache {current!r}"
            note = (f"{what} cannot hold torch.compile's cache ({problem}); using "
                    f"{candidate!r} instead")
            notes.append(note)
            return True
    notes.append(f"{CACHE_VARIABLE} {current!r} cannot hold torch.compile's cache ({problem}) "
                 "and no usable folder was found")
    return False


def _default_cache_dir() -> str:
    """torch's default_cache_dir, spelled out: importing torch._inductor to ask would import
    torch._dynamo, which is what fails on a bad folder (and cannot be imported twice)."""
    try:
        username = getpass.getuser()
    except (KeyError, ModuleNotFoundError, OSError):
        username = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
    return os.path.join(tempfile.gettempdir(),
                        "torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", username))


def _fallback_cache_dirs(user: str) -> list[str]:
    home = os.path.expanduser("~")
    candidates = [] if home == "~" else [os.path.join(home, ".cache", "ganprior", user)]
    candidates += [os.path.join(tempfile.gettempdir(), f"ganprior-{user}"),
                   os.path.join("/tmp", f"ganprior-{user}"), os.path.join(os.getcwd(), f".ganprior-{user}")]
    return [os.path.abspath(candidate) for candidate in candidates]


def _unavailable_reason(device: torch.device, notes: list[str]) -> str | None:
    if device.type not in COMPILE_DEVICES:
        return f"torch.compile is not used on {device.type}"
    if device.type == "cpu":
        # (on Windows inductor quotes its /LIBPATH folders; a missing MSVC fails the first call)
        spaced = [] if sys.platform == "win32" else _unquoted_paths_with_spaces()
        if spaced:
            return (f"torch.compile cannot link its C++ kernels when torch or Python is installed "
                    f"under a path with a space ({spaced[0]!r}; inductor does not quote it)")
        if not prepare_cache_dir([]):  # (the run's note was added before the optimiser)
            return f"torch.compile has no usable cache folder ({CACHE_VARIABLE})"
        if not _spaceless_cache_dir(notes):
            return "torch.compile's cache folder has a space and no folder without one was found"
    return None


def _key(model, loss_fn, device: torch.device, use_bf16: bool) -> tuple:
    perceptual = getattr(loss_fn, "perceptual", None)
    return (device.type, device.index, use_bf16, model.generator.config, model.config,
            type(loss_fn).__name__, None if perceptual is None else len(perceptual))


def auto_compile_min_tflop(device_type: str) -> float:
    if device_type == "cuda":
        return AUTO_COMPILE_MIN_TFLOP_CUDA
    return AUTO_COMPILE_MIN_TFLOP_PER_THREAD * torch.get_num_threads()


def estimated_run_tflop(model, perceptual_depth: int | None, steps: int,
                        freeze_at: int | None = None) -> float:
    """Conv/matmul TFLOP of `steps` steps whose codes and G1 are frozen after `freeze_at` steps
    (None: never)."""
    full = steps if freeze_at is None else min(steps, freeze_at)
    return (full * estimated_step_tflop(model, perceptual_depth)
            + (steps - full) * estimated_step_tflop(model, perceptual_depth, include_g1=False))


def wants_compile(compile_setting, model, perceptual, steps: int, device_type: str = "cpu",
                  freeze_at: int | None = None) -> bool:
    """Whether to compile a run of `steps` steps (G1 frozen after `freeze_at`). "auto" decides
    from the configuration (and the thread count) alone, never from timings or from what this
    process compiled before, so the same seed gives the same result."""
    if compile_setting == "auto":
        if device_type not in COMPILE_DEVICES:
            return False
        depth = None if perceptual is None else len(perceptual)
        work = estimated_run_tflop(model, depth, steps, freeze_at)
        return work >= auto_compile_min_tflop(device_type)
    return bool(compile_setting)


def parse_setting(text: str | bool):
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
    reason = _unavailable_reason(device, notes)
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
