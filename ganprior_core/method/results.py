"""What a run reports while it goes (Progress; BatchProgress for a batch of runs made one after
another, TogetherProgress for runs stepped together) and what it returns (InpaintResult)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .auto_stop import TYPICAL_AUTO_STOP_STEPS, StopRule, StopState, expected_steps


@dataclass
class Progress:
    step: int  # optimisation steps completed (the run's last report when stopped early: `total`)
    total: int  # the most steps the run may take
    loss: float | None = None  # loss of the latest step, only every preview_every steps
    preview: torch.Tensor | None = None  # [3, R, R] in [0, 1], only every preview_every steps
    stopped_early: bool = False  # the run's last report: auto-stop ended it before `total`
    stop: StopState | None = None  # auto-stop's state; None: no stop rule, the run takes `total`
    # A run of several starts (starts.py) reports each start's own steps above, and here where
    # the report sits in the whole: which start, the steps the other starts ran before it, the
    # step this start pauses at to be compared (None: it runs to its end), and the steps
    # expected after it.
    start: int = 0
    starts: int = 1
    steps_before: int = 0
    pauses_at: int | None = None
    steps_after: int = 0
    together: bool = False  # the starts run side by side until they are compared (batched.py)

    @property
    def start_steps_done(self) -> int:
        """Steps this start has run (when stopped early: all it took)."""
        if self.stopped_early and self.stop is not None and self.stop.last_check is not None:
            return self.stop.last_check  # the run ended at this check, before its update
        return self.step

    @property
    def steps_done(self) -> int:
        """Steps run so far by the whole run (every start; when stopped early: all it took)."""
        return self.steps_before + self.start_steps_done

    def start_expected(self, typical: int = TYPICAL_AUTO_STOP_STEPS) -> int:
        """The steps this start is expected to take (auto_stop.expected_steps; a start being
        explored: to the step it pauses at); once it stopped early, the steps it took."""
        if self.stopped_early:
            return self.start_steps_done
        if self.pauses_at is not None:
            return max(self.step, min(self.pauses_at, expected_steps(self.stop, self.total, typical)))
        return max(self.step, expected_steps(self.stop, self.total, typical))

    def expected_total(self, typical: int = TYPICAL_AUTO_STOP_STEPS) -> int:
        """The steps the whole run is expected to take, revised as it goes."""
        return self.steps_before + self.start_expected(typical) + self.steps_after

    def describe(self, typical: int = TYPICAL_AUTO_STOP_STEPS) -> str:
        """Where the run is and what it waits for, in one short line for a person."""
        which = "" if self.starts == 1 else f"start {self.start + 1} of {self.starts}: "
        if self.pauses_at is not None and not self.stopped_early:
            if self.together:
                return (f"{self.starts} starts side by side: step {self.step} of {self.pauses_at}, "
                        "then they are compared")
            return f"{which}step {self.step} of {self.pauses_at}, then the starts are compared"
        stop = self.stop
        if stop is None:
            return f"{which}step {self.step} of {self.total}"
        if self.stopped_early:
            return (f"{which}stopped at step {self.start_steps_done}: held-out error best at step "
                    f"{stop.best_step}")
        where = f"{which}step {self.step} of ~{self.start_expected(typical)} (max {self.total})"
        if stop.best_step is None:
            return where
        if stop.improving:
            return f"{where}: held-out error improving, best at {stop.best_step}"
        return (f"{where}: stops at {min(stop.stops_at, self.total)} unless the held-out error "
                "improves")


class BatchProgress:
    """One progress bar over a batch of runs made one after another, in steps: (value, total).

    A run not started yet is expected to take as many steps as the finished ones took on average
    (before any finished: as many as the current run is expected to), and the current run's
    expectation uses that average as its typical length. Fixed runs give what a plain count
    gives: `steps` per image."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.finished: list[int] = []  # steps each finished run took (0: an unconditional sample)

    def typical(self) -> int:
        ran = [steps for steps in self.finished if steps > 0]
        return round(sum(ran) / len(ran)) if ran else TYPICAL_AUTO_STOP_STEPS

    def bar(self, progress: Progress) -> tuple[int, int]:
        """(value, total) while the run of image len(finished) reports `progress`."""
        done = sum(self.finished)
        expected = progress.expected_total(self.typical())
        later = max(0, self.count - len(self.finished) - 1)
        ran = [steps for steps in self.finished if steps > 0]
        per_later = self.typical() if ran else expected
        return done + progress.steps_done, done + expected + later * per_later

    def finish(self, steps_run: int) -> tuple[int, int]:
        """Record a finished run; the bar's (value, total) now."""
        self.finished.append(steps_run)
        done, later = sum(self.finished), max(0, self.count - len(self.finished))
        return done, done + later * self.typical() if later else done


class TogetherProgress:
    """One progress bar over a batch of runs stepped together (batched.py), in steps:
    (value, total) = the steps every run has made, and the steps they are expected to take
    (each run's own expectation once it has reported, before that as many as the run reporting
    now expects; a run that stopped early counts the steps it took)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.latest: dict[int, Progress] = {}  # each run's latest report

    def bar(self, index: int, progress: Progress) -> tuple[int, int]:
        """(value, total) once run `index` reports `progress`."""
        self.latest[index] = progress
        done = sum(report.steps_done for report in self.latest.values())
        expected = sum(report.expected_total() for report in self.latest.values())
        return done, expected + (self.count - len(self.latest)) * progress.expected_total()


@dataclass(frozen=True)
class StartRecord:
    """One start of a multi-start run: its seed, how well its hole fill agreed with the other
    starts' when they were compared (mean PSNR in dB; None with fewer than 3 starts), and whether
    it was continued to the end (a candidate)."""
    seed: int
    agreement: float | None
    continued: bool


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
    seed: int | None = None  # the seed this fill's run used (a multi-start run: its start's own)
    agreement: float | None = None  # a start's agreement with the others (StartRecord)
    starts: list[StartRecord] = field(default_factory=list)  # a multi-start run's, best first
    alternatives: list[InpaintResult] = field(default_factory=list)  # other candidates, best next
    steps_all_starts: int | None = None  # a multi-start run: the steps all its starts ran together

    @property
    def steps_of_the_run(self) -> int:
        """The optimisation steps this result cost: every start's in a multi-start run."""
        return self.steps_run if self.steps_all_starts is None else self.steps_all_starts

    def summary(self) -> str:
        """What the run came to, in one short line (the node shows it when the image is done)."""
        if not self.loss_history:
            return "done: an unconditional sample (nothing was known)"
        returned = "" if self.best_step is None else f", returned the image of step {self.best_step}"
        return f"done: {self.steps_run} steps in {self.seconds:.1f} s{returned}"

    def candidates(self) -> list[InpaintResult]:
        """This fill and its alternatives, best first."""
        return [self, *self.alternatives]

    def describe_choice(self) -> str:
        """Which start this fill is, in one phrase; empty for a single run."""
        if len(self.starts) < 2:
            return ""
        score = "" if self.agreement is None else f", agreement {self.agreement:.2f} dB"
        return f"seed {self.seed}{score} (of {len(self.starts)} starts)"

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
                to_image: Callable[[torch.Tensor], torch.Tensor],
                stop_rule: StopRule | None = None) -> None:
    """Tell `callback` that `steps_run` of `total` steps are done, with the stop rule's state
    (for the expected length of the run). Every `preview_every` steps and at the last one the
    report carries the loss and `to_image(output)` (the current image [3, R, R] in [0, 1], made
    only then: reading the loss is a host sync)."""
    if callback is None:
        return
    stop = None if stop_rule is None else stop_rule.state()
    if steps_run % preview_every == 0 or steps_run == total:
        callback(Progress(steps_run, total, float(loss.detach()), to_image(output.detach()), stop=stop))
    else:
        callback(Progress(steps_run, total, stop=stop))
