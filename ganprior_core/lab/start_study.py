"""Several starts against one, measured on default runs: `python -m ganprior_core starts-study`.

The fill study (fill_study.py) found that no signal of a single run ranks its seeds, and that
the agreement between starts does. This study records what a default is made of: for each
held-out facade (lab.held_out), hole kind and start, one run exactly as `inpaint` runs it with
the preset (auto-stop, late phase, the family's rule), with the hole fill and the held-out tiles'
error at every check, the hole PSNR/SSIM it returns, its steps and seconds.

Runs are independent and deterministic: a start of a multi-start run that is chosen to continue
is the same run as the single run with that start's seed. So every multi-start schedule (K starts
run to step S, the one whose fill agrees best with the others continues) and every step cap can be
replayed exactly from the recordings, without running it: the report tabulates them against one
start per image (today's default), with the cost each schedule takes in steps and seconds.
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import Progress, imaging, inpaint, metrics
from ..checkpoints import load_generator
from ..cli import add_freeze_option
from ..families import auto_stop_rule
from ..files import write_atomically
from ..method.auto_stop import StopRule, holdout_mask
from ..method.config import MAX_STEPS, OptimizerConfig, g1_freeze_step
from ..method.presets import PRESET_NAMES, preset
from ..method.starts import agreement
from ..validation import check_count, check_non_negative
from . import run_folder
from .fill_study import _percentile, returned_check, run_seed, spearman
from .held_out import HOLE_KINDS, held_out_cases

MAX_FACADES = 200
MAX_SEEDS = 64
STUDY_FILE = "starts_study.json"
SCHEDULE_STARTS = (3, 4, 5)  # two starts agree equally: agreement cannot rank them
SCHEDULE_STEPS = (25, 50, 100, 200)


@dataclass(frozen=True)
class StartsStudyConfig:
    checkpoint: str
    out: str
    preset: str = "paper"
    facades: int = 12
    seeds: int = 6
    lr_generator: float | None = None  # None: the preset's
    threads: int | None = None
    caps: tuple[int | None, ...] = (None,)  # step caps the report replays (None: no cap)
    # After how many steps the codes and G1 are frozen (None: never), as OptimizerConfig's
    freeze_g1_at: int | None = OptimizerConfig().freeze_g1_at

    def configs(self, prior_config):
        """The preset with the study's changes: what every recorded run runs."""
        model_config, optimizer_config = preset(self.preset, prior_config)
        if self.lr_generator is not None:
            optimizer_config = replace(optimizer_config, lr_generator=self.lr_generator)
        return model_config, replace(optimizer_config, freeze_g1_at=self.freeze_g1_at)

    def variant(self) -> str:
        """What the study changes in the preset, in words ("preset": nothing)."""
        changes = [f"{name}={getattr(self, name)}" for name, default in
                   (("lr_generator", None), ("freeze_g1_at", OptimizerConfig().freeze_g1_at))
                   if getattr(self, name) != default]
        return ", ".join(changes) or "preset"

    def validate(self) -> None:
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"preset must be one of {', '.join(PRESET_NAMES)}, got {self.preset!r}")
        check_count(self.facades, "facades", 1, MAX_FACADES)
        check_count(self.seeds, "seeds", 2, MAX_SEEDS)
        if self.lr_generator is not None:
            check_non_negative(self.lr_generator, "lr_generator")
        if self.freeze_g1_at is not None:
            check_count(self.freeze_g1_at, "freeze_g1_at", 1, MAX_STEPS)
        for cap in self.caps:
            if cap is not None:
                check_count(cap, "a step cap", 1, MAX_STEPS)


def record_run(prior, image: torch.Tensor, hole: torch.Tensor, config: StartsStudyConfig,
               seed: int) -> tuple[dict, torch.Tensor]:
    """One default run: its result and every check's tiles error and hole scores, and its hole
    fills [checks + 1, 3, n] (the last one the fill it returns)."""
    model_config, optimizer_config = config.configs(prior.config)
    optimizer_config = replace(optimizer_config, preview_every=1)
    rule = auto_stop_rule(prior.config, optimizer_config.auto_stop)
    tiles = holdout_mask(hole, seed, rule).bool()
    hole_pixels = imaging.hole_pixels(hole)
    checks: list[dict] = []
    fills: list[torch.Tensor] = []

    def record(progress: Progress) -> None:
        step = progress.step - 1  # the preview after step s + 1 is what a check at s measures
        if progress.preview is None or progress.stopped_early or step % rule.check_every:
            return
        elapsed = time.perf_counter() - started  # before this check's own measuring
        squared = ((progress.preview - image) ** 2).mean(dim=0)
        scores = metrics.measure(imaging.composite(image, progress.preview, hole), image, hole)
        checks.append({"step": step, "tiles": float(squared[tiles].mean()),
                       "psnr_hole": scores.psnr_hole, "ssim_hole": scores.ssim_hole,
                       "seconds": elapsed})
        fills.append(progress.preview[:, hole_pixels].half())

    started = time.perf_counter()
    result = inpaint(prior, image, hole, model_config, optimizer_config, seed=seed, callback=record)
    seconds = time.perf_counter() - started
    scores = metrics.measure(result.composite, image, hole)
    fills.append(result.output[:, hole_pixels].half())
    run = {"seed": seed, "checks": checks, "steps_run": result.steps_run,
           "best_step": result.best_step, "seconds": seconds,
           "psnr_hole": scores.psnr_hole, "ssim_hole": scores.ssim_hole}
    return run, torch.stack(fills)


def record_study(config: StartsStudyConfig, prior, log: Callable[[str], None] = print) -> list[dict]:
    cases = held_out_cases(config.facades, prior.config.resolution)
    variant = config.variant()
    folder = run_folder.claim_runs_folder(Path(config.out), config.checkpoint,
                                          f"{config.preset} ({variant})", 0, STUDY_FILE,
                                          "a starts study")
    runs = []
    for facade, kind, image, hole in cases:
        for start in range(config.seeds):
            path = folder / f"{facade}_{kind}_{start}.json"
            fills_path = path.with_suffix(".pt")
            if not (path.exists() and fills_path.exists()):
                run, fills = record_run(prior, image, hole, config, run_seed(facade, start))
                buffer = io.BytesIO()
                torch.save(fills, buffer)
                write_atomically(fills_path, buffer.getvalue())
                write_atomically(path, json.dumps({"facade": facade, "hole": kind, "start": start,
                                                   **run}))
                log(f"facade {facade} {kind} start {start}: hole {run['psnr_hole']:.2f} dB, "
                    f"{run['steps_run']} steps, {run['seconds']:.1f} s")
            run = json.loads(path.read_text())
            run["fills"] = torch.load(fills_path, weights_only=True).float()
            runs.append(run)
    return runs


# ---------------------------------------------------------------------------------------------
# Replaying schedules on the recordings

@dataclass(frozen=True)
class Schedule:
    starts: int = 1
    choose_at: int | None = None  # None: one start, nothing compared
    max_steps: int | None = None  # a cap on the steps a start may run (None: the run's own end)

    def label(self) -> str:
        compared = "at their end" if self.choose_at is None else f"at {self.choose_at}"
        text = "1 start (today)" if self.starts == 1 else f"{self.starts} starts, compared {compared}"
        return text if self.max_steps is None else f"{text}, at most {self.max_steps} steps"


def _returned(run: dict, rule, max_steps: int | None) -> tuple[int, int]:
    """(index of the fill the run returns, steps it ran) with the family rule replayed on the
    recorded tiles' error and, with `max_steps`, ended there (the rule's choice at that point)."""
    if max_steps is None or run["steps_run"] <= max_steps:
        return len(run["fills"]) - 1, run["steps_run"]
    stop_rule = StopRule(rule)
    for check in run["checks"]:
        if check["step"] > max_steps:
            break
        stop_rule.record(check["step"], check["tiles"])
    steps = [check["step"] for check in run["checks"]]
    return steps.index(stop_rule.returned_step), max_steps


def _scores_at(run: dict, index: int) -> tuple[float, float]:
    if index == len(run["fills"]) - 1:
        return run["psnr_hole"], run["ssim_hole"]
    return run["checks"][index]["psnr_hole"], run["checks"][index]["ssim_hole"]


def _fill_at(run: dict, step: int) -> torch.Tensor:
    """The run's hole fill after `step` updates; its returned fill where it ended before."""
    if run["steps_run"] <= step:
        return run["fills"][-1]
    for index, check in enumerate(run["checks"]):
        if check["step"] == step:
            return run["fills"][index]
    raise ValueError(f"step {step} was not recorded (checks every 25 steps)")


def time_model(runs: list[dict], freeze_at: int) -> tuple[float, float, float] | None:
    """Least-squares seconds = set-up + a x full steps + b x late steps over the recorded runs'
    ends and, where recorded, the time each check was reached. None where the recordings cannot
    tell the three apart: runs that all ran `freeze_at` full steps and recorded only their ends
    (then set-up and full steps are one unknown)."""
    def row(steps: int) -> list[float]:
        return [1.0, min(steps, freeze_at), max(0, steps - freeze_at)]

    rows, seconds = [], []
    for run in runs:
        rows.append(row(run["steps_run"]))
        seconds.append(run["seconds"])
        for check in run["checks"]:
            if "seconds" in check:  # the check at step s sees the image after s + 1 updates
                rows.append(row(check["step"] + 1))
                seconds.append(check["seconds"])
    design = torch.tensor(rows, dtype=torch.float64)
    if torch.linalg.matrix_rank(design) < 3:
        return None
    solution = torch.linalg.lstsq(design, torch.tensor(seconds, dtype=torch.float64)[:, None])
    setup, full, late = (float(v) for v in solution.solution[:, 0])
    return setup, full, late


def replay(runs: list[dict], schedule: Schedule, rule) -> list[dict]:
    """One outcome per image and K-subset of its recorded starts: the chosen start's returned
    hole PSNR/SSIM, and the steps every other start of the subset ran (to the comparison, or with
    `choose_at` None to its own end, where the returned fills are compared)."""
    images: dict[tuple, list[dict]] = {}
    for run in runs:
        images.setdefault((run["facade"], run["hole"]), []).append(run)
    outcomes = []
    for image, members in sorted(images.items()):
        for subset in itertools.combinations(members, schedule.starts):
            ends = [_returned(run, rule, schedule.max_steps) for run in subset]
            if schedule.starts == 1:
                chosen = 0
            else:
                fills = [run["fills"][index] if schedule.choose_at is None
                         else _fill_at(run, schedule.choose_at) for run, (index, _) in zip(subset, ends)]
                scores = agreement(fills)
                chosen = max(range(len(subset)), key=lambda i: (scores[i], -i))
            index, steps = ends[chosen]
            psnr, ssim = _scores_at(subset[chosen], index)
            explored = [end[1] if schedule.choose_at is None
                        else min(end[1], schedule.choose_at + 1)
                        for i, end in enumerate(ends) if i != chosen]
            outcomes.append({"image": image, "psnr_hole": psnr, "ssim_hole": ssim,
                             "steps": steps, "explored": explored})
    return outcomes


def summarise(outcomes: list[dict], model: tuple[float, float, float] | None, freeze_at: int) -> dict:
    """The outcomes' scores and costs; seconds None without a time model."""
    setup, full, late = model or (math.nan, math.nan, math.nan)

    def seconds(steps: int, with_setup: bool = True) -> float:
        return (setup if with_setup else 0.0) + full * min(steps, freeze_at) + late * max(0, steps - freeze_at)

    psnr = [o["psnr_hole"] for o in outcomes]
    ssim = [o["ssim_hole"] for o in outcomes]
    steps = [o["steps"] + sum(o["explored"]) for o in outcomes]
    secs = [seconds(o["steps"]) + sum(seconds(s, with_setup=False) for s in o["explored"]) for o in outcomes]
    return {"psnr_mean": statistics.fmean(psnr), "psnr_p10": _percentile(psnr, 10), "psnr_min": min(psnr),
            "ssim_mean": statistics.fmean(ssim), "ssim_p10": _percentile(ssim, 10),
            "steps_mean": statistics.fmean(steps), "steps_max": max(steps),
            "start_steps_median": statistics.median(o["steps"] for o in outcomes),
            "start_steps_max": max(o["steps"] for o in outcomes),
            "seconds_mean": None if model is None else statistics.fmean(secs),
            "count": len(outcomes)}


def schedules(max_steps: tuple[int | None, ...] = (None,)) -> list[Schedule]:
    found = [Schedule(max_steps=cap) for cap in max_steps]
    for starts, choose_at, cap in itertools.product(SCHEDULE_STARTS, (*SCHEDULE_STEPS, None), max_steps):
        found.append(Schedule(starts, choose_at, cap))
    return found


def format_report(config: StartsStudyConfig, runs: list[dict], rule, freeze_at: int,
                  caps: tuple[int | None, ...] = (None,)) -> str:
    model = time_model(runs, freeze_at)
    lines = [f"# Starts study: `{config.preset}` on {config.checkpoint}", "",
             f"{len(runs)} recorded default runs: {config.facades} held-out facades × "
             f"{len(HOLE_KINDS)} hole kinds × {config.seeds} starts"
             + ("" if config.variant() == "preset" else f", changed: {config.variant()}")
             + (". Seconds are left out: these recordings cannot tell set-up and full steps apart "
                "(every run ran the same full steps and none recorded when it reached its checks)."
                if model is None else
                f". Seconds modelled from the recorded runs: {model[0]:.2f} s set-up + "
                f"{model[1] * 1000:.1f} ms per full step + {model[2] * 1000:.1f} ms per late step."),
             ""]
    for kind in [*HOLE_KINDS, "all"]:
        chosen = [run for run in runs if kind in ("all", run["hole"])]
        lines += [f"## {kind} holes", "",
                  "| schedule | outcomes | hole PSNR mean | 10th pct | worst | hole SSIM mean | 10th pct "
                  "| steps mean | max | start steps median | max | seconds (model) | × today |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        today = None
        for schedule in schedules(caps):
            s = summarise(replay(chosen, schedule, rule), model, freeze_at)
            today = today or s["seconds_mean"]
            lines.append(f"| {schedule.label()} | {s['count']} | {s['psnr_mean']:.2f} | {s['psnr_p10']:.2f} | "
                         f"{s['psnr_min']:.2f} | {s['ssim_mean']:.4f} | {s['ssim_p10']:.4f} | "
                         f"{s['steps_mean']:.0f} | {s['steps_max']} | {s['start_steps_median']:.0f} | "
                         f"{s['start_steps_max']} | {_seconds(s['seconds_mean'], today)} |")
        lines.append("")
    lines += ["## What ranks one image's starts", "",
              "Rank correlation (Spearman) of each signal (lower = better) with the returned hole "
              "PSNR across the starts of one image, mean ± s.e. over images (−1 ranks them "
              "perfectly, 0 not at all).", "", "| signal | within an image | images |",
              "|---|---:|---:|"]
    for name, mean, se, count in signal_correlations(runs, rule):
        shown = "–" if mean is None else f"{mean:+.2f}" + ("" if se is None else f" ± {se:.2f}")
        lines.append(f"| {name} | {shown} | {count} |")
    return "\n".join(lines) + "\n"


def _seconds(seconds: float | None, today: float | None) -> str:
    """A schedule's modelled seconds and its multiple of today's, or dashes without a model."""
    return "– | –" if seconds is None else f"{seconds:.1f} | {seconds / today:.2f}"


def run_study(config: StartsStudyConfig, log: Callable[[str], None] = print) -> Path:
    config.validate()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    prior = load_generator(config.checkpoint).eval()
    model_config, optimizer_config = config.configs(prior.config)
    rule = auto_stop_rule(prior.config, optimizer_config.auto_stop)
    freeze_at = g1_freeze_step(model_config, optimizer_config)
    runs = record_study(config, prior, log)
    report = Path(config.out) / "report.md"
    write_atomically(report, format_report(config, runs, rule, freeze_at or MAX_STEPS, config.caps))
    return report


# ---------------------------------------------------------------------------------------------
# Command line

def _caps(text: str) -> tuple[int | None, ...]:
    return tuple(None if item.strip() == "none" else int(item) for item in text.split(",") if item.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Records default runs (several starts per held-out facade and hole kind) "
                          "and replays multi-start schedules and step caps on them exactly: hole "
                          "PSNR/SSIM mean, 10th percentile and worst, steps and modelled seconds "
                          "against one start. Rerun to resume.")
    parser.add_argument("--checkpoint", required=True, help="the prior (any supported format)")
    parser.add_argument("--out", required=True, help="output directory (reused to resume)")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="paper", help="default paper")
    parser.add_argument("--facades", type=int, default=12, help="held-out facades (default 12)")
    parser.add_argument("--seeds", type=int, default=6, help="starts per facade and hole (default 6)")
    parser.add_argument("--lr-generator", dest="lr_generator", type=float,
                        help="the generator's learning rate (default: the preset's)")
    parser.add_argument("--caps", type=_caps, default=(None,), metavar="none,N,...",
                        help="step caps replayed besides each schedule (default none)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    add_freeze_option(parser)


def run_command(args: argparse.Namespace) -> None:
    config = StartsStudyConfig(args.checkpoint, args.out, args.preset, args.facades, args.seeds,
                               args.lr_generator, args.threads, args.caps, args.freeze_g1_at)
    print(f"wrote {run_study(config)}")


def signal_correlations(runs: list[dict], rule) -> list[tuple[str, float | None, float | None, int]]:
    """For each signal a run can see (lower = better), its rank correlation with the returned
    hole PSNR across one image's starts (mean over images; −1 ranks them perfectly) and its
    standard error, and the number of images: the held-out tiles' error (auto-stop's signal) at
    steps 100, 200 and at the returned check, and minus the agreement with the other starts'
    fills at steps 25 ... 200."""
    images: dict[tuple, list[dict]] = {}
    for run in runs:
        images.setdefault((run["facade"], run["hole"]), []).append(run)

    def tiles_at(run: dict, step: int | None) -> float:
        if step is None:
            return run["checks"][returned_check(run, rule)]["tiles"]
        return min(run["checks"], key=lambda check: abs(check["step"] - step))["tiles"]

    signals: dict[str, Callable[[list[dict]], list[float]]] = {
        f"tiles @ {step}": (lambda members, step=step: [tiles_at(run, step) for run in members])
        for step in (100, 200)}
    signals["tiles @ returned"] = lambda members: [tiles_at(run, None) for run in members]
    for step in SCHEDULE_STEPS:
        def disagreement(members: list[dict], step: int = step) -> list[float]:
            return [-score for score in agreement([_fill_at(run, step) for run in members])]
        signals[f"agreement @ {step}"] = disagreement

    def final_disagreement(members: list[dict]) -> list[float]:
        return [-score for score in agreement([run["fills"][-1] for run in members])]
    signals["agreement @ returned"] = final_disagreement
    rows = []
    for name, signal in signals.items():
        values = []
        for members in images.values():
            rho = spearman(signal(members), [run["psnr_hole"] for run in members])
            if rho is not None:
                values.append(rho)
        mean = statistics.fmean(values) if values else None
        se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
        rows.append((name, mean, se, len(values)))
    return rows

