"""How auto-stop's settings would have done, replayed on recorded runs: `python -m ganprior_core
stop-study`.

A study records, for each held-out facade and hole kind (lab.held_out: never the benchmark's
evaluation facades), one long run of a preset that auto-stop is not allowed to end:
at every check (the family rule's `check_every`) the held-out tiles' error, which is all
auto-stop sees, and the hole's PSNR and SSIM, which it is meant to serve. Any rule with the same
held-out tiles can then be replayed on the recording without running anything again: where it
would have stopped, which check it would have returned, and how good that check's hole was.
The report pairs each rule with the reference rule on the same runs (mean ± s.e.).

Each run is one JSON file in `<out>/runs/`, written atomically when the run is done, so an
interrupted study resumes with the runs it lacks; `study.json` claims the folder for one prior,
preset and length (lab.run_folder).
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from .. import Progress, imaging, inpaint, metrics
from ..checkpoints import load_generator
from ..cli import CommandError
from ..families import auto_stop_rule
from ..files import write_atomically
from ..method.auto_stop import AutoStopConfig, StopRule, holdout_mask
from ..method.presets import PRESET_NAMES, preset
from ..validation import check_count
from . import run_folder
from .held_out import held_out_cases
from .paired import format_mean_se

MAX_FACADES = 200
MAX_RECORDED_STEPS = 10_000
# Settings a replay may change; the others choose the held-out tiles, which the recording fixed.
REPLAYABLE = ("patience", "smoothing", "rewind")
STUDY_FILE = "study.json"  # the prior, preset and length every recorded run shares


@dataclass(frozen=True)
class StudyConfig:
    checkpoint: str
    out: str
    preset: str = "paper"
    facades: int = 16  # held-out facades, each with a seeded box and seeded strokes
    until: int = 1500  # steps recorded per run (of the preset's schedule, not a shorter one)
    rules: tuple[tuple[str, dict], ...] = ()  # (name, replayable settings); () = a grid
    fixed: tuple[int, ...] = (100, 200, 300, 600)  # fixed step counts shown beside the rules
    threads: int | None = None

    def validate(self) -> None:
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"preset must be one of {', '.join(PRESET_NAMES)}, got {self.preset!r}")
        check_count(self.facades, "facades", 1, MAX_FACADES)
        check_count(self.until, "until", 1, MAX_RECORDED_STEPS)
        for steps in self.fixed:
            check_count(steps, "fixed steps", 1, self.until)
        for name, settings in self.rules:
            unknown = sorted(set(settings) - set(REPLAYABLE))
            if unknown:
                raise ValueError(f"rule {name!r} changes {', '.join(unknown)}: a replay can change "
                                 f"only {', '.join(REPLAYABLE)} (the others chose the recorded "
                                 f"held-out tiles)")


class _RecordingDone(Exception):
    """Raised from the progress callback once a run has recorded its steps."""


def record_run(prior, image: torch.Tensor, hole: torch.Tensor, preset_name: str, seed: int,
               until: int) -> list[list[float]]:
    """[step, held-out error, hole PSNR, hole SSIM] at every check of the family rule, for the
    first `until` steps of the preset's run (its own schedule, auto-stop never ending it)."""
    model_config, optimizer_config = preset(preset_name, prior.config)
    rule = auto_stop_rule(prior.config, optimizer_config.auto_stop)
    watching = replace(rule, patience=MAX_RECORDED_STEPS)  # same tiles, never stops
    config = replace(optimizer_config, auto_stop=watching, preview_every=1)
    held_out = holdout_mask(hole, seed, rule).bool()
    if not held_out.any():
        raise ValueError(f"facade {seed}: too few known pixels to hold any out; nothing to record")
    checks: list[list[float]] = []

    def record(progress: Progress) -> None:
        # The preview after step s + 1 is the image of the forward pass a check at step s measures.
        step = progress.step - 1
        if progress.preview is not None and step % rule.check_every == 0:
            error = float(((progress.preview - image) ** 2)[:, held_out].mean())
            composite = imaging.composite(image, progress.preview, hole)
            scores = metrics.measure(composite, image, hole)
            checks.append([step, error, scores.psnr_hole, scores.ssim_hole])
        if progress.step >= until:
            raise _RecordingDone()

    try:
        inpaint(prior, image, hole, model_config, config, seed=seed, callback=record)
    except _RecordingDone:
        pass
    return checks


def _read_run(path: Path) -> dict:
    try:
        run = json.loads(path.read_text())
        checks = run["checks"]
        if (not isinstance(checks, list) or len(checks) < 2 or not all(
                isinstance(check, list) and len(check) == 4 and all(isinstance(v, (int, float)) for v in check)
                for check in checks)):
            raise ValueError("checks must be at least two [step, error, hole PSNR, hole SSIM] lists")
        return {"seed": int(run["seed"]), "hole": str(run["hole"]), "checks": checks}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a recorded run ({error}); delete it to record it again") from None


def record_study(config: StudyConfig, prior, log: Callable[[str], None] = print) -> list[dict]:
    """Record every missing run of `prior` (loaded from config.checkpoint); returns all runs of
    the study's facades."""
    cases = held_out_cases(config.facades, prior.config.resolution)  # refuses other sizes first
    folder = run_folder.claim_runs_folder(Path(config.out), config.checkpoint, config.preset,
                                          config.until, STUDY_FILE, "a study")
    runs = []
    for seed, kind, image, hole in cases:
        path = folder / f"{seed}_{kind}.json"
        if not path.exists():
            checks = record_run(prior, image, hole, config.preset, seed, config.until)
            write_atomically(path, json.dumps({"seed": seed, "hole": kind, "checks": checks}))
            log(f"facade {seed} {kind}: {len(checks)} checks recorded")
        runs.append(_read_run(path))
    return runs


@dataclass(frozen=True)
class Replayed:
    stopped_at: int  # the check at which the rule would have stopped (or the last one recorded)
    returned: int  # the check whose image the rule would have returned
    psnr_hole: float
    ssim_hole: float


def replay(run: dict, rule: AutoStopConfig) -> Replayed:
    """What `rule` would have done on the recorded run."""
    stop_rule = StopRule(rule)
    by_step = {int(check[0]): check for check in run["checks"]}
    stopped_at = 0
    for step, error, _, _ in run["checks"]:
        stopped_at = int(step)
        stop_rule.record(stopped_at, float(error))
        if stop_rule.should_stop:
            break
    returned = stop_rule.returned_step
    if returned is None:  # every check diverged: the last image, as fit returns it
        returned = stopped_at
    _, _, psnr, ssim = by_step[returned]
    return Replayed(stopped_at, returned, float(psnr), float(ssim))


def fixed_steps(run: dict, steps: int) -> Replayed:
    """The recorded check at `steps` (a fixed run of that many steps, up to one check's rounding)."""
    step = min((int(check[0]) for check in run["checks"]), key=lambda s: (abs(s - steps), s))
    _, _, psnr, ssim = next(check for check in run["checks"] if int(check[0]) == step)
    return Replayed(step, step, float(psnr), float(ssim))


def default_rules(reference: AutoStopConfig) -> list[tuple[str, AutoStopConfig]]:
    grid = [(f"rewind {r:g}, patience {p}, smoothing {s:g}",
             replace(reference, rewind=r, patience=p, smoothing=s))
            for r in (1.0, 0.75, 0.5, 0.35, 0.25) for p in (1, 2, 3) for s in (0.0, 0.5)]
    return [(name, rule) for name, rule in grid if rule != reference]


def format_report(config: StudyConfig, runs: list[dict], reference: AutoStopConfig,
                  rules: list[tuple[str, AutoStopConfig]]) -> str:
    baseline = [replay(run, reference) for run in runs]
    oracle = format_mean_se([max(float(check[2]) for check in run["checks"]) - result.psnr_hole
                       for run, result in zip(runs, baseline)])
    changed = ", ".join(f"{f.name} {getattr(reference, f.name):g}" for f in fields(reference)
                        if f.name in REPLAYABLE)
    lines = [f"# Auto-stop replayed: `{config.preset}` on {config.checkpoint}", "",
             f"{len(runs)} recorded runs ({config.facades} held-out facades × box and strokes, "
             f"{config.until} steps each). Reference: the family rule ({changed}): hole PSNR "
             f"{statistics.fmean(r.psnr_hole for r in baseline):.2f} dB, stops at step "
             f"{statistics.fmean(r.stopped_at for r in baseline):.0f} and returns step "
             f"{statistics.fmean(r.returned for r in baseline):.0f} on average. The best check of "
             f"each run, known only afterwards, would give {oracle} dB.",
             "", "Each row minus the reference on the same runs (mean ± s.e.):", "",
             "| rule | hole PSNR | box | strokes | hole SSIM ×10⁻² | stops at | returns |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    candidates = [(f"fixed {steps} steps", [fixed_steps(run, steps) for run in runs]) for steps in config.fixed]
    candidates += [(name, [replay(run, rule) for run in runs]) for name, rule in rules]
    for name, results in candidates:
        psnr = [r.psnr_hole - b.psnr_hole for r, b in zip(results, baseline)]
        by_hole = {kind: [d for d, run in zip(psnr, runs) if run["hole"] == kind] for kind in ("box", "strokes")}
        ssim = [r.ssim_hole - b.ssim_hole for r, b in zip(results, baseline)]
        lines.append(f"| {name} | {format_mean_se(psnr)} | {format_mean_se(by_hole['box'])} | "
                     f"{format_mean_se(by_hole['strokes'])} | {format_mean_se([d * 100 for d in ssim])} | "
                     f"{statistics.fmean(r.stopped_at for r in results):.0f} | "
                     f"{statistics.fmean(r.returned for r in results):.0f} |")
    return "\n".join(lines) + "\n"


def run_study(config: StudyConfig, log: Callable[[str], None] = print) -> Path:
    """Record what is missing, replay, and write `<out>/report.md`; returns its path."""
    config.validate()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    prior = load_generator(config.checkpoint).eval()
    reference = auto_stop_rule(prior.config, preset(config.preset, prior.config)[1].auto_stop)
    rules = ([(name, replace(reference, **settings)) for name, settings in config.rules]
             if config.rules else default_rules(reference))
    for name, rule in rules:
        try:
            rule.validate()
        except (TypeError, ValueError) as error:
            raise ValueError(f"rule {name!r}: {error}") from None
    runs = record_study(config, prior, log)
    report = Path(config.out) / "report.md"
    write_atomically(report, format_report(config, runs, reference, rules))
    return report


# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Records one long run per held-out facade and hole kind that auto-stop "
                          "may not end (the held-out error and the hole's PSNR/SSIM at every "
                          "check), then replays auto-stop rules (patience, smoothing, rewind) and "
                          "fixed step counts on the recordings, paired against the family's rule. "
                          "Rerun to resume.")
    parser.add_argument("--checkpoint", required=True, help="the prior (any supported format)")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="paper", help="default paper")
    parser.add_argument("--facades", type=int, default=16, help="held-out facades (default 16)")
    parser.add_argument("--until", type=int, default=1500, help="steps recorded per run (default 1500)")
    parser.add_argument("--rules", help="JSON file: rule name -> settings (default: a grid)")
    parser.add_argument("--fixed", help="comma-separated fixed step counts to show (default "
                                        "100,200,300,600)")
    parser.add_argument("--threads", type=int, help="CPU threads (default torch's)")
    parser.add_argument("--out", required=True, help="output directory (reused to resume)")


def run_command(args: argparse.Namespace) -> None:
    config = StudyConfig(args.checkpoint, args.out, args.preset, args.facades, args.until,
                         _read_rules(args.rules) if args.rules else (),
                         _fixed_steps(args.fixed) if args.fixed is not None else StudyConfig.fixed,
                         args.threads)
    report = run_study(config, lambda line: print(line, flush=True))
    print(report.read_text(), end="")
    print(f"wrote {report}")


def _read_rules(path: str) -> tuple[tuple[str, dict], ...]:
    """--rules: a JSON object of rule name -> replayable settings."""
    try:
        named = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CommandError(f"--rules {path} cannot be read as JSON ({error})") from None
    if not isinstance(named, dict) or not all(isinstance(v, dict) for v in named.values()):
        raise CommandError(f"--rules {path} must map rule names to settings, e.g. "
                           '{"late": {"rewind": 0.25}}')
    return tuple(named.items())


def _fixed_steps(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.split(",")) if text else ()
    except ValueError:
        raise CommandError(f"--fixed takes comma-separated step counts (e.g. 100,300), got {text!r}") from None
