"""Paired comparison of bench runs: `python -m ganprior_core compare`.

Bench directories run on the same images and holes (one per prior, say) are read back, never
written, and each pair of rows is differenced image by image: the mean difference ± its standard
error, how many images each side won, and a verdict (a side wins when the mean difference is more
than two standard errors from zero, otherwise the pair ties). Two runs can only be paired when
their images and hole masks are the same files, byte for byte, and (super-resolution,
colorization) their degradation settings agree; rows with no hole are judged on the whole image.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..files import UserFileError, check_output_file, folder_contains, write_atomically
from . import bench, run_folder
from .paired import mean_and_error

# Methods that never read the prior: their rows mean the same in any run on the same holes (or
# the same degradation: the sr / colorize baselines).
PRIOR_FREE_METHODS = ("dip", *bench.FILL_METHODS, *bench.TASK_BASELINES.values())
# What must agree for two runs' rows to describe the same images and holes (or degradation: the
# sr settings are absent, hence equal, in other tasks' run files).
HOLE_SETTINGS = ("images", "task", "masks", "mask_area", "mask_centred", "seed", "scale",
                 "downsampler", "gray")
METRICS = (("hole PSNR (dB)", "psnr_hole", 1.0, 2), ("hole SSIM ×10⁻²", "ssim_hole", 100.0, 2),
           ("PSNR (dB)", "psnr", 1.0, 2), ("SSIM ×10⁻²", "ssim", 100.0, 2))
LABEL_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")
VERDICT_STANDARD_ERRORS = 2.0
RUN_FILE_LIMIT = 1 << 20  # run.json is a few hundred bytes; anything larger is not one


@dataclass(frozen=True)
class CompareConfig:
    runs: tuple[tuple[str, str], ...]  # (label, bench directory)
    # ("label:method", "label:method"): the first minus the second; () = the default pairs
    pairs: tuple[tuple[str, str], ...] = ()
    out: str | None = None  # the report (Markdown); None = printed only


@dataclass(frozen=True)
class BenchRun:
    label: str
    directory: Path
    settings: dict
    rows: dict[tuple[str, str], dict]  # (image, method) -> row, as bench.read_rows gives it

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(method for _, method in self.rows))


def parse_run_argument(text: str) -> tuple[str, str]:
    label, separator, directory = text.partition("=")
    if not separator or not directory:
        raise ValueError(f"--run takes LABEL=DIRECTORY (e.g. pggan=runs/pggan_box), got {text!r}")
    return label, directory


def parse_pair_argument(text: str) -> tuple[str, str]:
    first, separator, second = text.partition(",")
    if not separator or not first.strip() or not second.strip():
        raise ValueError(f"--pair takes LABEL:METHOD,LABEL:METHOD (e.g. sg2:paper,pggan:paper), got {text!r}")
    return first.strip(), second.strip()


def load_run(label: str, directory: str | Path) -> BenchRun:
    if not LABEL_PATTERN.fullmatch(label):
        raise ValueError(f"run label {label!r} must be 1-40 letters, digits, '-' or '_'")
    folder = Path(directory)
    run_file, results = folder / bench.RUN_FILE, folder / bench.RESULTS_FILE
    for path in (run_file, results):
        if not path.is_file():
            raise UserFileError(folder, f"not a bench directory: {path.name} is missing (give "
                                        f"the --out folder of `python -m ganprior_core bench`)")
    if run_file.stat().st_size > RUN_FILE_LIMIT:
        raise UserFileError(run_file, f"{run_file.stat().st_size} bytes, too large for a bench run file")
    try:
        settings = json.loads(run_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserFileError(run_file, f"cannot be read as JSON ({error})") from None
    if not isinstance(settings, dict):
        raise UserFileError(run_file, f"holds {type(settings).__name__}, not a bench run's settings")
    return BenchRun(label, folder, settings, bench.read_rows(results, repair=False))


def _digest(run: BenchRun, folder: str, image: str) -> str | None:
    path = run.directory / folder / f"{image}.png"
    return run_folder.file_digest(path) if path.is_file() else None


def check_same_holes(runs: list[BenchRun]) -> None:
    """Refuse runs whose rows are not on the same images and holes."""
    first = runs[0]
    for run in runs[1:]:
        differing = [key for key in HOLE_SETTINGS if run.settings.get(key) != first.settings.get(key)]
        if differing:
            raise ValueError(f"runs {first.label!r} and {run.label!r} were not made on the same images "
                             f"and holes (run.json differs in: {', '.join(differing)}); only runs "
                             f"with the same image source, task, masks and seed can be paired")
    images = sorted({image for run in runs for image, _ in run.rows})
    for image in images:
        holding = [run for run in runs if any(name == image for name, _ in run.rows)]
        for folder in ("images", "masks"):
            digests = {run.label: _digest(run, folder, image) for run in holding}
            if folder == "masks" and set(digests.values()) == {None}:
                continue  # a degradation task (same settings, checked above): no hole anywhere
            if None in digests.values() or len(set(digests.values())) > 1:
                missing = [label for label, digest in digests.items() if digest is None]
                reason = (f"missing in {', '.join(missing)}" if missing
                          else f"different files in {', '.join(digests)}")
                raise ValueError(f"{folder}/{image}.png is {reason}: the runs' rows are not "
                                 f"on the same {'pixels' if folder == 'images' else 'holes'}")


def _side(text: str, runs: dict[str, BenchRun]) -> tuple[str, str]:
    label, separator, method = text.partition(":")
    if not separator or label not in runs:
        raise ValueError(f"{text!r} must be LABEL:METHOD with LABEL one of {', '.join(runs)}")
    if method not in runs[label].methods:
        raise ValueError(f"run {label!r} has no rows of method {method!r}; it has "
                         f"{', '.join(runs[label].methods) or 'no rows'}")
    return label, method


def default_pairs(runs: list[BenchRun]) -> list[tuple[str, str]]:
    """Every run's `paper` against its other methods and against the prior-free methods of any
    run (each once), then the runs' `paper` rows against each other."""
    prior_free: dict[str, str] = {}
    for run in runs:
        for method in run.methods:
            if method in PRIOR_FREE_METHODS:
                prior_free.setdefault(method, run.label)
    papers = [run.label for run in runs if "paper" in run.methods]
    pairs = [(f"{a}:paper", f"{b}:paper") for i, a in enumerate(papers) for b in papers[i + 1:]]
    for run in runs:
        if "paper" not in run.methods:
            continue
        others = [f"{run.label}:{m}" for m in run.methods if m != "paper" and m not in PRIOR_FREE_METHODS]
        others += [f"{label}:{method}" for method, label in prior_free.items()]
        pairs += [(f"{run.label}:paper", other) for other in others]
    return pairs


def verdict(mean: float, error: float | None, first: str, second: str) -> str:
    if error is None or not math.isfinite(mean):
        return "too few images"
    if mean > VERDICT_STANDARD_ERRORS * error:
        return f"{first} wins"
    if mean < -VERDICT_STANDARD_ERRORS * error:
        return f"{second} wins"
    return "tie"


def _what_is_restored(settings: dict) -> str:
    """The holes, or the degradation of a sr / colorize run, in words."""
    if settings.get("task") == "sr":
        gray = ", gray" if settings.get("gray") else ""
        return f"task `sr` ×{settings.get('scale')} `{settings.get('downsampler')}`{gray}"
    if settings.get("task") == "colorize":
        return "task `colorize`"
    return f"masks `{settings.get('masks')}`"


def compare(runs: list[BenchRun], pairs: list[tuple[str, str]]) -> str:
    by_label = {run.label: run for run in runs}
    if len(by_label) != len(runs):
        raise ValueError("every --run needs its own label")
    check_same_holes(runs)
    pairs = pairs or default_pairs(runs)
    if not pairs:
        raise ValueError("nothing to pair: no run has `paper` rows; name pairs with --pair")
    lines = ["# Paired comparison of bench runs", "",
             *[f"- `{run.label}`: `{run.directory}` (prior sha256 "
               f"{str(run.settings.get('checkpoint_sha256', '?'))[:16]}…, "
               f"{_what_is_restored(run.settings)})" for run in runs], "",
             "Each line: the first row minus the second on every image both have (mean ± s.e.); "
             "wins / losses count images by hole PSNR; the verdict, for hole PSNR / hole SSIM, "
             f"needs the mean difference beyond {VERDICT_STANDARD_ERRORS:g} s.e. Rows with no "
             "hole (super-resolution, colorization) are counted and judged on whole-image "
             "PSNR / SSIM instead.", "",
             "| first − second | images | " + " | ".join(title for title, *_ in METRICS)
             + " | wins / losses | verdict |",
             "|---|---:|" + "---:|" * len(METRICS) + "---:|---|"]
    for first_text, second_text in pairs:
        first, second = _side(first_text, by_label), _side(second_text, by_label)
        rows_a, rows_b = by_label[first[0]].rows, by_label[second[0]].rows
        images = [image for image, method in rows_a if method == first[1] and (image, second[1]) in rows_b]
        name = f"`{first_text}` − `{second_text}`"
        if not images:
            lines.append(f"| {name} | 0 | " + " | " * len(METRICS) + " | no shared images |")
            continue
        cells, hole, whole, exact = [], {}, {}, set()
        for _, key, scale, digits in METRICS:
            values = []
            for image in images:
                a, b = rows_a[(image, first[1])][key], rows_b[(image, second[1])][key]
                if a is None or b is None:
                    continue
                if not (math.isfinite(a) and math.isfinite(b)):  # an exact fill: PSNR inf
                    exact.add(image)
                    continue
                values.append((a - b) * scale)
            if not values:
                cells.append("–")
                continue
            mean, error = mean_and_error(values)
            cells.append(f"{mean:+.{digits}f}" + (f" ± {error:.{digits}f}" if error is not None else ""))
            if key in ("psnr_hole", "ssim_hole"):
                hole[key] = (values, mean, error)
            else:
                whole[key] = (values, mean, error)
        if "psnr_hole" not in hole:
            # A degradation task (sr, colorize) has no hole: judged on the whole image.
            hole = whole
        if "psnr_hole" not in hole and "psnr" not in hole:
            tally, judged = "–", "no scores"
        else:
            values = next(iter(hole.values()))[0]
            tally = f"{sum(v > 0 for v in values)} / {sum(v < 0 for v in values)}"
            judged = " / ".join(verdict(mean, error, first_text, second_text)
                                for _, mean, error in hole.values())
        counted = f"{len(images)}" + (f" ({len(exact)} exact, left out)" if exact else "")
        lines.append(f"| {name} | {counted} | " + " | ".join(cells) + f" | {tally} | {judged} |")
    lines += ["", "Means of each row over its own images:", "",
              "| row | images | hole PSNR (dB) | hole SSIM | PSNR (dB) | SSIM | steps | s / image |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        for method in run.methods:
            mine = [row for (_, m), row in run.rows.items() if m == method]
            cell = {key: bench.mean_std([row[key] for row in mine if row[key] is not None])[0]
                    for key in ("psnr_hole", "ssim_hole", "psnr", "ssim", "steps", "seconds")}
            shown = [f"{cell[key]:.{digits}f}" if cell[key] is not None and math.isfinite(cell[key]) else "–"
                     for key, digits in (("psnr_hole", 2), ("ssim_hole", 4), ("psnr", 2), ("ssim", 4),
                                         ("steps", 0), ("seconds", 1))]
            lines.append(f"| `{run.label}:{method}` | {len(mine)} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def run_compare(config: CompareConfig) -> str:
    if not config.runs:
        raise ValueError("give at least one bench directory with --run LABEL=DIRECTORY")
    if config.out is not None:
        check_output_file(config.out, (".md",), "--out")
    runs = [load_run(label, directory) for label, directory in config.runs]
    if config.out is not None:
        out = Path(config.out).resolve()
        for run in runs:
            if folder_contains(run.directory, out):
                raise ValueError(f"--out {config.out} lies in the bench directory {run.directory}; "
                                 "write the comparison elsewhere (compare never writes into a run)")
    report = compare(runs, list(config.pairs))
    if config.out is not None:
        write_atomically(config.out, report)
    return report


# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Reads bench output directories (never writes into them) and differences "
                          "pairs of rows image by image: mean ± s.e. of hole PSNR / SSIM and "
                          "whole-image PSNR / SSIM, wins and losses, and a verdict (win beyond 2 "
                          "s.e., else tie). Without --pair: each run's paper against its other "
                          "methods and the prior-free ones (dip, fills), and the runs' paper rows "
                          "against each other.")
    parser.add_argument("--run", dest="runs", action="append", required=True,
                        metavar="LABEL=DIRECTORY",
                        help="a bench --out directory and the label its rows get (repeat)")
    parser.add_argument("--pair", dest="pairs", action="append",
                        metavar="LABEL:METHOD,LABEL:METHOD",
                        help="the first row minus the second (repeat; default: see above)")
    parser.add_argument("--out", help="also write the report to this .md file")


def run_command(args: argparse.Namespace) -> None:
    runs = tuple(parse_run_argument(text) for text in args.runs)
    pairs = tuple(parse_pair_argument(text) for text in args.pairs or ())
    print(run_compare(CompareConfig(runs, pairs, args.out)), end="")
    if args.out:
        print(f"wrote {args.out}")
