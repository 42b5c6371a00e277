"""How much memory a run needs, estimated from its configuration before anything is allocated,
and whether the device it will run on has that much (docs/memory.md has the measurements).

An out-of-memory kill takes the whole process with it (in ComfyUI: the host and every queued
job), so every entry point that allocates much asks here first and refuses with one line naming
the numbers and what would fit (`MemoryEstimateError`, a ValueError):

- `check_run_fits` before `inpaint` / `inpaint_any_size` copy the prior: the prior's private
  copy, its gradients and Adam's two moments, the activations one step keeps for N codes and
  the layers' per-step weight copies (the family's `training_bytes`), the perceptual network and
  its activations, and the image-sized copies a run of any size makes;
- `generate_batch` / `check_generate_fits` for sampling.generate: how many codes run through
  the generator at once (from the prior alone, never from the memory free now, so the same
  codes give the same images on every machine) and whether that and the outputs fit.

The estimates are upper bounds calibrated against measured peaks (resident memory on a CPU;
docs/memory.md); they never change what a run computes. Available memory: on a CPU the smallest
of MemAvailable, the cgroup's limit less its usage, and the headroom under RLIMIT_AS and
RLIMIT_DATA (a process limited with `ulimit -v` refuses rather than dies); on CUDA the driver's
free memory plus what torch's cache holds unused. Where it cannot be read (MPS, XPU, a CPU on
an OS without /proc or GlobalMemoryStatusEx) nothing is refused.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..families import family_of
from . import precision

GB = 1e9
# What a process's first run adds besides its tensors: torch's optimiser and compiler modules
# (Adam imports them), the allocator's arenas, and in bf16 oneDNN's bf16 kernels. Measured about
# 100 MB in fp32 (docs/memory.md).
RUNTIME_BYTES = {False: 128 * 2 ** 20, True: 192 * 2 ** 20}  # fp32, bf16
# torch.compile (inductor): a compiled run's own peak was below the eager one's, but it maps more
# address space and starts compiler worker processes (one per CPU, up to 32) and C++ compilers:
# measured 0.45-0.5 GB for those on 2 CPUs (docs/memory.md). Counted as a fixed part and a part
# per worker.
COMPILE_BYTES = 256 * 2 ** 20
COMPILE_BYTES_PER_WORKER = 256 * 2 ** 20
# Images at the prior's resolution a run holds: the image, its masks (fit, held-out), the
# output and auto-stop's kept images, as [3, R, R] float32 copies.
RUN_IMAGE_COPIES = 16
# Image-sized [3, H, W] float32 copies inpaint_any_size holds at once at the input's size, beyond
# the caller's image: the clamped image, the restored output, the composite and its temporary,
# the resized mask and the checks' boolean maps (measured: docs/memory.md).
INPAINT_IMAGE_COPIES = 5.0
# VGG16 features[:16] on one image: per pixel of the prior's resolution, the activations kept for
# the backward pass and their gradients in flight (measured about 1400 and 950 bytes at
# 1024x1024), and a fixed part (its bf16 kernels and weight casts; docs/memory.md).
VGG_BYTES_PER_PIXEL = {False: 1500, True: 1000}  # fp32, bf16
VGG_FIXED_BYTES = 96 * 2 ** 20
# sampling.generate runs at most this many bytes of activations at once; the batch follows from
# the prior alone (generate_batch), so results never depend on the memory free at the time.
GENERATE_CHUNK_BYTES = 4 * 2 ** 30
# What a refusal suggests (fewer codes, a smaller image, ...) leaves this share of the available
# memory free, and at least SUGGESTION_MARGIN_BYTES: reading the inputs and the checks made again
# inside the run see a little less than the first check did.
SUGGESTION_MARGIN = 0.1
SUGGESTION_MARGIN_BYTES = 64 * 2 ** 20
# A batch stepped in one torch.func.vmap pass (vectorized.py) held more per member than the same
# members stepped in a loop, up to this many times a member's fp32 device parts on the bundled
# priors (fitted as the single-run constants were: docs/memory.md, "Batches").
VMAP_MEMBER_FACTOR = 1.15
# CUDA: cuDNN's workspaces and the caching allocator's rounding, beyond the tensors.
CUDA_SLACK = 1.1
CUDA_WORKSPACE_BYTES = 512 * 2 ** 20


class MemoryEstimateError(ValueError):
    """A run refused before it allocated: the one line names the estimate, what is available and
    what would fit."""


def module_bytes(module: torch.nn.Module | None) -> int:
    """Bytes of a module's parameters and buffers."""
    if module is None:
        return 0
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


@dataclass(frozen=True)
class Part:
    name: str  # what a person reads: "activations of 30 codes"
    bytes: int
    host: bool = False  # held in host (CPU) memory even when the run is on a GPU
    shared: bool = False  # paid once by the process, however many runs go together (batched.py)


@dataclass(frozen=True)
class MemoryEstimate:
    """An estimated peak, by part, for a run on `device`."""

    device: torch.device
    parts: tuple[Part, ...]

    def plus(self, name: str, nbytes: int, host: bool = False) -> MemoryEstimate:
        return replace(self, parts=(*self.parts, Part(name, int(nbytes), host)))

    def on(self, device_type: str) -> int:
        """Bytes needed on the run's device ("device") or in host memory ("host"); on a CPU run
        both are the same memory."""
        if self.device.type == "cpu":
            return self.total
        return sum(p.bytes for p in self.parts if p.host == (device_type == "host"))

    @property
    def total(self) -> int:
        return sum(p.bytes for p in self.parts)

    def describe(self) -> str:
        """'about 14.6 GB (prior copy 0.1 GB, ...)' (parts under 0.01 GB left out)."""
        shown = [f"{p.name} {_gb(p.bytes)}" for p in self.parts if p.bytes >= 0.01 * GB]
        return f"about {_gb(self.total)}" + (f" ({', '.join(shown)})" if shown else "")


@dataclass(frozen=True)
class Available:
    bytes: int
    source: str  # where the number comes from, as a refusal names it


def _gb(nbytes: float) -> str:
    return f"{nbytes / GB:.1f} GB" if nbytes >= 0.995 * GB else f"{nbytes / GB:.2f} GB"


# ---------------------------------------------------------------------------------------------
# What is available

def available_memory(device: str | torch.device) -> Available | None:
    """Memory a run on `device` can still allocate, or None where it cannot be read."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None  # no CUDA here: nothing to read (the device check refuses the run)
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _ = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return Available(free + cached, f"free memory on cuda:{index}")
    if device.type == "cpu":
        return available_host_memory()
    return None


def available_host_memory() -> Available | None:
    """The smallest of: MemAvailable (/proc/meminfo; GlobalMemoryStatusEx on Windows), the
    cgroup's memory limit less its usage (v2 memory.max, v1 memory.limit_in_bytes; page cache
    it may reclaim counted as free), and the headroom under RLIMIT_AS and RLIMIT_DATA."""
    candidates = [c for c in (_mem_available(), _cgroup_headroom(), *_rlimit_headroom())
                  if c is not None]
    return min(candidates, key=lambda c: c.bytes) if candidates else None


def _proc_fields(path: str) -> dict[str, int]:
    """'Name: 123 kB' lines as {name: bytes} ('kB' = KiB); {} where unreadable."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        name, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            fields[name.strip()] = int(words[0]) * (1024 if words[1:2] == ["kB"] else 1)
    return fields


def _mem_available() -> Available | None:
    value = _proc_fields("/proc/meminfo").get("MemAvailable")
    if value is not None:
        return Available(value, "MemAvailable")
    if sys.platform == "win32":
        return _windows_available()
    return None


def _windows_available() -> Available | None:
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong),
                    ("total_phys", ctypes.c_ulonglong), ("avail_phys", ctypes.c_ulonglong),
                    ("total_page", ctypes.c_ulonglong), ("avail_page", ctypes.c_ulonglong),
                    ("total_virtual", ctypes.c_ulonglong), ("avail_virtual", ctypes.c_ulonglong),
                    ("avail_extended", ctypes.c_ulonglong)]

    status = MemoryStatus()
    status.length = ctypes.sizeof(MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return None
    return Available(int(status.avail_phys), "available physical memory")


def _cgroup_files() -> list[tuple[Path, str, str]]:
    """(folder, limit file, usage file) of this process's memory cgroup, v2 then v1."""
    found = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, where = line.split(":", 2)
        where = where.lstrip("/")
        if controllers == "":
            roots, files = [Path("/sys/fs/cgroup")], ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            roots, files = [Path("/sys/fs/cgroup/memory")], ("memory.limit_in_bytes",
                                                             "memory.usage_in_bytes")
        else:
            continue
        for root in roots:
            # Inside a container the process's own cgroup is usually mounted as the root.
            for folder in (root / where, root):
                if (folder / files[0]).is_file():
                    found.append((folder, *files))
                    break
    return found


def _cgroup_headroom() -> Available | None:
    best = None
    for folder, limit_file, usage_file in _cgroup_files():
        try:
            limit_text = (folder / limit_file).read_text().strip()
            usage = int((folder / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if not limit_text.isdigit() or int(limit_text) >= 2 ** 60:  # "max" or v1's "unlimited"
            continue
        stat = {}
        try:
            for line in (folder / "memory.stat").read_text().splitlines():
                name, _, value = line.partition(" ")
                stat[name] = int(value) if value.strip().isdigit() else 0
        except OSError:
            pass
        reclaimable = stat.get("inactive_file", stat.get("total_inactive_file", 0))
        headroom = Available(max(0, int(limit_text) - usage + reclaimable), "the cgroup's memory limit")
        if best is None or headroom.bytes < best.bytes:
            best = headroom
    return best


def _rlimit_headroom() -> list[Available]:
    """RLIMIT_AS less the address space in use (VmSize), RLIMIT_DATA less the data segment in
    use (VmData); nothing where the limits are unlimited or unreadable."""
    try:
        import resource
    except ImportError:  # Windows
        return []
    status = _proc_fields("/proc/self/status")
    found = []
    for limit_name, used_name in (("RLIMIT_AS", "VmSize"), ("RLIMIT_DATA", "VmData")):
        limit = getattr(resource, limit_name, None)
        if limit is None:
            continue
        soft, _ = resource.getrlimit(limit)
        if soft == resource.RLIM_INFINITY or used_name not in status:
            continue
        found.append(Available(max(0, soft - status[used_name]), limit_name))
    return found


# ---------------------------------------------------------------------------------------------
# Estimates

def _trainable_bytes(prior: torch.nn.Module, model_config) -> int:
    """fp32 bytes of the generator parameters a run fine-tunes (all of them for any scope but
    "none": an upper bound for "g2")."""
    if model_config.finetune == "none":
        return 0
    return sum(p.numel() for p in prior.parameters()) * 4


def _code_bytes(prior: torch.nn.Module, model_config) -> int:
    """The codes, alpha and beta with their gradients and Adam moments (4 fp32 copies)."""
    config = prior.config
    channels = config.feature_shape(model_config.split_layer)[0]
    # a code is at most one latent per layer (StyleGAN2 w+), of the family's latent size
    per_code = channels + 1 + (config.num_layers + 1) * family_of(prior).z_dim(config)
    return 4 * 4 * model_config.num_codes * per_code


def vgg_bytes(resolution: int, use_bf16: bool) -> int:
    """VGG16 features[:16] on one image of `resolution` pixels a side: its activations kept for
    the backward pass, their gradients and its kernels (calibrated), beyond its weights."""
    return VGG_FIXED_BYTES + VGG_BYTES_PER_PIXEL[use_bf16] * resolution ** 2


def estimate_run(prior: torch.nn.Module, model_config, optimizer_config, perceptual=None,
                 device: str | torch.device = "cpu", image_size: tuple[int, int] | None = None,
                 image_copies: float = INPAINT_IMAGE_COPIES, compiles: bool = False,
                 starts: int = 1) -> MemoryEstimate:
    """The peak of one image's optimisation on `device`, by part (an upper bound; see the module
    doc). `image_size` (height, width): a run of any size (inpaint_any_size), whose image-sized
    copies are counted (`image_copies` of them, [3, H, W] float32) in host memory. `compiles`:
    the step is torch.compiled in this run. `starts`: runs whose state is kept at once (starts.py),
    one of them stepping at a time."""
    device = torch.device(device)
    config = prior.config
    family = family_of(prior)
    use_bf16 = precision.uses_bf16(optimizer_config.precision, device)
    split, codes = model_config.split_layer, model_config.num_codes
    trainable = _trainable_bytes(prior, model_config)
    parts = [Part("prior copy", module_bytes(prior)),
             Part("gradients and Adam state", 3 * trainable + _code_bytes(prior, model_config)),
             Part(f"one step with {codes} code{'s' if codes != 1 else ''}",
                  family.training_bytes(config, split, codes, use_bf16)),
             Part("images at the prior's resolution", RUN_IMAGE_COPIES * 12 * config.resolution ** 2)]
    if starts > 1:
        paused = module_bytes(prior) + 3 * trainable + _code_bytes(prior, model_config)
        paused += 4 * codes * math.prod(config.feature_shape(split))  # G1's kept features
        parts.append(Part(f"{starts - 1} more start{'s' if starts != 2 else ''} kept",
                          (starts - 1) * paused))
    if perceptual is not None and optimizer_config.perceptual_weight > 0:
        parts.append(Part("VGG16 perceptual loss",
                          module_bytes(perceptual) + vgg_bytes(config.resolution, use_bf16)))
    if device.type == "cuda":
        scaled = [replace(p, bytes=int(p.bytes * CUDA_SLACK)) for p in parts]
        parts = [*scaled, Part("cuDNN workspace", CUDA_WORKSPACE_BYTES, shared=True)]
    parts.append(Part("torch runtime", RUNTIME_BYTES[use_bf16], host=True, shared=True))
    if compiles:
        parts.append(Part("torch.compile", compile_bytes(), host=True, shared=True))
    if image_size is not None:
        height, width = image_size
        parts.append(Part(f"{width}x{height} image copies", int(image_copies * 12 * height * width),
                          host=True))
    return MemoryEstimate(device, tuple(parts))


def compile_bytes() -> int:
    """torch.compile's share of a compiled run: a fixed part and one per compiler worker
    (inductor starts one per CPU this process may use, up to 32)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return COMPILE_BYTES + COMPILE_BYTES_PER_WORKER * min(32, cpus)


def will_compile(prior: torch.nn.Module, model_config, optimizer_config, perceptual,
                 device: str | torch.device) -> bool:
    """Whether a run with these settings may torch.compile its step (compilation.wants_compile
    at the most steps the run may take: an upper bound for auto-stop runs)."""
    from types import SimpleNamespace

    from . import compilation
    from .config import g1_freeze_step
    device = torch.device(device)
    model = SimpleNamespace(generator=SimpleNamespace(config=prior.config), config=model_config,
                            family=family_of(prior))
    used = perceptual if perceptual is not None and optimizer_config.perceptual_weight > 0 else None
    return compilation.wants_compile(optimizer_config.compile, model, used, optimizer_config.steps,
                                     device.type, g1_freeze_step(model_config, optimizer_config))


def estimated_run_bytes(prior: torch.nn.Module, model_config, perceptual_weight: float,
                        perceptual: torch.nn.Module | None) -> int:
    """Bytes one image's optimisation needs on a GPU, in fp32 (the larger precision): what a
    host should make room for there before the run (estimate_run's device part on CUDA)."""
    from .config import OptimizerConfig
    optimizer_config = OptimizerConfig(perceptual_weight=perceptual_weight, precision="fp32")
    return estimate_run(prior, model_config, optimizer_config, perceptual, "cuda").on("device")


def _refusal(what: str, estimate: MemoryEstimate, available: Available, where: str,
             would_fit: list[str]) -> MemoryEstimateError:
    fits = ("; would fit: " + ", or ".join(would_fit)) if would_fit else (
        "; nothing smaller of this kind fits: free memory first, or use a machine with more")
    return MemoryEstimateError(
        f"not enough memory for {what}: it needs {estimate.describe()} {where}, with "
        f"{_gb(available.bytes)} available ({available.source}){fits}")


def _shortfalls(estimate: MemoryEstimate, margin: float = 0.0) -> list[tuple[str, int, Available]]:
    """(where, bytes needed, available) for each memory the estimate does not fit in, with
    `margin` (a fraction of the available memory, at least SUGGESTION_MARGIN_BYTES when
    nonzero) kept free."""
    found = []
    if estimate.device.type == "cpu":
        pools = [("in memory", estimate.total, available_host_memory())]
    else:
        pools = [(f"on {estimate.device}", estimate.on("device"), available_memory(estimate.device)),
                 ("in host memory", estimate.on("host"), available_host_memory())]
    for where, needed, available in pools:
        if available is None:
            continue
        spare = max(margin * available.bytes, SUGGESTION_MARGIN_BYTES) if margin else 0
        if needed > available.bytes - spare:
            found.append((where, needed, available))
    return found


def fits(estimate: MemoryEstimate, margin: bool = False) -> bool:
    """Whether the estimate fits what is available now; with `margin`, with room to spare
    (SUGGESTION_MARGIN): what a refusal suggests must still fit when the run checks again after
    reading its inputs, which takes some of what was available."""
    return not _shortfalls(estimate, SUGGESTION_MARGIN if margin else 0.0)


def check_run_fits(prior: torch.nn.Module, model_config, optimizer_config, perceptual=None,
                   device: str | torch.device = "cpu", image_size: tuple[int, int] | None = None,
                   image_copies: float = INPAINT_IMAGE_COPIES, compiles: bool = False,
                   what: str = "this run", starts: int = 1) -> MemoryEstimate:
    """estimate_run, refused with a MemoryEstimateError where it does not fit: one line with
    the estimate by part, what is available and where it comes from, and what would fit (fewer
    codes, bf16 instead of fp32, no perceptual loss, a smaller image). Returns the estimate."""
    def estimate_with(**changes) -> MemoryEstimate:
        model = replace(model_config, num_codes=changes.get("codes", model_config.num_codes))
        optimizer = replace(optimizer_config, precision=changes.get("precision", optimizer_config.precision),
                            perceptual_weight=changes.get("perceptual_weight", optimizer_config.perceptual_weight))
        return estimate_run(prior, model, optimizer, perceptual, device,
                            changes.get("image_size", image_size), image_copies, compiles,
                            changes.get("starts", starts))

    estimate = estimate_with()
    shortfalls = _shortfalls(estimate)
    if not shortfalls:
        return estimate
    where, _, available = shortfalls[0]
    would_fit = []
    codes = model_config.num_codes
    if codes > 1 and fits(estimate_with(codes=1), margin=True):
        low, high = 1, codes - 1  # the largest count that fits: estimates grow with the codes
        while low < high:
            middle = (low + high + 1) // 2
            ok = fits(estimate_with(codes=middle), margin=True)
            low, high = (middle, high) if ok else (low, middle - 1)
        would_fit.append(f"at most {low} code{'s' if low != 1 else ''}")
    torch_device = torch.device(device)
    if not precision.uses_bf16(optimizer_config.precision, torch_device) \
            and fits(estimate_with(precision="bf16"), margin=True):
        would_fit.append("precision bf16 instead of fp32")
    if perceptual is not None and optimizer_config.perceptual_weight > 0 \
            and fits(estimate_with(perceptual_weight=0.0), margin=True):
        would_fit.append("no perceptual (VGG16) loss")
    if image_size is not None:
        side = _largest_fitting_scale(estimate_with, image_size)
        if side is not None:
            would_fit.append(f"an image of at most {side[1]}x{side[0]} pixels")
    if starts > 1 and fits(estimate_with(starts=1), margin=True):
        fewest = max((k for k in range(1, starts) if fits(estimate_with(starts=k), margin=True)))
        would_fit.append(f"at most {fewest} start{'s' if fewest != 1 else ''}")
    raise _refusal(what, estimate, available, where, would_fit)


def check_inpaint_fits(prior: torch.nn.Module, model_config, optimizer_config, perceptual=None,
                       device: str | torch.device = "cpu", image=None,
                       image_size: tuple[int, int] | None = None,
                       image_copies: float = INPAINT_IMAGE_COPIES, starts: int = 1) -> MemoryEstimate:
    """inpaint's and inpaint_any_size's pre-flight check, before the prior is copied:
    check_run_fits for this run (with torch.compile's share where it may compile), and with
    `image` ([3, H, W] of any size) or `image_size` (height, width) `image_copies` image-sized
    copies. The model config is validated first, so a bad one is refused with its own message.
    A caller that holds more copies of the image (a node's batch, the CLI's file reading and
    writing) passes how many. `starts`: a multi-start run keeps that many runs' state at once
    (each its own prior copy, gradients and Adam state), one of them stepping at a time."""
    model_config.validate(prior.config)
    if image_size is None and isinstance(image, torch.Tensor) and image.dim() == 3:
        image_size = tuple(image.shape[1:])
    compiles = will_compile(prior, model_config, optimizer_config, perceptual, device)
    return check_run_fits(prior, model_config, optimizer_config, perceptual, device, image_size,
                          image_copies, compiles=compiles, starts=starts)


def estimate_batch(prior: torch.nn.Module, model_config, optimizer_config, perceptual=None,
                   device: str | torch.device = "cpu", members: int = 1,
                   image_size: tuple[int, int] | None = None,
                   image_copies: float = INPAINT_IMAGE_COPIES,
                   vectorized: bool = False) -> MemoryEstimate:
    """The peak of `members` runs optimised together (batched.py): each its own prior copy,
    optimiser state, step activations, perceptual copy and images (inpaint's estimate of one run
    times `members`), the process's runtime and compiler once. `vectorized`: the members step in
    one torch.func.vmap pass (vectorized.py) where they can: two or more, any precision but an
    explicit bf16 (which runs the loop). That pass runs in fp32 (bf16 autocast does not reach
    inside vmap) and holds VMAP_MEMBER_FACTOR times a member's device parts."""
    def run(config) -> MemoryEstimate:
        return estimate_run(prior, model_config, config, perceptual, device, image_size,
                            image_copies, will_compile(prior, model_config, config, perceptual,
                                                       device))

    one = run(optimizer_config)
    if members == 1:
        return one
    vmap = vectorized and optimizer_config.precision != "bf16"
    # The runtime stays the asked precision's: the members' set-up runs under its autocast.
    member = run(replace(optimizer_config, precision="fp32")) if vmap else one
    parts = [replace(part, name=f"{members} x {part.name}", bytes=members * part.bytes)
             for part in member.parts if not part.shared]
    if vmap:
        device_bytes = sum(part.bytes for part in member.parts if not part.shared and not part.host)
        parts.append(Part("torch.func.vmap's stacked pass",
                          int((VMAP_MEMBER_FACTOR - 1) * members * device_bytes)))
    return replace(one, parts=(*parts, *(part for part in one.parts if part.shared)))


def batch_size_that_fits(prior: torch.nn.Module, model_config, optimizer_config, perceptual=None,
                         device: str | torch.device = "cpu", members: int = 1,
                         image_size: tuple[int, int] | None = None,
                         image_copies: float = INPAINT_IMAGE_COPIES,
                         vectorized: bool = False) -> int:
    """The most of `members` runs that fit together in the memory available now (estimate_batch;
    the estimates grow with the count; `vectorized`: the members step in one vmap pass). One run
    that does not fit is refused as inpaint refuses it (check_inpaint_fits: a
    MemoryEstimateError naming what would fit)."""
    check_inpaint_fits(prior, model_config, optimizer_config, perceptual, device,
                       image_size=image_size, image_copies=image_copies)
    low, high = 1, members
    while low < high:
        middle = (low + high + 1) // 2
        ok = fits(estimate_batch(prior, model_config, optimizer_config, perceptual, device, middle,
                                 image_size, image_copies, vectorized))
        low, high = (middle, high) if ok else (low, middle - 1)
    return low


def _largest_fitting_scale(estimate_with, image_size: tuple[int, int]) -> tuple[int, int] | None:
    """The largest (height, width) with the image's aspect whose run fits, if one smaller than
    the image does (at least 8 pixels a side)."""
    height, width = image_size
    low, high = 0.0, 1.0
    if not fits(estimate_with(image_size=_scaled(image_size, 8 / min(height, width))), margin=True):
        return None
    for _ in range(20):
        middle = (low + high) / 2
        ok = fits(estimate_with(image_size=_scaled(image_size, middle)), margin=True)
        low, high = (middle, high) if ok else (low, middle)
    size = _scaled(image_size, low)
    return size if size != tuple(image_size) and min(size) >= 8 else None


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, math.floor(size[0] * scale)), max(1, math.floor(size[1] * scale))


# ---------------------------------------------------------------------------------------------
# Sampling

def generate_batch(generator: torch.nn.Module, batch_size: int) -> int:
    """How many codes sampling.generate runs at once: `batch_size`, fewer where that many would
    hold more than GENERATE_CHUNK_BYTES of activations. From the prior alone (never the memory
    free now), so the same codes give the same images on every machine."""
    family = family_of(generator)
    per_code = family.inference_bytes(generator.config, 1)
    return max(1, min(batch_size, GENERATE_CHUNK_BYTES // max(per_code, 1)))


def estimate_generate(generator: torch.nn.Module, count: int, batch: int,
                      device: str | torch.device = "cpu", output_copies: float = 1.0
                      ) -> MemoryEstimate:
    """sampling.generate's peak: `batch` codes through the generator at once and the `count`
    outputs ([count, 3, R, R] float32; `output_copies` of them for what a caller makes of them)."""
    device = torch.device(device)
    config = generator.config
    family = family_of(generator)
    parts = [Part(f"a batch of {batch}", family.inference_bytes(config, batch)),
             Part(f"{count} output image{'s' if count != 1 else ''}",
                  int(output_copies * count * 12 * config.resolution ** 2), host=True),
             Part("torch runtime", RUNTIME_BYTES[False], host=True)]
    if device.type == "cuda":
        parts[0] = replace(parts[0], bytes=int(parts[0].bytes * CUDA_SLACK) + CUDA_WORKSPACE_BYTES)
        parts.append(Part("generator copy", module_bytes(generator)))
    return MemoryEstimate(device, tuple(parts))


def check_generate_fits(generator: torch.nn.Module, count: int, batch: int,
                        device: str | torch.device = "cpu", output_copies: float = 1.0,
                        what: str | None = None) -> MemoryEstimate:
    """estimate_generate, refused where it does not fit, naming how many images would."""
    estimate = estimate_generate(generator, count, batch, device, output_copies)
    shortfalls = _shortfalls(estimate)
    if not shortfalls:
        return estimate
    where, _, available = shortfalls[0]
    would_fit = []
    if count > 1 and fits(estimate_generate(generator, 1, 1, device, output_copies), margin=True):
        low, high = 1, count - 1
        while low < high:
            middle = (low + high + 1) // 2
            ok = fits(estimate_generate(generator, middle, min(batch, middle), device, output_copies),
                      margin=True)
            low, high = (middle, high) if ok else (low, middle - 1)
        would_fit.append(f"at most {low} image{'s' if low != 1 else ''}")
    resolution = generator.config.resolution
    what = what or f"generating {count} image{'s' if count != 1 else ''} of {resolution}x{resolution}"
    raise _refusal(what, estimate, available, where, would_fit)
