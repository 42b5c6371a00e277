"""cuDNN's process-wide `deterministic` and `benchmark` flags, set for the runs in progress and
given back to the host when the last of them ends.

cuDNN chooses its convolution algorithms by heuristics (or by timing them, if the host set
`benchmark`), and some of its gradient algorithms add partial sums atomically, in an order that
changes from run to run: on a GPU the same seed gave a different StyleGAN2 fill. A run therefore
asks for deterministic algorithms and no timing. The flags belong to the process, and runs can
overlap (a host running two Inpaint nodes on two threads): if each run saved and restored them
itself, the first to finish would switch its neighbour back to the host's settings mid-run, and
the last to finish would "restore" the values its neighbour had set. So the runs share one
count: the first to begin saves the host's values, the last to end puts them back.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch

_lock = threading.Lock()
_runs_in_progress = 0
_host_flags: tuple[bool, bool] = (False, False)  # (deterministic, benchmark) before the first run


@contextlib.contextmanager
def repeatable_convolutions() -> Iterator[None]:
    """cuDNN's flags set to deterministic and no benchmark for the block, and the host's values
    back when the last overlapping block ends, also when it fails or is cancelled. On the CPU
    these flags do nothing."""
    global _runs_in_progress, _host_flags
    cudnn = torch.backends.cudnn
    with _lock:
        if _runs_in_progress == 0:
            _host_flags = cudnn.deterministic, cudnn.benchmark
        _runs_in_progress += 1
        cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        with _lock:
            _runs_in_progress -= 1
            if _runs_in_progress == 0:
                cudnn.deterministic, cudnn.benchmark = _host_flags
