"""The main job out of the box: inpaint a bundled facade with a bundled prior (PGGAN or StyleGAN2)
and show it, as `python -m ganprior_core demo`."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from .. import PRESET_NAMES, Progress, imaging, inpaint, preset
from ..checkpoints import load_generator
from ..cli import add_device_option, print_progress
from ..files import write_atomically
from ..method.auto_stop import STOP_MODES
from ..metrics import MetricReport, measure
from ..priors import BUNDLED_PRIORS, bundled_prior_path
from . import masks, procedural
from .baselines import diffusion_fill

FAMILY_NAMES = {"pggan": "PGGAN", "stylegan2": "StyleGAN2"}
DEMO_HOLE_FRACTION = 0.14  # a centred 24x24 box at 64x64: over the facade and its window grid


@dataclass(frozen=True)
class DemoConfig:
    out_dir: Path
    steps: int | None = None  # None: the preset's (the most steps with auto-stop)
    stop: str = "auto"
    seed: int = 0
    image_seed: int = procedural.EVALUATION_SEED_START  # an evaluation facade: never trained on
    preset: str = "paper"
    device: str = "cpu"
    prior: str = "pggan"  # which bundled prior: "pggan" or "stylegan2" (priors.BUNDLED_PRIORS)


@dataclass
class DemoOutcome:
    result: MetricReport
    diffusion: MetricReport
    seconds: float
    files: list[Path]
    stop: str  # steps run and why the run ended


def demo_problem(image_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ground-truth facade [3, 64, 64] and the demo's hole mask [64, 64]."""
    truth = procedural.facade_image(image_seed)
    return truth, masks.make_mask("box", truth.shape[1:], seed=0, area_fraction=DEMO_HOLE_FRACTION,
                                  centred=True)


def run_demo(config: DemoConfig, callback: Callable[[Progress], None] | None = None) -> DemoOutcome:
    prior = load_generator(bundled_prior_path(config.prior))
    truth, hole = demo_problem(config.image_seed)
    model_config, optimizer_config = preset(config.preset, prior.config)
    optimizer_config = replace(optimizer_config, stop=config.stop,
                               **({"steps": config.steps} if config.steps is not None else {}))
    damaged = truth * (1 - hole) + 0.5 * hole  # the hole shown as flat grey; never read by the fit
    result = inpaint(prior, damaged, hole, model_config, optimizer_config, config.seed,
                     config.device, callback=callback)
    naive = diffusion_fill(damaged, hole)

    out = Path(config.out_dir)
    files = [out / name for name in ("input.png", "mask.png", "result.png", "truth.png",
                                     "side_by_side.png", "metrics.txt")]
    panels = [damaged, hole[None].expand(3, -1, -1), naive, result.output, result.composite, truth]
    enlarged = [torch.nn.functional.interpolate(panel[None], scale_factor=3, mode="nearest")[0]
                for panel in panels]  # 64x64 is too small to judge by eye
    figure = imaging.side_by_side(
        enlarged, ["input", "mask", "diffusion fill", "generator", "result", "truth"])
    result_scores, naive_scores = measure(result.composite, truth, hole), measure(naive, truth, hole)
    metrics_text = (
        f"bundled {FAMILY_NAMES[config.prior]} prior, preset {config.preset}, "
        f"{result.describe_stop()}, seed {config.seed}, facade seed {config.image_seed}, "
        f"{result.seconds:.1f} s\n"
        f"GAN prior      {result_scores.one_line()}\n"
        f"diffusion fill {naive_scores.one_line()}\n")
    writes = [lambda: imaging.save_image(damaged, files[0]),
              lambda: imaging.save_mask(hole, files[1]),
              lambda: imaging.save_image(result.composite, files[2]),
              lambda: imaging.save_image(truth, files[3]),
              lambda: imaging.save_image(figure, files[4]),
              lambda: write_atomically(files[5], metrics_text)]
    _write_all(out, files, writes)
    return DemoOutcome(result_scores, naive_scores, result.seconds, files, result.describe_stop())


def _write_all(out: Path, files: list[Path], writes: list[Callable[[], None]]) -> None:
    """Every file or none of the new ones: a failure (a full disk, Ctrl-C) removes the files this
    run added and the folder if it made it; files that were there before stay as they were or
    are replaced whole."""
    missing = [folder for folder in [out, *out.parents] if not folder.exists()]
    existed = [path.exists() for path in files]
    try:
        for write in writes:
            write()
    except BaseException:
        for path, was_there in zip(files, existed):
            if not was_there:
                path.unlink(missing_ok=True)
        for folder in missing:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break
        raise


# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("The main job with nothing to download: fills a box over a facade the "
                          "prior never saw and writes input, mask, result, truth, a side-by-side "
                          "figure and metrics.")
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--stop", choices=STOP_MODES, default="auto",
                        help="auto: stop once the fill stops improving; fixed: exactly --steps "
                             "(default auto)")
    parser.add_argument("--steps", type=int, help="most (auto) or exact (fixed) steps (default: "
                                                  "the preset's, 3000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting codes (default 0)")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="paper",
                        help="paper, mganprior or single-z (default paper)")
    parser.add_argument("--prior", choices=tuple(BUNDLED_PRIORS), default="pggan",
                        help="the bundled prior: the PGGAN or the StyleGAN2 facade prior "
                             "(default pggan)")
    parser.add_argument("--log-every", type=int, default=100,
                        help="print the loss every this many steps (default 100)")
    add_device_option(parser)


def run_command(args: argparse.Namespace) -> None:
    config = DemoConfig(out_dir=Path(args.out), seed=args.seed, preset=args.preset,
                        device=args.device, stop=args.stop, steps=args.steps, prior=args.prior)
    limit = "the preset's steps" if config.steps is None else f"{config.steps} steps"
    print(f"inpainting a bundled facade with the bundled {FAMILY_NAMES[config.prior]} prior "
          f"(preset {config.preset}, "
          f"{'auto-stop, at most ' + limit if config.stop == 'auto' else limit})", flush=True)
    outcome = run_demo(config, print_progress(args.log_every))
    print(f"GAN prior      {outcome.result.one_line()} ({outcome.stop})")
    print(f"diffusion fill {outcome.diffusion.one_line()}")
    print(f"wrote {', '.join(str(path) for path in outcome.files)} ({outcome.seconds:.1f} s)")
