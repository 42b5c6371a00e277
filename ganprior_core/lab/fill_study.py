"""Which signal a run can see predicts how well it fills the hole: `python -m ganprior_core
fill-study`.

One press of Run is a lottery today: across seeds the same image's hole PSNR spreads by several
dB, and runs that fit the known pixels better can fill the hole worse. Choosing among several
starts, or stopping better, needs a signal computed only from what was observed that ranks runs
as their holes rank. This study records candidates and measures how well each ranks them.

For each held-out facade (lab.held_out), hole kind and run seed it records one run of the
preset whose held-out pixels auto-stop may not end, and at every check of the family rule:
- `tiles`: the error on auto-stop's held-out tiles (scattered known pixels, never in the loss);
- `decoy`: the error on a decoy, the hole's own shape moved into the known area, halved or
  quartered where it fits no other way (given to the run as part of the hole, so never in the
  loss; none where it fits nowhere);
- `ring`: the error on the known pixels next to the hole (in the loss);
- `fit`: the error on every known pixel in the loss;
and, for the report only, the hole's PSNR and SSIM against the truth. The decoy takes known
pixels from the fit, so runs here are not the default runs; what is measured is how the signals
rank runs of the same image. Every signal is computed from the generator's image and the
observation on observed pixels: the hole's pixels never enter one.

The report gives, per prior and hole kind, the rank correlation (Spearman) of each signal, early
and at the check the family rule returns, with the hole PSNR the rule returns: across the seeds of
one image (what choosing among starts needs), averaged over images, and pooled over all runs; and
what choosing the seed with the best signal would give against a random seed. The agreement of a
run's fill with the other seeds' fills joins as one more signal.
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import Progress, imaging, inpaint, metrics
from ..checkpoints import load_generator
from ..families import auto_stop_rule
from ..files import write_atomically
from ..method.auto_stop import StopRule, holdout_mask
from ..method.presets import PRESET_NAMES, preset
from ..validation import check_count
from . import run_folder
from .held_out import HOLE_KINDS, held_out_cases
from .paired import format_mean_se

MAX_FACADES = 200
MAX_SEEDS = 64
MAX_RECORDED_STEPS = 10_000
SIGNALS = ("tiles", "decoy", "ring", "fit")
STUDY_FILE = "fill_study.json"
# A run seed of a study: facade seed and start index, apart from the facades' own seeds.
RUN_SEED_STRIDE = 1_000_003
DECOY_MARGIN = 2  # pixels between the hole and its decoy
RING_WIDTH = 3  # pixels of the known ring around the hole
DECOY_SCALES = (1.0, 0.5, 0.25)
EARLY_STEPS = (50, 100, 200)
CHOICE_STARTS = (1, 2, 3, 4)  # starts chosen among, in the report's last table


@dataclass(frozen=True)
class FillStudyConfig:
    checkpoint: str
    out: str
    preset: str = "paper"
    facades: int = 4  # held-out facades, each with a seeded box and seeded strokes
    seeds: int = 6  # run seeds (starts) per facade and hole kind
    until: int = 800  # steps recorded per run
    threads: int | None = None

    def validate(self) -> None:
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"preset must be one of {', '.join(PRESET_NAMES)}, got {self.preset!r}")
        check_count(self.facades, "facades", 1, MAX_FACADES)
        check_count(self.seeds, "seeds", 2, MAX_SEEDS)
        check_count(self.until, "until", max(EARLY_STEPS), MAX_RECORDED_STEPS)


def decoy_region(hole: torch.Tensor, seed: int, margin: int = DECOY_MARGIN) -> torch.Tensor | None:
    """[R, R] float mask: the hole's shape moved to a seeded place in the known area, at least
    `margin` pixels from the hole, at full size where it fits, else halved, else quartered;
    None where even that fits nowhere."""
    hole = imaging.hole_pixels(hole).float()
    rows, cols = hole.any(dim=1).nonzero()[:, 0], hole.any(dim=0).nonzero()[:, 0]
    if len(rows) == 0:
        return None
    shape = hole[int(rows[0]):int(rows[-1]) + 1, int(cols[0]):int(cols[-1]) + 1]  # [h, w]
    near_hole = F.max_pool2d(hole[None, None], 2 * margin + 1, 1, margin)[0, 0]
    for scale in DECOY_SCALES:
        scaled = (F.interpolate(shape[None, None], scale_factor=scale, mode="nearest")[0, 0]
                  if scale != 1 else shape)
        if scaled.sum() == 0 or scaled.shape[0] > hole.shape[0] or scaled.shape[1] > hole.shape[1]:
            continue
        # overlap[y, x]: pixels near the hole under the shape when its corner sits at (y, x)
        overlap = F.conv2d(near_hole[None, None], scaled[None, None])[0, 0]
        places = (overlap == 0).nonzero()
        if len(places):
            pick = torch.randint(len(places), (1,), generator=torch.Generator().manual_seed(seed))
            y, x = (int(v) for v in places[int(pick)])
            decoy = torch.zeros_like(hole)
            decoy[y:y + scaled.shape[0], x:x + scaled.shape[1]] = scaled
            return decoy
    return None


def signal_regions(hole: torch.Tensor, decoy: torch.Tensor | None, tiles: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
    """Boolean [R, R] masks of the pixels each signal reads; none of them touches the hole."""
    hole = imaging.hole_pixels(hole)
    unseen = hole | tiles.bool() | (torch.zeros_like(hole) if decoy is None else decoy.bool())
    near = F.max_pool2d(hole.float()[None, None], 2 * RING_WIDTH + 1, 1, RING_WIDTH)[0, 0] > 0
    regions = {"tiles": tiles.bool(), "ring": near & ~unseen, "fit": ~unseen}
    if decoy is not None:
        regions["decoy"] = decoy.bool()
    return regions


class _RecordingDone(Exception):
    """Raised from the progress callback once a run has recorded its steps."""


def record_run(prior, image: torch.Tensor, hole: torch.Tensor, preset_name: str, seed: int,
               until: int) -> tuple[list[dict], torch.Tensor]:
    """Every check's signals and hole scores of one run, and its hole fills [checks, 3, n]."""
    model_config, optimizer_config = preset(preset_name, prior.config)
    rule = auto_stop_rule(prior.config, optimizer_config.auto_stop)
    watching = replace(rule, patience=MAX_RECORDED_STEPS)  # the same tiles, never stopping
    config = replace(optimizer_config, auto_stop=watching, preview_every=1, stop="auto")
    decoy = decoy_region(hole, seed)
    given_hole = hole if decoy is None else torch.maximum(hole, decoy)
    regions = signal_regions(hole, decoy, holdout_mask(given_hole, seed, rule))
    hole_pixels = imaging.hole_pixels(hole)
    checks: list[dict] = []
    fills: list[torch.Tensor] = []

    def record(progress: Progress) -> None:
        step = progress.step - 1  # the preview after step s + 1 is what a check at s measures
        if progress.preview is not None and step % rule.check_every == 0:
            squared = ((progress.preview - image) ** 2).mean(dim=0)  # [R, R]
            check = {"step": step, **{name: float(squared[region].mean()) if region.any() else None
                                      for name, region in regions.items()}}
            scores = metrics.measure(imaging.composite(image, progress.preview, hole), image, hole)
            check.update(psnr_hole=scores.psnr_hole, ssim_hole=scores.ssim_hole)
            checks.append(check)
            fills.append(progress.preview[:, hole_pixels].half())
        if progress.step >= until:
            raise _RecordingDone()

    try:
        inpaint(prior, image, given_hole, model_config, config, seed=seed, callback=record)
    except _RecordingDone:
        pass
    return checks, torch.stack(fills)


def run_seed(facade_seed: int, start: int) -> int:
    return facade_seed + RUN_SEED_STRIDE * (start + 1)


def record_study(config: FillStudyConfig, prior, log: Callable[[str], None] = print) -> list[dict]:
    cases = held_out_cases(config.facades, prior.config.resolution)
    folder = run_folder.claim_runs_folder(Path(config.out), config.checkpoint, config.preset,
                                          config.until, STUDY_FILE, "a fill study")
    runs = []
    for facade, kind, image, hole in cases:
        for start in range(config.seeds):
            seed = run_seed(facade, start)
            path = folder / f"{facade}_{kind}_{start}.json"
            fills_path = path.with_suffix(".pt")
            if not (path.exists() and fills_path.exists()):
                checks, fills = record_run(prior, image, hole, config.preset, seed, config.until)
                buffer = io.BytesIO()
                torch.save(fills, buffer)
                write_atomically(fills_path, buffer.getvalue())
                write_atomically(path, json.dumps({"facade": facade, "hole": kind, "start": start,
                                                   "seed": seed, "checks": checks}))
                log(f"facade {facade} {kind} start {start}: {len(checks)} checks, hole "
                    f"{checks[-1]['psnr_hole']:.2f} dB at step {checks[-1]['step']}")
            run = json.loads(path.read_text())
            run["fills"] = torch.load(fills_path, weights_only=True).float()
            runs.append(run)
    return runs


def returned_check(run: dict, rule) -> int:
    """Index of the check the family rule would return, replayed on the tiles' error."""
    stop_rule = StopRule(rule)
    last = 0
    for index, check in enumerate(run["checks"]):
        last = index
        stop_rule.record(check["step"], check["tiles"])
        if stop_rule.should_stop:
            break
    step = stop_rule.returned_step
    steps = [check["step"] for check in run["checks"]]
    return last if step is None else steps.index(step)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    index = 0
    while index < len(order):  # ties share their mean rank
        end = index
        while end + 1 < len(order) and values[order[end + 1]] == values[order[index]]:
            end += 1
        for position in range(index, end + 1):
            ranks[order[position]] = (index + end) / 2
        index = end + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Rank correlation; None where either side is constant or too short."""
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sx = math.sqrt(sum((v - mx) ** 2 for v in rx))
    sy = math.sqrt(sum((v - my) ** 2 for v in ry))
    if sx == 0 or sy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / (sx * sy)


def _at_step(run: dict, step: int) -> dict:
    return min(run["checks"], key=lambda check: (abs(check["step"] - step), check["step"]))


def candidate_signals(runs: list[dict], returned: list[int]) -> dict[str, list[float | None]]:
    """Per run, each candidate as 'lower is better': the recorded signals early and at the
    returned check, and `agreement` (minus the mean PSNR of this run's fill against the other
    starts' fills of the same image, early and at the returned checks)."""
    signals: dict[str, list[float | None]] = {}
    for name in SIGNALS:
        for step in EARLY_STEPS:
            signals[f"{name} @ {step}"] = [_at_step(run, step).get(name) for run in runs]
        signals[f"{name} @ returned"] = [run["checks"][index].get(name) for run, index in zip(runs, returned)]
    for step in EARLY_STEPS:
        indices = [run["checks"].index(_at_step(run, step)) for run in runs]
        signals[f"agreement @ {step}"] = _disagreement(runs, indices)
    signals["agreement @ returned"] = _disagreement(runs, returned)
    return signals


def _disagreement(runs: list[dict], indices: list[int]) -> list[float | None]:
    """Minus the mean PSNR between each run's fill (at its check `indices[i]`) and the fills of
    the other starts of the same image."""
    values = []
    for run, index in zip(runs, indices):
        fill = run["fills"][index]
        others = [other["fills"][other_index] for other, other_index in zip(runs, indices)
                  if other is not run and (other["facade"], other["hole"]) == (run["facade"], run["hole"])]
        values.append(-statistics.fmean(_psnr(fill, other) for other in others) if others else None)
    return values


def format_report(config: FillStudyConfig, runs: list[dict], rule) -> str:
    returned = [returned_check(run, rule) for run in runs]
    target = [run["checks"][index]["psnr_hole"] for run, index in zip(runs, returned)]
    signals = candidate_signals(runs, returned)
    images = sorted({(run["facade"], run["hole"]) for run in runs})
    lines = [f"# Fill study: `{config.preset}` on {config.checkpoint}", "",
             f"{len(runs)} runs: {config.facades} held-out facades × {len(HOLE_KINDS)} hole kinds × "
             f"{config.seeds} seeds, {config.until} steps recorded each. Hole PSNR at the check the "
             f"family rule returns: mean {statistics.fmean(target):.2f} dB; across the seeds of one "
             f"image it spans {statistics.fmean(_spread(runs, target, images)):.2f} dB on average.", "",
             "Rank correlation of each signal (lower = better) with the returned hole PSNR: "
             "`within` across the seeds of one image (mean ± s.e. over images; what choosing among "
             "starts needs: −1 ranks the seeds perfectly), `pooled` over all runs. `choose`: hole "
             "PSNR of the seed with the best signal minus the mean over the image's seeds "
             "(mean ± s.e. over images); `oracle` the same for the truly best seed.", "",
             "| signal | hole | within | pooled | choose (dB) | oracle (dB) |", "|---|---|---:|---:|---:|---:|"]
    for kind in [*HOLE_KINDS, "all"]:
        chosen_images = [image for image in images if kind in ("all", image[1])]
        for name, values in signals.items():
            within, gains, oracle = [], [], []
            for image in chosen_images:
                members = [i for i, run in enumerate(runs) if (run["facade"], run["hole"]) == image
                           and values[i] is not None]
                if len(members) < 3:
                    continue
                x, y = [values[i] for i in members], [target[i] for i in members]
                if (rho := spearman(x, y)) is not None:
                    within.append(rho)
                mean = statistics.fmean(y)
                gains.append(y[min(range(len(x)), key=x.__getitem__)] - mean)
                oracle.append(max(y) - mean)
            pooled_members = [i for i, run in enumerate(runs) if kind in ("all", run["hole"])
                              and values[i] is not None]
            pooled = spearman([values[i] for i in pooled_members], [target[i] for i in pooled_members])
            if not gains:
                continue
            lines.append(f"| {name} | {kind} | {format_mean_se(within)} | "
                         f"{'–' if pooled is None else f'{pooled:+.2f}'} | {format_mean_se(gains)} | "
                         f"{format_mean_se(oracle)} |")
    lines += ["", "Choosing among K starts by agreement (every K-subset of an image's seeds; the "
              "returned fills), against one start: hole PSNR over all images and subsets.", "",
              "| starts | hole | mean | 10th percentile | worst |", "|---|---|---:|---:|---:|"]
    for kind in [*HOLE_KINDS, "all"]:
        for starts in CHOICE_STARTS:
            chosen = [value for image in images if kind in ("all", image[1])
                      for value in _chosen_by_agreement(runs, returned, target, image, starts)]
            if chosen:
                lines.append(f"| {starts} | {kind} | {statistics.fmean(chosen):.2f} | "
                             f"{_percentile(chosen, 10):.2f} | {min(chosen):.2f} |")
    return "\n".join(lines) + "\n"


def _chosen_by_agreement(runs: list[dict], returned: list[int], target: list[float],
                         image: tuple, starts: int) -> list[float]:
    """Hole PSNR of the fill that agrees best with the others, for every `starts`-subset of the
    image's runs (one start: every run itself)."""
    members = [i for i, run in enumerate(runs) if (run["facade"], run["hole"]) == image]
    chosen = []
    for subset in itertools.combinations(members, starts):
        if starts == 1:
            chosen.append(target[subset[0]])
            continue
        fills = {i: runs[i]["fills"][returned[i]] for i in subset}
        chosen.append(target[max(subset, key=lambda i, fills=fills: _mean_psnr_to_others(fills, i))])
    return chosen


def _mean_psnr_to_others(fills: dict[int, torch.Tensor], member: int) -> float:
    return statistics.fmean(_psnr(fills[member], fill) for other, fill in fills.items() if other != member)


def _psnr(fill: torch.Tensor, other: torch.Tensor) -> float:
    """PSNR of one hole fill against another ([0, 1] values)."""
    return -10 * math.log10(max(float(((fill - other) ** 2).mean()), 1e-12))


def _percentile(values: list[float], percent: float) -> float:
    """Linear interpolation between the nearest ranks, as numpy's default."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _spread(runs: list[dict], target: list[float], images: list[tuple]) -> list[float]:
    spreads = []
    for image in images:
        values = [t for run, t in zip(runs, target) if (run["facade"], run["hole"]) == image]
        spreads.append(max(values) - min(values))
    return spreads


def run_study(config: FillStudyConfig, log: Callable[[str], None] = print) -> Path:
    config.validate()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    prior = load_generator(config.checkpoint).eval()
    rule = auto_stop_rule(prior.config, preset(config.preset, prior.config)[1].auto_stop)
    runs = record_study(config, prior, log)
    report = Path(config.out) / "report.md"
    write_atomically(report, format_report(config, runs, rule))
    return report


# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Records runs of several seeds per held-out facade and hole kind with the "
                          "signals a run can see (held-out tiles, a hole-shaped decoy, the ring "
                          "around the hole, the fit), and reports how each ranks the runs' hole "
                          "PSNR. Rerun to resume.")
    parser.add_argument("--checkpoint", required=True, help="the prior (any supported format)")
    parser.add_argument("--out", required=True, help="output directory (reused to resume)")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="paper", help="default paper")
    parser.add_argument("--facades", type=int, default=4, help="held-out facades (default 4)")
    parser.add_argument("--seeds", type=int, default=6, help="run seeds per facade and hole (default 6)")
    parser.add_argument("--until", type=int, default=800, help="steps recorded per run (default 800)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")


def run_command(args: argparse.Namespace) -> None:
    config = FillStudyConfig(args.checkpoint, args.out, args.preset, args.facades, args.seeds,
                             args.until, args.threads)
    print(f"wrote {run_study(config)}")
