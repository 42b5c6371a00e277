"""What a run reports while it goes (Progress) and what it returns (InpaintResult)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Progress:
    step: int  # optimisation steps completed
    total: int  # the most steps the run may take
    loss: float | None = None  # loss of the latest step, only every preview_every steps
    preview: torch.Tensor | None = None  # [3, R, R] in [0, 1], only every preview_every steps
    stopped_early: bool = False  # the run's last report: auto-stop ended it before `total`


@dataclass
class InpaintResult:
    output: torch.Tensor  # [3, R, R] in [0, 1]: the generator's image
    composite: torch.Tensor  # [3, R, R]: known pixels of the input, hole from `output`
    loss_history: list[float]  # one loss per step run
    seconds: float
    notes: list[str] = field(default_factory=list)
    steps_run: int = 0  # optimisation steps taken
    best_step: int | None = None  # auto-stop: the returned image is the one after this many steps
    stop_reason: str = ""  # why the run ended, in words
    held_out_best_step: int | None = None  # auto-stop: the check with the lowest held-out error
    g1_frozen_at: int | None = None  # steps after which the codes and G1 were frozen; None: never

    def describe_stop(self) -> str:
        """One phrase for logs and the node's info."""
        frozen = "" if self.g1_frozen_at is None else f"; codes and G1 frozen from step {self.g1_frozen_at}"
        if self.best_step is None:
            return f"{self.steps_run} steps ({self.stop_reason}){frozen}"
        lowest = ("" if self.held_out_best_step in (None, self.best_step)
                  else f" (held-out error lowest at step {self.held_out_best_step})")
        return (f"{self.steps_run} steps ({self.stop_reason}), image of step {self.best_step}"
                f"{lowest}{frozen}")


def report_step(callback: Callable[[Progress], None] | None, steps_run: int, total: int,
                preview_every: int, loss: torch.Tensor, output: torch.Tensor,
                to_image: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Tell `callback` that `steps_run` of `total` steps are done. Every `preview_every` steps and
    at the last one the report carries the loss and `to_image(output)` (the current image
    [3, R, R] in [0, 1], made only then: reading the loss is a host sync)."""
    if callback is None:
        return
    if steps_run % preview_every == 0 or steps_run == total:
        callback(Progress(steps_run, total, float(loss.detach()), to_image(output.detach())))
    else:
        callback(Progress(steps_run, total))
