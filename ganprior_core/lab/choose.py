"""Choosing the method's settings on held-out facades, as `python -m ganprior_core choose ...`.

Every variant (a preset with some of its settings changed) fills the same held-out facades, each
once with a seeded box and once with seeded strokes, MSE only and auto-stopped unless the variant
says otherwise; the report pairs every variant's hole PSNR and SSIM with the reference variant's
on the same facade and hole (mean ± standard error of the differences), so a setting is judged by
what it changes, not by how hard the facades happen to be.

The held-out facades are lab.held_out's: never trained on and disjoint from the 50 evaluation
facades the benchmark reports. A variants file is JSON:

    {"reference": "chosen",
     "variants": {"chosen": {},
                  "codes in w": {"stylegan2": {"latent_space": "w"}},
                  "k = 3": {"split_layer": 3},
                  "generator lr 3e-4": {"optimizer": {"lr_generator": 3e-4}},
                  "mganprior": {"preset": "mganprior"}}}

Keys of a variant: "preset" (default "paper"), any MultiLatentConfig field, "stylegan2" (fields
of StyleGAN2Options) and "optimizer" (OptimizerConfig fields). Rows go to
`<out>/rows/` as each run ends, one CSV file per variant; rerunning resumes, and `--only` lets
processes share the variants of one directory (each writes only its own variants' files).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import torch

from .. import inpaint, metrics
from ..checkpoints import load_generator
from ..cli import names
from ..families import StyleGAN2Options
from ..files import write_atomically
from ..method.config import OptimizerConfig
from ..method.multi_latent import MultiLatentConfig
from ..method.presets import PRESET_NAMES, preset
from ..validation import check_count
from . import run_folder
from .held_out import held_out_cases, held_out_seeds
from .paired import format_mean_se

MAX_FACADES = 10_000  # two runs each: more than anyone waits for
COLUMNS = ("variant", "facade_seed", "hole", "psnr_hole", "ssim_hole", "steps", "seconds")


@dataclass(frozen=True)
class ChoiceConfig:
    checkpoint: str
    variants_file: str
    out: str
    facades: int = 12
    only: tuple[str, ...] = ()  # run only these variants (all: the empty tuple)
    threads: int | None = None


@dataclass(frozen=True)
class Variant:
    name: str
    model: MultiLatentConfig
    optimizer: OptimizerConfig


def read_variants(path: str | Path, generator_config) -> tuple[str, list[Variant]]:
    """(reference name, variants in file order), each validated against the prior."""
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read the variants file {path}: {error}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("variants"), dict) or not spec["variants"]:
        raise ValueError(f"{path}: expected {{\"reference\": NAME, \"variants\": {{NAME: {{...}}}}}}")
    variants = [_variant(name, changes, generator_config) for name, changes in spec["variants"].items()]
    reference = spec.get("reference", variants[0].name)
    if reference not in spec["variants"]:
        raise ValueError(f"{path}: the reference {reference!r} is not among the variants")
    return reference, variants


def _variant(name: str, changes, generator_config) -> Variant:
    if not name.strip() or any(mark in name for mark in ",|\n"):
        raise ValueError(f"variant name {name!r}: give a name without commas, '|' or line breaks "
                         "(--only lists names with commas; the report is a Markdown table)")
    if not isinstance(changes, dict):
        raise ValueError(f"variant {name!r}: expected an object of settings, got {changes!r}")
    changes = dict(changes)
    base = changes.pop("preset", "paper")
    if base not in PRESET_NAMES:
        raise ValueError(f"variant {name!r}: unknown preset {base!r}; choose one of {', '.join(PRESET_NAMES)}")
    model, optimizer = preset(base, generator_config)
    optimizer = replace(optimizer, perceptual_weight=0.0,
                        **_checked(name, "optimizer", changes.pop("optimizer", {}), OptimizerConfig))
    stylegan2 = replace(model.stylegan2,
                        **_checked(name, "stylegan2", changes.pop("stylegan2", {}), StyleGAN2Options))
    model = replace(model, stylegan2=stylegan2, **_checked(name, "model", changes, MultiLatentConfig))
    try:
        model.validate(generator_config)
        optimizer.validate()
    except ValueError as error:
        raise ValueError(f"variant {name!r}: {error}") from None
    return Variant(name, model, optimizer)


def _checked(variant: str, part: str, changes, config_class) -> dict:
    if not isinstance(changes, dict):
        raise ValueError(f"variant {variant!r}: {part} must be an object, got {changes!r}")
    known = {f.name for f in fields(config_class)} - {"stylegan2", "auto_stop"}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"variant {variant!r}: unknown {part} setting(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    return changes


def run_choice(config: ChoiceConfig, log: Callable[[str], None] = print) -> Path:
    """Run every missing (variant, facade, hole) and write report.md; returns the report's path."""
    check_count(config.facades, "facades", 1, MAX_FACADES)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    prior = load_generator(config.checkpoint).eval()
    reference, variants = read_variants(config.variants_file, prior.config)
    unknown = sorted(set(config.only) - {v.name for v in variants})
    if unknown:
        raise ValueError(f"--only names variant(s) not in {config.variants_file}: {', '.join(unknown)}")
    cases = held_out_cases(config.facades, prior.config.resolution)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    done = {(row["variant"], int(row["facade_seed"]), row["hole"]) for row in read_rows(out)}
    todo = [v for v in variants if not config.only or v.name in config.only]
    for variant in todo:
        for seed, kind, image, hole in cases:
            if (variant.name, seed, kind) in done:
                continue
            result = inpaint(prior, image, hole, variant.model, variant.optimizer, seed=seed)
            scores = metrics.measure(result.composite, image, hole)
            row = {"variant": variant.name, "facade_seed": seed, "hole": kind,
                   "psnr_hole": f"{scores.psnr_hole:.4f}", "ssim_hole": f"{scores.ssim_hole:.5f}",
                   "steps": result.steps_run, "seconds": f"{result.seconds:.2f}"}
            run_folder.append_row(_variant_rows_path(out, variant.name), COLUMNS, row)
            log(f"{variant.name} | facade {seed} {kind}: hole PSNR {scores.psnr_hole:.2f} dB, "
                f"{result.steps_run} steps, {result.seconds:.1f} s")
    report = out / "report.md"
    write_atomically(report, format_report(reference, variants, read_rows(out), config))
    return report


def _variant_rows_path(out: Path, name: str) -> Path:
    """One file per variant: processes that split the variants (--only) never write the same file."""
    return out / "rows" / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.csv"


def read_rows(out: Path) -> list[dict]:
    """Every finished run in the output directory `out`."""
    return [row for path in sorted((Path(out) / "rows").glob("*.csv"))
            for row in run_folder.read_rows(path, COLUMNS)]


def format_report(reference: str, variants: list[Variant], rows: list[dict],
                  config: ChoiceConfig) -> str:
    """One line per variant: its hole scores paired with the reference's on the same runs."""
    seeds = set(held_out_seeds(config.facades))
    # Rows of facades beyond --facades (an earlier, larger run in the same directory) stay out.
    by_key = {(r["variant"], int(r["facade_seed"]), r["hole"]): r for r in rows
              if int(r["facade_seed"]) in seeds}
    lines = [f"# Held-out choice on {config.checkpoint}", "",
             f"{config.facades} facades (seeds from {held_out_seeds(1)[0]:,}), "
             f"each with a seeded box and seeded strokes; MSE only. Differences are the variant's "
             f"hole score minus `{reference}`'s on the same facade and hole (mean ± s.e.); "
             f"`{reference}`'s own row gives its mean scores.", "",
             "| variant | runs | hole PSNR | box | strokes | hole SSIM | steps | s / run |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for variant in variants:
        mine = [(key, row) for key, row in by_key.items() if key[0] == variant.name]
        if not mine:
            lines.append(f"| {variant.name} | 0 | | | | | | |")
            continue
        paired = [(key, row, by_key[(reference, *key[1:])]) for key, row in mine
                  if (reference, *key[1:]) in by_key]

        def differences(metric: str, hole: str | None = None, paired=paired) -> list[float]:
            return [float(row[metric]) - float(theirs[metric]) for key, row, theirs in paired
                    if hole is None or key[2] == hole]

        psnr = (f"{statistics.fmean(float(r['psnr_hole']) for _, r in mine):.2f} dB"
                if variant.name == reference else format_mean_se(differences("psnr_hole")))
        ssim = (f"{statistics.fmean(float(r['ssim_hole']) for _, r in mine):.4f}"
                if variant.name == reference else format_mean_se([d * 100 for d in differences("ssim_hole")])
                + " ×10⁻²")
        box, strokes = ("–", "–") if variant.name == reference else (
            format_mean_se(differences("psnr_hole", "box")), format_mean_se(differences("psnr_hole", "strokes")))
        steps = statistics.fmean(int(r["steps"]) for _, r in mine)
        seconds = statistics.fmean(float(r["seconds"]) for _, r in mine)
        lines.append(f"| {variant.name} | {len(mine)} | {psnr} | {box} | {strokes} | {ssim} | "
                     f"{steps:.0f} | {seconds:.1f} |")
    return "\n".join(lines) + "\n"



# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Runs every variant of a JSON variants file on held-out procedural "
                          "facades (never the benchmark's evaluation facades), each with a seeded "
                          "box and seeded strokes, and reports hole PSNR / SSIM paired against the "
                          "reference variant. The file's format: ganprior_core/lab/choose.py. "
                          "Rerun to resume.")
    parser.add_argument("--checkpoint", required=True, help="the prior (any supported format)")
    parser.add_argument("--variants", required=True, help="the variants file (JSON)")
    parser.add_argument("--facades", type=int, default=12,
                        help="held-out facades, each run with both hole kinds (default 12)")
    parser.add_argument("--only", help="comma-separated variants to run now (default all)")
    parser.add_argument("--threads", type=int, help="CPU threads (default torch's)")
    parser.add_argument("--out", required=True, help="output directory (reused to resume)")


def run_command(args: argparse.Namespace) -> None:
    only = names(args.only) if args.only else ()
    report = run_choice(ChoiceConfig(args.checkpoint, args.variants, args.out, args.facades, only,
                                     args.threads))
    print(report.read_text(), end="")
    print(f"wrote {report}")
