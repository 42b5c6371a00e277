"""Command line: `python -m ganprior_core <command> ...` (see `--help` of each command)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import imaging, metrics
from .checkpoints import CheckpointError, convert_checkpoint, load_generator
from .files import (
    check_output_file,
    check_output_folder,
    refuse_output_over_input,
    require_regular_file,
    write_atomically,
)
from .lab import choose, compare, procedural, stop_study, swd
from .method.auto_stop import STOP_MODES
from .method.compilation import parse_setting
from .method.families import (
    G2_STYLE_SOURCES,
    LATENT_SPACES,
    NOISE_HANDLING,
    StyleGAN2Options,
    z_dim_of,
)
from .method.perceptual import PerceptualModelError, load_vgg16_features
from .optimize import PRECISIONS, PRESET_NAMES, SCHEDULES, OptimizerConfig, Progress, inpaint_any_size, preset
from .priors import BUNDLED_PRIORS
from .sampling import GENERATE_NOISE_MODES, generate, image_grid, sample_latents
from .validation import check_count, check_seed, resolve_device


class CommandError(Exception):
    """A user mistake the CLI reports as one line, without a traceback."""


def _generate_command(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.suffix.lower() == ".npy" and args.latents is None:
        raise CommandError("--out .npy holds raw outputs of given --latents; "
                           "for --seed/--count samples write an image (.png)")
    suffixes = (".npy", *imaging.IMAGE_SUFFIXES) if args.latents is not None else imaging.IMAGE_SUFFIXES
    check_output_file(out, suffixes, "--out")
    check_count(args.columns, "--columns", 1)
    require_regular_file(args.checkpoint, "checkpoint")
    refuse_output_over_input({"--out": out}, {"checkpoint": args.checkpoint, "--latents": args.latents})
    generator = load_generator(args.checkpoint)  # a PGGAN or a StyleGAN2 generator
    options = {"truncation_psi": args.truncation, "noise_mode": args.noise}
    if args.latents is not None:
        latents = _read_latents(args.latents)
        if out.suffix.lower() != ".npy":
            _check_grid_fits(out, len(latents), args.columns, generator.config.resolution)
        images = generate(generator, latents, args.device, **options)
        if out.suffix.lower() == ".npy":
            write_atomically(out, lambda file: np.save(file, images.numpy()))
        else:
            imaging.save_image(image_grid(imaging.to_unit_range(images), args.columns), out)
    else:
        check_count(args.count, "--count", 1)
        _check_grid_fits(out, args.count, args.columns, generator.config.resolution)
        # z ~ N(0, 1) from --seed, as sample_images draws them (the same images at psi 1, const)
        latents = sample_latents(args.count, z_dim_of(generator), args.seed)
        images = imaging.to_unit_range(generate(generator, latents, args.device, **options))
        imaging.save_image(image_grid(images, args.columns), out)
    print(f"wrote {out} ({len(images)} image(s), {generator.config.resolution}x"
          f"{generator.config.resolution})")


def _check_grid_fits(out: Path, count: int, columns: int, resolution: int) -> None:
    """The grid's size is known before sampling: refuse one its format cannot hold (JPEG 65535,
    WebP 16383 pixels a side) or more pixels than an image may have, before any work."""
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    gap = 2  # image_grid's
    size = (rows * (resolution + gap) - gap, columns * (resolution + gap) - gap)
    imaging.check_output_image_path(out, "--out", size=size)


def _read_latents(path: str) -> torch.Tensor:
    """A .npy array of latent codes, read without unpickling (an object array could run code)."""
    require_regular_file(path, "latents file")
    try:
        latents = np.load(path, allow_pickle=False)
    except ValueError as error:  # numpy's refusal of object arrays, and of malformed headers
        raise CommandError(f"{path}: not a numeric .npy array of latent codes ({error})") from None
    except (OSError, EOFError) as error:
        raise CommandError(f"{path}: not a readable .npy file ({error})") from None
    if not isinstance(latents, np.ndarray) or latents.dtype.kind != "f":
        kind = latents.dtype if isinstance(latents, np.ndarray) else type(latents).__name__
        raise CommandError(f"{path}: latents must be a floating-point array of codes ([N, "
                           f"latent_dim]; StyleGAN2 also [N, num_ws, w_dim]), got {kind}")
    return torch.from_numpy(latents.astype(np.float32))


def _print_progress(every: int):
    def report(progress: Progress) -> None:
        if progress.stopped_early:
            return  # the command's own summary line says where and why it stopped
        if progress.loss is not None and (progress.step % every == 0 or progress.step == progress.total):
            print(f"step {progress.step}/{progress.total}  loss {progress.loss:.5f}", flush=True)
    return report


def _check_inpaint_files(args: argparse.Namespace) -> None:
    """Inputs must be regular files (checked before the slow loads, so a typo in --mask does not
    wait for the checkpoint); outputs must be writable and must not overwrite each other or a
    file the user gave."""
    for option, path in (("checkpoint", args.checkpoint), ("image", args.image),
                         ("mask", args.mask), ("VGG16 weights", args.vgg)):
        if path is not None:
            require_regular_file(path, option)
    outputs = {"--out": args.out, "--raw-out": args.raw_out}
    inputs = {"--image": args.image, "--mask": args.mask, "--checkpoint": args.checkpoint,
              "--vgg": args.vgg}
    for option, path in outputs.items():
        if path is not None:
            imaging.check_output_image_path(path, option)
    # Same path, a hard link or a symbolic link: compared by device and inode too.
    refuse_output_over_input(outputs, inputs)


def _inpaint_command(args: argparse.Namespace) -> None:
    _check_inpaint_files(args)
    generator = load_generator(args.checkpoint)
    image = imaging.load_image(args.image)
    for option in ("out", "raw_out"):  # the result has the input's size: fits the format?
        if getattr(args, option) is not None:
            imaging.check_output_image_path(getattr(args, option), "--" + option.replace("_", "-"),
                                            size=tuple(image.shape[1:]))
    hole = imaging.load_mask(args.mask) if args.mask else torch.zeros(image.shape[1:])
    model_config, optimizer_config = preset(args.preset, generator.config)
    # Every OptimizerConfig field the command has an option for, where the option was given.
    overrides = {name: value for name, value in given_fields(OptimizerConfig, args).items()
                 if value is not None}
    overrides["freeze_g1_at"] = args.freeze_g1_at  # None is a value here: never freeze
    if args.compile is not None:
        overrides["compile"] = parse_setting(args.compile)
    optimizer_config = replace(optimizer_config, preview_every=args.log_every, **overrides)
    if args.codes is not None or args.split is not None:
        model_config = replace(model_config,
                               num_codes=args.codes if args.codes is not None else model_config.num_codes,
                               split_layer=args.split if args.split is not None else model_config.split_layer)
    stylegan2 = {name: value for name, value in given_fields(StyleGAN2Options, args).items()
                 if value is not None}
    if stylegan2:
        model_config = replace(model_config, stylegan2=replace(model_config.stylegan2, **stylegan2))
        model_config.validate(generator.config)
    perceptual = load_vgg16_features(args.vgg) if args.vgg else None

    result = inpaint_any_size(generator, image, hole, model_config, optimizer_config, args.seed,
                              args.fit, args.device, perceptual, _print_progress(args.log_every))
    for note in result.notes:
        print(f"note: {note}")
    imaging.save_image(result.composite, args.out)
    fit = (f"{result.describe_stop()}, final loss {result.loss_history[-1]:.5f}"
           if result.loss_history else "no steps: nothing was known")
    print(f"wrote {args.out} ({result.seconds:.1f} s, preset {args.preset}, {fit})")
    if args.raw_out:
        imaging.save_image(result.output, args.raw_out)
        print(f"wrote {args.raw_out} (the generator's whole image, not composited)")


def _metrics_command(args: argparse.Namespace) -> None:
    image, reference = imaging.load_image(args.image), imaging.load_image(args.reference)
    if image.shape != reference.shape:
        raise CommandError(f"images differ in size: {args.image} is {tuple(image.shape[1:])}, "
                           f"{args.reference} is {tuple(reference.shape[1:])}")
    hole = imaging.resize_mask(imaging.load_mask(args.mask), image.shape[1:]) if args.mask else None
    print(metrics.measure(image, reference, hole).multi_line())


def _convert_command(args: argparse.Namespace) -> None:
    require_regular_file(args.source, "checkpoint")
    destination = check_output_file(args.destination, (".safetensors",), "destination")
    refuse_output_over_input({"destination": destination}, {"source": args.source})
    convert_checkpoint(args.source, destination)  # written atomically: a failure leaves nothing
    print(f"wrote {destination}")


def _swd_command(args: argparse.Namespace) -> None:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.count < 2:
        raise CommandError(f"--procedural needs at least 2 images, got {args.count}")
    real = procedural.facade_batch(procedural.evaluation_seeds(args.count))
    if args.floor:
        label = f"{args.count} real vs {args.count} other real (the floor)"
        other = procedural.facade_batch(procedural.evaluation_seeds(args.count, offset=args.count))
        distances = swd.swd_per_scale(real, other, args.seed)
    else:
        if not args.checkpoint:
            raise CommandError("give --checkpoint (or --floor for the real-vs-real floor)")
        generator = load_generator(args.checkpoint).eval()
        if generator.config.resolution != procedural.IMAGE_SIZE:
            raise CommandError(f"the procedural facades are {procedural.IMAGE_SIZE}x"
                               f"{procedural.IMAGE_SIZE}; {args.checkpoint} generates "
                               f"{generator.config.resolution}x{generator.config.resolution}")
        label = f"{args.count} samples of {args.checkpoint} (latent seed {args.seed}) vs real"
        distances = swd.generator_swd(generator, real, args.seed)
    print(f"SWD x1e3, {label}:")
    for resolution, distance in distances.items():
        print(f"  {resolution:4d} px  {distance:7.2f}")
    print(f"  mean     {sum(distances.values()) / len(distances):7.2f}")


def _demo_command(args: argparse.Namespace) -> None:
    from .lab.demo import FAMILY_NAMES, DemoConfig, run_demo
    config = DemoConfig(out_dir=Path(args.out), seed=args.seed, preset=args.preset,
                        device=args.device, stop=args.stop, steps=args.steps, prior=args.prior)
    limit = "the preset's steps" if config.steps is None else f"{config.steps} steps"
    print(f"inpainting a bundled facade with the bundled {FAMILY_NAMES[config.prior]} prior "
          f"(preset {config.preset}, "
          f"{'auto-stop, at most ' + limit if config.stop == 'auto' else limit})", flush=True)
    outcome = run_demo(config, _print_progress(args.log_every))
    print(f"GAN prior      {outcome.result.one_line()} ({outcome.stop})")
    print(f"diffusion fill {outcome.diffusion.one_line()}")
    print(f"wrote {', '.join(str(path) for path in outcome.files)} ({outcome.seconds:.1f} s)")


def _add_bench_command(commands) -> None:
    """`bench`: the paper's comparison table (METHOD.md Tables 1-2, ablations) as one command."""
    from .lab.bench import ABLATIONS, METHODS, TASKS, BenchConfig, run_bench
    from .lab.masks import MASK_KINDS

    def names(text: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in text.split(",") if item.strip())

    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(item) for item in names(text))

    bench = commands.add_parser(
        "bench", help="benchmark methods on many images: report.md, results.csv, summary.json",
        description="Runs every method (and ablation variant) on every image, scores PSNR/SSIM "
                    "of the whole image and the hole, and writes report.md, results.csv, "
                    "summary.json, figure.png and the seeded masks into --out. Rerun the same "
                    "command to resume an interrupted run.")
    bench.add_argument("--checkpoint", required=True, help="the prior (.pth, .pkl, .safetensors)")
    source = bench.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="a directory of images (stretched to the prior's size)")
    source.add_argument("--procedural", type=int, metavar="N",
                        help="N procedural evaluation facades (seeds never used in training)")
    bench.add_argument("--task", choices=TASKS, default="inpaint",
                       help="inpaint a hole, or reconstruct whole images (default inpaint)")
    bench.add_argument("--masks", choices=MASK_KINDS, default="box",
                       help="kind of seeded hole mask (default box)")
    bench.add_argument("--mask-area", type=float, help="box masks: fraction of the image covered")
    bench.add_argument("--mask-centred", action="store_true",
                       help="box masks: centred on the image (the demo's box) instead of seeded")
    bench.add_argument("--methods", type=names, default=METHODS,
                       help=f"comma-separated, from {','.join(METHODS)} (default all)")
    bench.add_argument("--ablations", "--ablation", type=names, default=(),
                       help=f"comma-separated variants of `paper`: {','.join(ABLATIONS)} "
                            "(default none)")
    bench.add_argument("--codes", type=numbers, default=(),
                       help="N sweep of `paper`, e.g. 1,10,30 (default none)")
    bench.add_argument("--splits", type=numbers, default=(),
                       help="k sweep of `paper`, e.g. 2,4,6 (default none)")
    bench.add_argument("--stop", choices=STOP_MODES, default="auto",
                       help="GAN methods: auto-stop with --steps as the maximum, or exactly --steps "
                            "steps (fixed: the paper's protocol) (default auto)")
    bench.add_argument("--steps", type=int, help="steps of every optimising method: the maximum with "
                                                 "--stop auto (default: each method's, 3000)")
    bench.add_argument("--dip-steps", type=int, help="steps of DIP only (default --steps)")
    _add_freeze_option(bench)
    bench.add_argument("--seed", type=int, default=0, help="image i uses seed + i for mask and start")
    bench.add_argument("--precision", choices=PRECISIONS, help="default: each method's own")
    bench.add_argument("--vgg", help="VGG16 weights for the perceptual loss; without: MSE only")
    bench.add_argument("--threads", type=int, help="CPU threads (default torch's; 1 is often "
                                                  "fastest on a busy machine)")
    bench.add_argument("--figure-images", type=int, default=4,
                       help="images shown in figure.png (default 4)")
    bench.add_argument("--log-every", type=int, default=100,
                       help="progress line every this many steps (default 100)")
    bench.add_argument("--out", required=True, help="output directory (reused to resume)")
    _add_device(bench)

    def run(args: argparse.Namespace) -> None:
        config = config_from_args(BenchConfig, args, procedural=args.procedural or 0)
        try:
            run_bench(config, lambda line: print(line, flush=True))
        except KeyboardInterrupt:
            print(f"interrupted: finished rows are in {args.out}/results.csv; rerun the same "
                  f"command to continue", file=sys.stderr)
            raise SystemExit(130) from None

    bench.set_defaults(run=run)


def _add_bench_speed_command(commands) -> None:
    """`bench-speed`: steps/s of the optimisation, reference implementation vs the project's."""
    from .lab import speed
    parser = commands.add_parser(
        "bench-speed", help="time optimisation steps: reference implementation vs the project's",
        description=speed.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    speed.add_arguments(parser)
    parser.set_defaults(run=speed.run_command)


# Options of `train` that only one architecture has: dest -> option.
TRAIN_PGGAN_ONLY = {"latent_dim": "--latent-dim", "images_per_phase": "--images-per-phase",
                    "batch_sizes": "--batch-sizes", "final_stable_images": "--final-stable-images",
                    "ema_beta": "--ema-beta"}
TRAIN_STYLEGAN2_ONLY = {"z_dim": "--z-dim", "w_dim": "--w-dim", "mapping_layers": "--mapping-layers",
                        "batch_size": "--batch-size", "total_images": "--total-images",
                        "r1_gamma": "--r1-gamma", "r1_every": "--r1-every",
                        "style_mixing": "--style-mixing", "ema_images": "--ema-images",
                        "ema_rampup": "--ema-rampup"}


def _add_train_command(commands) -> None:
    """`train`: a PGGAN (lab.train) or a StyleGAN2 (lab.train_stylegan2) from a folder of images
    or the procedural facades."""
    from .lab.train import PROCEDURAL, TrainConfig
    from .lab.train_stylegan2 import StyleGAN2TrainConfig

    pggan, sg2 = TrainConfig(), StyleGAN2TrainConfig()

    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(item) for item in text.split(",") if item.strip())

    def listed(values: tuple) -> str:
        return ",".join(str(value) for value in values)

    parser = commands.add_parser(
        "train", help="train a PGGAN or StyleGAN2 prior",
        description="--arch pggan (the default): progressive-growing PGGAN training with fade-in, "
                    "WGAN-GP and a moving-average generator. --arch stylegan2: StyleGAN2 with a "
                    "residual discriminator, the non-saturating logistic loss, lazy R1, style "
                    "mixing and G_ema (no path-length regularisation). Both write progress "
                    "lines, sample grids, a resumable checkpoint.pt and finally "
                    "generator.safetensors into --out; rerun the same command to resume. Lists "
                    "are per resolution 4, 8, ..., --resolution. Options marked [pggan] or "
                    "[stylegan2] apply only to that architecture.")
    parser.add_argument("--arch", choices=("pggan", "stylegan2"), default="pggan",
                        help="the network to train (default pggan)")
    parser.add_argument("--data", required=True,
                        help=f"a folder of images (centre-cropped, resized) or '{PROCEDURAL}'")
    parser.add_argument("--resolution", type=int,
                        help=f"output size, a power of two (default {pggan.resolution})")
    parser.add_argument("--channels", type=numbers,
                        help=f"feature channels per resolution (default {listed(pggan.channels)}; "
                             f"stylegan2: {listed(sg2.channels)}, for G and D)")
    parser.add_argument("--lr-g", type=float,
                        help=f"Adam learning rate of the generator (default {pggan.learning_rate_g}; "
                             f"stylegan2: {sg2.learning_rate_g})")
    parser.add_argument("--lr-d", type=float,
                        help=f"Adam learning rate of the discriminator (default "
                             f"{pggan.learning_rate_d}; stylegan2: {sg2.learning_rate_d})")
    parser.add_argument("--seed", type=int, default=pggan.seed,
                        help=f"seed of weights, data order and noise (default {pggan.seed})")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help=f"bf16 autocast or fp32 (default {pggan.precision}; stylegan2: "
                             f"{sg2.precision}, bf16 only where the CPU has native bf16; pggan "
                             "takes bf16 or fp32)")

    pg = parser.add_argument_group("PGGAN only")
    pg.add_argument("--latent-dim", type=int,
                    help=f"[pggan] length of the latent code z (default {pggan.latent_dim})")
    pg.add_argument("--images-per-phase", type=numbers,
                    help="[pggan] images per fade-in and per stabilise phase, per resolution "
                         f"(default {listed(pggan.images_per_phase)})")
    pg.add_argument("--batch-sizes", type=numbers,
                    help=f"[pggan] minibatch per resolution (default {listed(pggan.batch_sizes)})")
    pg.add_argument("--final-stable-images", type=int,
                    help="[pggan] length of the last phase at full resolution (default "
                         f"{pggan.final_stable_images}; 0 means the last --images-per-phase); "
                         "raise it and rerun to continue a finished run")
    pg.add_argument("--ema-beta", type=float,
                    help=f"[pggan] decay of the moving-average generator that is saved (default "
                         f"{pggan.ema_beta})")

    sg = parser.add_argument_group("StyleGAN2 only")
    sg.add_argument("--z-dim", type=int, help=f"[stylegan2] length of z (default {sg2.z_dim})")
    sg.add_argument("--w-dim", type=int, help=f"[stylegan2] length of w (default {sg2.w_dim})")
    sg.add_argument("--mapping-layers", type=int,
                    help=f"[stylegan2] layers of the mapping network (default {sg2.mapping_layers})")
    sg.add_argument("--batch-size", type=int,
                    help=f"[stylegan2] minibatch (default {sg2.batch_size})")
    sg.add_argument("--total-images", type=int,
                    help=f"[stylegan2] images to train on (default {sg2.total_images}); raise it "
                         "and rerun to continue a finished run")
    sg.add_argument("--r1-gamma", type=float,
                    help="[stylegan2] R1 weight gamma (default 0.0002 * resolution^2 / batch, "
                         "stylegan2-ada's auto value; 0 turns R1 off)")
    sg.add_argument("--r1-every", type=int,
                    help=f"[stylegan2] lazy R1: every this many steps (default {sg2.r1_every})")
    sg.add_argument("--style-mixing", type=float,
                    help=f"[stylegan2] probability of mixing two latents (default {sg2.style_mixing})")
    sg.add_argument("--ema-images", type=int,
                    help="[stylegan2] half-life of the saved moving-average generator in images "
                         "(default batch * 10000 / 32)")
    sg.add_argument("--ema-rampup", type=float,
                    help="[stylegan2] the half-life is at most this times the images seen "
                         f"(default {sg2.ema_rampup}; 0 turns the ramp-up off)")

    parser.add_argument("--out", default=pggan.output_dir,
                        help=f"output directory, reused to resume (default {pggan.output_dir})")
    parser.add_argument("--log-every", type=int, default=pggan.log_every,
                        help=f"progress line every this many images (default {pggan.log_every})")
    parser.add_argument("--sample-every", type=int, default=pggan.sample_every,
                        help=f"sample grid every this many images (default {pggan.sample_every})")
    parser.add_argument("--checkpoint-every", type=int, default=pggan.checkpoint_every,
                        help=f"save the resumable checkpoint every this many images (default "
                             f"{pggan.checkpoint_every})")
    parser.add_argument("--threads", type=int, help="CPU threads (default torch's; 1 is often "
                                                  "fastest on a busy machine)")
    parser.add_argument("--restart", action="store_true",
                        help="ignore a checkpoint in --out and start from scratch")

    def run(args: argparse.Namespace) -> None:
        stylegan2 = args.arch == "stylegan2"
        foreign = TRAIN_PGGAN_ONLY if stylegan2 else TRAIN_STYLEGAN2_ONLY
        given = [option for dest, option in foreign.items() if getattr(args, dest) is not None]
        if given:
            other = "pggan" if stylegan2 else "stylegan2"
            raise CommandError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} only "
                               f"to --arch {other}, not to --arch {args.arch} (see train --help)")
        config_class = StyleGAN2TrainConfig if stylegan2 else TrainConfig
        options = {**given_fields(config_class, args), "learning_rate_g": args.lr_g,
                   "learning_rate_d": args.lr_d, "output_dir": args.out,
                   "num_threads": args.threads}
        # Options not given keep the architecture's own defaults; 0 means "off" (None) for these.
        values = {name: value for name, value in options.items() if value is not None}
        for name in ("ema_rampup", "final_stable_images"):
            if name in values and values[name] == 0:
                values[name] = None
        config = config_class(**values, resume=not args.restart)
        if stylegan2:
            from .lab.train_stylegan2 import train
        else:
            from .lab.train import train
        print(f"wrote {train(config)}")

    parser.set_defaults(run=run)


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")


def _add_generate_command(commands) -> None:
    """`generate`: raw outputs for given codes, or a grid of seeded samples."""
    gen = commands.add_parser("generate", help="sample images from a PGGAN or StyleGAN2 checkpoint",
                              description="Raw outputs for given latents (--latents Z.npy --out X.npy: "
                                          "float32 NCHW in [-1, 1], unclamped) or a grid of seeded "
                                          "samples (--seed S --count N --out grid.png). StyleGAN2: "
                                          "with the file's constant noise unless --noise none.")
    gen.add_argument("checkpoint", help="generator checkpoint (.pth, .pkl, .safetensors)")
    gen.add_argument("--latents", help="a .npy array of latent codes: [N, latent_dim] z for a PGGAN; "
                                       "z [N, z_dim] or w+ [N, num_ws, w_dim] for a StyleGAN2")
    gen.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                     help="StyleGAN2 only: pull every style towards w_avg, w_avg + PSI (w - w_avg), "
                          "for z and w+ codes alike (default 1: none)")
    gen.add_argument("--noise", choices=GENERATE_NOISE_MODES, default="const",
                     help="StyleGAN2 only: const adds the file's stored noise, none adds none "
                          "(default const)")
    gen.add_argument("--seed", type=int, default=0, help="seed of the sampled codes (default 0)")
    gen.add_argument("--count", type=int, default=16, help="number of samples (default 16)")
    gen.add_argument("--columns", type=int, default=8, help="grid width in images (default 8)")
    gen.add_argument("--out", required=True, help=".npy (raw outputs of --latents) or an image file")
    _add_device(gen)
    gen.set_defaults(run=_generate_command)


def _add_inpaint_command(commands) -> None:
    """`inpaint`: fill the hole of one image (or reconstruct it)."""
    defaults = OptimizerConfig()
    inp = commands.add_parser(
        "inpaint", help="fill the hole of an image with the GAN prior",
        description="Inpaint (with --mask, white = hole) or reconstruct (without) an image of any "
                    "size. By default the run stops by itself once the fill stops improving "
                    "(--stop auto: a few known pixels are held out of the loss and their error is "
                    "watched) and returns its best image; a reconstruction runs all --steps; --stop "
                    "fixed runs exactly --steps steps, the paper's protocol.")
    inp.add_argument("--checkpoint", required=True,
                     help="the prior: any supported PGGAN or StyleGAN2 checkpoint (.pth, .pkl, "
                          ".safetensors)")
    inp.add_argument("--image", required=True, help="the image to fill (PNG, JPEG, ...)")
    inp.add_argument("--mask", help="mask image, white = hole; omit to reconstruct the whole image")
    inp.add_argument("--out", required=True, help="the composite at the input's size")
    inp.add_argument("--raw-out", help="also write the generator's whole image (at the input's size, "
                                       "not composited)")
    inp.add_argument("--preset", choices=PRESET_NAMES, default="paper",
                     help="paper: this paper's method; mganprior: the mGANprior baseline; "
                          "single-z: one code, frozen generator (default paper)")
    inp.add_argument("--stop", choices=STOP_MODES, default=defaults.stop,
                     help="auto: stop when the held-out error no longer improves and return the "
                          "best image, at most --steps steps; fixed: exactly --steps steps "
                          f"(default {defaults.stop})")
    inp.add_argument("--steps", type=int,
                     help=f"most steps (--stop auto) or exact steps (--stop fixed); default: the "
                          f"preset's ({defaults.steps})")
    inp.add_argument("--seed", type=int, default=0,
                     help="seed of the starting codes and of the held-out pixels (default 0)")
    inp.add_argument("--vgg", help="torchvision vgg16-*.pth or .safetensors for the perceptual loss; "
                                   "default: none (MSE only)")
    inp.add_argument("--codes", type=int, help="number of latent codes N (default: the preset's)")
    inp.add_argument("--split", type=int, help="split layer k (default: the preset's)")
    inp.add_argument("--latent-space", dest="latent_space", choices=LATENT_SPACES,
                     help="StyleGAN2 priors: a code is one w per G1 style slot (w+), one w, or a z "
                          "through the mapping (default: the preset's)")
    inp.add_argument("--g2-styles", dest="g2_styles", choices=G2_STYLE_SOURCES,
                     help="StyleGAN2 priors: G2's styles are learnt, the codes' mean w, or w_avg "
                          "(default: the preset's)")
    inp.add_argument("--noise", dest="noise", choices=NOISE_HANDLING,
                     help="StyleGAN2 priors: the per-layer noise stays constant or is optimised "
                          "with the codes (default: the preset's)")
    inp.add_argument("--precision", choices=PRECISIONS,
                     help=f"bf16 autocast or exact fp32 networks (default {defaults.precision})")
    inp.add_argument("--schedule", choices=SCHEDULES,
                     help=f"learning-rate schedule over --steps (default {defaults.schedule})")
    for group, default in (("latent", defaults.lr_latent), ("alpha", defaults.lr_alpha),
                           ("beta", defaults.lr_beta), ("generator", defaults.lr_generator)):
        inp.add_argument(f"--lr-{group}", type=float,
                         help=f"learning rate of the {group} parameters (default: the preset's; "
                              f"{default} for paper)")
    inp.add_argument("--mse-weight", type=float,
                     help=f"weight of the pixel loss (default {defaults.mse_weight})")
    inp.add_argument("--perceptual-weight", type=float,
                     help=f"weight of the VGG16 loss, used only with --vgg (default "
                          f"{defaults.perceptual_weight})")
    inp.add_argument("--compile", choices=("auto", "on", "off"),
                     help="torch.compile the step: auto compiles only where the run is long enough "
                          "to repay it (large priors), on always, off never; falls back to eager "
                          "with a note where compiling cannot work (default auto)")
    _add_freeze_option(inp)
    inp.add_argument("--fit", choices=imaging.FIT_MODES, default="resize",
                     help="how a non-square or differently sized image meets the generator: "
                          "resize (stretch) or pad (keep the aspect) (default resize)")
    inp.add_argument("--log-every", type=int, default=100,
                     help="print the loss every this many steps (default 100)")
    _add_device(inp)
    inp.set_defaults(run=_inpaint_command)


def _freeze_step(text: str) -> int | None:
    if text.strip().lower() == "never":
        return None
    try:
        return check_count(int(text), "--freeze-g1-at", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of steps (at least 1) or 'never', "
                                         f"got {text!r}") from None


def _add_freeze_option(parser: argparse.ArgumentParser) -> None:
    default = OptimizerConfig().freeze_g1_at
    parser.add_argument("--freeze-g1-at", type=_freeze_step, default=default, metavar="STEPS|never",
                        help="in runs that fine-tune the whole generator (paper), freeze the codes "
                             "and G1 after this many steps and reuse their features, so later steps "
                             "run only the fusion, G2 and the loss; 'never' runs G1 at every step, "
                             f"the paper's computation (default {default})")


def _add_metrics_command(commands) -> None:
    """`metrics`: PSNR and SSIM of an image against a reference."""
    met = commands.add_parser("metrics", help="PSNR and SSIM of an image against a reference")
    met.add_argument("image", help="the image to score")
    met.add_argument("reference", help="the ground truth, same size")
    met.add_argument("--mask", help="also score inside this hole mask (white = hole)")
    met.set_defaults(run=_metrics_command)


def _add_demo_command(commands) -> None:
    """`demo`: the bundled-prior demo."""
    demo = commands.add_parser("demo", help="inpaint a bundled facade with a bundled prior",
                               description="The main job with nothing to download: fills a box "
                                           "over a facade the prior never saw and writes input, "
                                           "mask, result, truth, a side-by-side figure and metrics.")
    demo.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    demo.add_argument("--stop", choices=STOP_MODES, default="auto",
                      help="auto: stop once the fill stops improving; fixed: exactly --steps "
                           "(default auto)")
    demo.add_argument("--steps", type=int, help="most (auto) or exact (fixed) steps (default: the "
                                                "preset's, 3000)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the starting codes (default 0)")
    demo.add_argument("--preset", choices=PRESET_NAMES, default="paper",
                      help="paper, mganprior or single-z (default paper)")
    demo.add_argument("--prior", choices=tuple(BUNDLED_PRIORS), default="pggan",
                      help="the bundled prior: the PGGAN or the StyleGAN2 facade prior "
                           "(default pggan)")
    demo.add_argument("--log-every", type=int, default=100,
                      help="print the loss every this many steps (default 100)")
    _add_device(demo)
    demo.set_defaults(run=_demo_command)


def _add_swd_command(commands) -> None:
    """`swd`: sample quality of a prior against the procedural facades."""
    swd_parser = commands.add_parser(
        "swd", help="multi-scale sliced Wasserstein distance of a prior against procedural facades",
        description="The PGGAN paper's sample-quality metric (ganprior_core.swd): N seeded "
                    "samples of the checkpoint against the first N procedural evaluation facades, "
                    "x1e3 per pyramid scale; --floor scores two disjoint real sets instead.")
    swd_parser.add_argument("--checkpoint", help="the generator (any supported format)")
    swd_parser.add_argument("--procedural", dest="count", type=int, default=2048, metavar="N",
                            help="images per set (default 2048, as in the model card)")
    swd_parser.add_argument("--floor", action="store_true",
                            help="real vs real: what a perfect generator would score with N images")
    swd_parser.add_argument("--seed", type=int, default=0,
                            help="seed of the samples and the patch positions (default 0)")
    swd_parser.add_argument("--threads", type=int, help="CPU threads (default torch's)")
    swd_parser.set_defaults(run=_swd_command)


def _choose_command(args: argparse.Namespace) -> None:
    only = tuple(name.strip() for name in args.only.split(",") if name.strip()) if args.only else ()
    report = choose.run_choice(choose.ChoiceConfig(args.checkpoint, args.variants, args.out,
                                                   args.facades, only, args.threads))
    print(report.read_text(), end="")
    print(f"wrote {report}")


def _add_choose_command(commands) -> None:
    """`choose`: settings of the method compared on held-out facades."""
    parser = commands.add_parser(
        "choose", help="compare settings of the method on held-out facades (paired differences)",
        description="Runs every variant of a JSON variants file on held-out procedural facades "
                    "(never the benchmark's evaluation facades), each with a seeded box and "
                    "seeded strokes, and reports hole PSNR / SSIM paired against the reference "
                    "variant. The file's format: ganprior_core/lab/choose.py. Rerun to resume.")
    parser.add_argument("--checkpoint", required=True, help="the prior (any supported format)")
    parser.add_argument("--variants", required=True, help="the variants file (JSON)")
    parser.add_argument("--facades", type=int, default=12,
                        help="held-out facades, each run with both hole kinds (default 12)")
    parser.add_argument("--only", help="comma-separated variants to run now (default all)")
    parser.add_argument("--threads", type=int, help="CPU threads (default torch's)")
    parser.add_argument("--out", required=True, help="output directory (reused to resume)")
    parser.set_defaults(run=_choose_command)


def _compare_command(args: argparse.Namespace) -> None:
    runs = tuple(compare.parse_run_argument(text) for text in args.runs)
    pairs = tuple(compare.parse_pair_argument(text) for text in args.pairs or ())
    print(compare.run_compare(compare.CompareConfig(runs, pairs, args.out)), end="")
    if args.out:
        print(f"wrote {args.out}")


def _add_compare_command(commands) -> None:
    """`compare`: paired differences between rows of bench directories."""
    parser = commands.add_parser(
        "compare", help="paired differences between bench runs on the same images and holes",
        description="Reads bench output directories (never writes into them) and differences "
                    "pairs of rows image by image: mean ± s.e. of hole PSNR / SSIM and whole-image "
                    "PSNR / SSIM, wins and losses, and a verdict (win beyond 2 s.e., else tie). "
                    "Without --pair: each run's paper against its other methods and the "
                    "prior-free ones (dip, fills), and the runs' paper rows against each other.")
    parser.add_argument("--run", dest="runs", action="append", required=True, metavar="LABEL=DIRECTORY",
                        help="a bench --out directory and the label its rows get (repeat)")
    parser.add_argument("--pair", dest="pairs", action="append", metavar="LABEL:METHOD,LABEL:METHOD",
                        help="the first row minus the second (repeat; default: see above)")
    parser.add_argument("--out", help="also write the report to this .md file")
    parser.set_defaults(run=_compare_command)


def _stop_study_command(args: argparse.Namespace) -> None:
    rules = ()
    if args.rules:
        try:
            named = json.loads(Path(args.rules).read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise CommandError(f"--rules {args.rules} cannot be read as JSON ({error})") from None
        if not isinstance(named, dict) or not all(isinstance(v, dict) for v in named.values()):
            raise CommandError(f"--rules {args.rules} must map rule names to settings, e.g. "
                               '{"late": {"rewind": 0.25}}')
        rules = tuple(named.items())
    try:
        fixed = tuple(int(text) for text in args.fixed.split(",")) if args.fixed else ()
    except ValueError:
        raise CommandError(f"--fixed takes comma-separated step counts (e.g. 100,300), got {args.fixed!r}") from None
    report = stop_study.run_study(stop_study.StudyConfig(
        args.checkpoint, args.out, args.preset, args.facades, args.until, rules,
        fixed if args.fixed is not None else stop_study.StudyConfig.fixed, args.threads),
        lambda line: print(line, flush=True))
    print(report.read_text(), end="")
    print(f"wrote {report}")


def _add_stop_study_command(commands) -> None:
    """`stop-study`: auto-stop rules replayed on recorded held-out runs."""
    parser = commands.add_parser(
        "stop-study", help="replay auto-stop rules on recorded runs of held-out facades",
        description="Records one long run per held-out facade and hole kind that auto-stop may "
                    "not end (the held-out error and the hole's PSNR/SSIM at every check), then "
                    "replays auto-stop rules (patience, smoothing, rewind) and fixed step counts "
                    "on the recordings, paired against the family's rule. Rerun to resume.")
    parser.add_argument("--checkpoint", required=True, help="the prior (any supported format)")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="paper", help="default paper")
    parser.add_argument("--facades", type=int, default=16, help="held-out facades (default 16)")
    parser.add_argument("--until", type=int, default=1500, help="steps recorded per run (default 1500)")
    parser.add_argument("--rules", help="JSON file: rule name -> settings (default: a grid)")
    parser.add_argument("--fixed", help="comma-separated fixed step counts to show (default 100,200,300,600)")
    parser.add_argument("--threads", type=int, help="CPU threads (default torch's)")
    parser.add_argument("--out", required=True, help="output directory (reused to resume)")
    parser.set_defaults(run=_stop_study_command)


def _add_convert_command(commands) -> None:
    """`convert`: any supported checkpoint to this project's .safetensors."""
    conv = commands.add_parser("convert", help="convert any supported checkpoint to .safetensors")
    conv.add_argument("source", help="any supported checkpoint (.pth, .pkl, .safetensors)")
    conv.add_argument("destination", help="the .safetensors file to write")
    conv.set_defaults(run=_convert_command)


COMMANDS = (_add_generate_command, _add_inpaint_command, _add_metrics_command, _add_convert_command,
            _add_demo_command, _add_train_command, _add_bench_command, _add_bench_speed_command,
            _add_swd_command, _add_choose_command, _add_compare_command, _add_stop_study_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ganprior_core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def given_fields(config_class, args: argparse.Namespace) -> dict:
    """The parsed options named like fields of the dataclass `config_class`."""
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)
            if hasattr(args, field.name)}


def config_from_args(config_class, args: argparse.Namespace, **values):
    """A config dataclass from the parsed options of the same names, then `values` (options
    named otherwise, or derived)."""
    return config_class(**{**given_fields(config_class, args), **values})


# Commands whose --out is a folder they fill (the others' --out is a file, checked by the command).
OUTPUT_FOLDER_COMMANDS = ("demo", "bench", "train", "choose", "stop-study")


def _check_shared_options(args: argparse.Namespace) -> None:
    """Options several commands share, checked before any command does work: a bad one is an
    error here, not a traceback minutes later (a 0 thread count, a seed torch cannot take, a
    device this machine lacks, an --out folder that is a file)."""
    if getattr(args, "threads", None) is not None:
        check_count(args.threads, "--threads", 1)
    if getattr(args, "seed", None) is not None:
        check_seed(args.seed, "--seed")
    if getattr(args, "log_every", None) is not None:
        check_count(args.log_every, "--log-every", 1)
    if getattr(args, "device", None) is not None:
        resolve_device(args.device)
    if args.command in OUTPUT_FOLDER_COMMANDS:
        check_output_folder(args.out, "--out")


class _Terminated(BaseException):
    """SIGTERM (kill, a scheduler's stop): unwinds like Ctrl-C, so every temporary file goes."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return _run(args)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    try:
        _check_shared_options(args)
        args.run(args)
    except (CommandError, CheckpointError, PerceptualModelError, FileNotFoundError, ValueError) as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # a write failure the helpers did not name (they name the file)
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: every file is written atomically, so nothing partial is left behind.
        print(f"interrupted: {args.command} stopped; nothing partial was written", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"terminated: {args.command} stopped by SIGTERM; nothing partial was written",
              file=sys.stderr)
        return 143
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
