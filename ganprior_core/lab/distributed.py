"""`bench` across processes: `torchrun --nproc-per-node P [--nnodes ...] -m ganprior_core bench ...`.

What a process needs to take part is here, kept apart from what the benchmark does with it
(lab/bench.py):
- `from_environment`: torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) say
  which process this is; without them (a plain `python -m ganprior_core bench`), or with a world
  of one, there is nothing to set up and torch.distributed is never touched;
- `process_group`: torch.distributed over gloo, joined through torchrun's own rendezvous
  (`init_method="env://"`), destroyed on the way out whatever happens; no launcher, sockets or
  files of our own;
- `Group.agree`: every collective the benchmark makes also carries each rank's error, so a rank
  that cannot go on makes every rank stop with its message instead of leaving the others waiting;
- `shard`, `rank_device`, `fair_threads`: which rows, device and CPU threads a rank takes.

Why gloo even for CUDA runs: the ranks exchange only small Python objects (finished CSV rows and
notes), never tensors, so NCCL would bring nothing; gloo is in every torch build that has
torch.distributed, its collectives take a timeout, and it needs no GPU per rank just to pass rows.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch

# Setting up and agreeing on the folder: every rank does the same short work in between.
SETUP_TIMEOUT = timedelta(minutes=30)
# Waiting at the end for the slowest rank: a rank may legitimately run hours more rows (a 256x256
# run on a CPU), so this wait has no practical deadline. It cannot hang on a dead rank: gloo fails
# the collective when a peer's connection closes, and torchrun stops every rank when one exits
# with an error.
FINISH_TIMEOUT = timedelta(days=7)

T = TypeVar("T")


class RankFailed(ValueError):
    """Another rank stopped with an error; this one stops too (the CLI's `error:` line, exit 2)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among torchrun's processes."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def label(self) -> str:
        return f"rank {self.rank}/{self.world_size}"


def from_environment(environ: dict[str, str] | None = None) -> Ranks | None:
    """The ranks torchrun describes in the environment; None outside torchrun (or for a world of
    one process, which runs exactly as a plain command)."""
    environ = os.environ if environ is None else environ
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    if not all(name in environ for name in names):
        return None
    try:
        rank, world_size, local_rank = (int(environ[name]) for name in names)
        local_world_size = int(environ.get("LOCAL_WORLD_SIZE", world_size))
    except ValueError:
        raise ValueError("torchrun's RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be "
                         f"whole numbers, got {', '.join(f'{n}={environ.get(n)!r}' for n in names)}"
                         ) from None
    if not (0 <= rank < world_size and 0 <= local_rank < local_world_size <= world_size):
        raise ValueError(f"inconsistent torchrun environment: RANK {rank}, WORLD_SIZE {world_size}, "
                         f"LOCAL_RANK {local_rank}, LOCAL_WORLD_SIZE {local_world_size}")
    if world_size == 1:
        return None
    return Ranks(rank, world_size, local_rank, local_world_size)


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Round-robin: items rank, rank + world_size, ... of a list every rank builds the same way."""
    return list(items[rank::world_size])


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def fair_threads(local_world_size: int, cpus: int | None = None) -> int:
    """A rank's share of this machine's CPUs (torchrun itself sets OMP_NUM_THREADS=1, which
    would leave all but one core per rank idle)."""
    return max(1, (available_cpus() if cpus is None else cpus) // local_world_size)


def rank_device(device: str, local_rank: int) -> str:
    """CUDA: each rank on its own GPU of the node, cuda:LOCAL_RANK; any other device as given."""
    if torch.device(device).type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"local rank {local_rank} needs its own GPU, cuda:{local_rank}, but this "
                         f"machine has {torch.cuda.device_count()}: start at most that many "
                         "processes per machine (--nproc-per-node)")
    return f"cuda:{local_rank}"


def _describe(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class Group:
    """The process group the benchmark talks through."""

    def __init__(self, ranks: Ranks, finish_group: Any) -> None:
        self.ranks = ranks
        self._finish_group = finish_group

    def agree(self, error: BaseException | None, payload: Any = None,
              finishing: bool = False) -> list[Any]:
        """Every rank's payload, in rank order, once every rank has reached this point. If any
        rank brings an error, every rank raises: the one that failed its own error, the others
        RankFailed naming it. `finishing`: the wait for the slowest rank (FINISH_TIMEOUT)."""
        import torch.distributed as dist
        gathered: list[Any] = [None] * self.ranks.world_size
        message = None if error is None else _describe(error)
        try:
            dist.all_gather_object(gathered, (message, None if error else payload),
                                   group=self._finish_group if finishing else None)
        except RuntimeError as lost:  # gloo: a peer's connection closed, or the timeout passed
            if error is not None:
                raise error from None
            raise RankFailed(f"{self.ranks.label} lost the other ranks ({_describe(lost)}): one of "
                             "them stopped (its error is above) or is stuck") from None
        if error is not None:
            raise error
        failed = [(rank, message) for rank, (message, _) in enumerate(gathered) if message is not None]
        if failed:
            rank, message = failed[0]
            raise RankFailed(f"rank {rank} of {self.ranks.world_size} failed ({message}); this "
                             f"rank stopped too")
        return [payload for _, payload in gathered]


@contextlib.contextmanager
def process_group(ranks: Ranks) -> Iterator[Group]:
    """torch.distributed over gloo for the duration of the block, through torchrun's rendezvous,
    destroyed on the way out (also after an error or an interrupt)."""
    import torch.distributed as dist
    if not dist.is_available() or not dist.is_gloo_available():
        raise ValueError("this torch build has no torch.distributed with gloo, which bench needs "
                         "under torchrun; run it as a plain `python -m ganprior_core bench`")
    dist.init_process_group("gloo", init_method="env://", rank=ranks.rank,
                            world_size=ranks.world_size, timeout=SETUP_TIMEOUT)
    try:
        finish_group = dist.new_group(backend="gloo", timeout=FINISH_TIMEOUT)
        yield Group(ranks, finish_group)
    finally:
        dist.destroy_process_group()
