"""Several starts of one image, compared by how well their hole fills agree.

One run's hole fill depends on its seed by several dB, and nothing a single run can see ranks
its seeds (docs/trustworthy_fill.md): not the held-out pixels auto-stop watches, not a decoy
hole in the known area, not the fit. What does is agreement: a start whose fill is close to the
other starts' fills is, more often than not, closer to the truth. Agreement reads only the
generator's images inside the hole, never the input's pixels there, so it is computed from what
was observed alone.

A multi-start run (`StartsConfig`): every start runs `choose_at` steps, the starts are ranked by
agreement at that step, and the best `candidates` continue to their own end (auto-stop or the
step limit); the others are dropped. Starts are independent runs: start 0 is the run with the
caller's seed, start i > 0 the run with `start_seed(seed, i)`, so a continued start returns
exactly what a single run with its seed returns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..validation import check_count
from .config import VECTORIZE_CHOICES, vectorizes

MAX_STARTS = 64
SEED_SPACE = 2 ** 64
# Start i of seed s runs with s + i * SEED_STRIDE (mod 2**64): an odd stride (2**64 / golden
# ratio) so consecutive seeds' starts never share a run, as s, s + 1, ... would.
SEED_STRIDE = 0x9E3779B97F4A7C15


@dataclass(frozen=True)
class StartsConfig:
    starts: int = 1  # independent starts compared; 1: a single run, as before
    choose_at: int = 100  # steps every start runs before they are compared
    candidates: int = 1  # starts continued to the end and returned, the best first
    # "auto": on a GPU the starts run side by side in one vectorised pass (batched.py), elsewhere
    # one after another; "vmap" or "loop" (one after another) anywhere (config.VECTORIZE_CHOICES)
    vectorize: str = "auto"

    def validate(self) -> None:
        check_count(self.starts, "starts", 1, MAX_STARTS)
        check_count(self.choose_at, "choose_at", 1)
        check_count(self.candidates, "candidates", 1, MAX_STARTS)
        if self.candidates > self.starts:
            raise ValueError(f"candidates ({self.candidates}) cannot exceed starts ({self.starts}): "
                             f"each candidate is a start continued to the end")
        if self.vectorize not in VECTORIZE_CHOICES:
            raise ValueError(f"vectorize must be one of {', '.join(VECTORIZE_CHOICES)}, "
                             f"got {self.vectorize!r}")

    def runs_together(self, device: torch.device) -> bool:
        """Whether several starts step side by side (vectorised) on `device`."""
        return self.starts > 1 and vectorizes(self.vectorize, device)

    @property
    def explores(self) -> bool:
        """Whether some starts are compared and dropped early (more starts than candidates)."""
        return self.starts > self.candidates


def start_seed(seed: int, start: int) -> int:
    """The seed start `start` of a run with `seed` runs with (start 0: `seed` itself)."""
    return (seed + start * SEED_STRIDE) % SEED_SPACE


def agreement(fills: list[torch.Tensor]) -> list[float | None]:
    """Per fill, its mean PSNR (dB) against the other fills: higher = closer to the others.

    fills: the starts' images inside the hole, each [3, n] in [0, 1]. None for every fill when
    there are fewer than 3 (with two, both agree equally) or the hole is empty."""
    if len(fills) < 3 or fills[0].numel() == 0:
        return [None] * len(fills)
    stacked = torch.stack([fill.float() for fill in fills])  # [K, 3, n]
    errors = ((stacked[:, None] - stacked[None]) ** 2).flatten(2).mean(dim=2)  # [K, K]
    psnr = -10 * torch.log10(errors.clamp_min(1e-12))
    count = len(fills)
    return [float((psnr[i].sum() - psnr[i, i]) / (count - 1)) for i in range(count)]


def ranking(scores: list[float | None], losses: list[float]) -> list[int]:
    """Start indices, best first: by agreement (higher first), then by the loss on the known
    pixels (lower first), then by index; a non-finite loss goes last."""
    def key(index: int) -> tuple:
        score = scores[index]
        loss = losses[index]
        return (-(score if score is not None and math.isfinite(score) else -math.inf),
                loss if math.isfinite(loss) else math.inf, index)
    return sorted(range(len(scores)), key=key)
