"""`python -m ganprior_core train`: one command for both trainers, the PGGAN's (lab.train) and the
StyleGAN2's (lab.train_stylegan2).

The two share their data, run folder and logging options; each has options of its own, marked
[pggan] or [stylegan2] in the help and refused for the other architecture rather than silently
ignored. The defaults shown are the trainers' own config defaults, so help and behaviour cannot
drift apart.
"""
from __future__ import annotations

import argparse

from .. import PRECISIONS
from ..cli import CommandError, given_fields, numbers
from .train import PROCEDURAL, TrainConfig
from .train import train as train_pggan
from .train_stylegan2 import StyleGAN2TrainConfig
from .train_stylegan2 import train as train_stylegan2

DESCRIPTION = ("--arch pggan (the default): progressive-growing PGGAN training with fade-in, "
               "WGAN-GP and a moving-average generator. --arch stylegan2: StyleGAN2 with a "
               "residual discriminator, the non-saturating logistic loss, lazy R1, style "
               "mixing and G_ema (no path-length regularisation). Both write progress "
               "lines, sample grids, a resumable checkpoint.pt and finally "
               "generator.safetensors into --out; rerun the same command to resume. Lists "
               "are per resolution 4, 8, ..., --resolution. Options marked [pggan] or "
               "[stylegan2] apply only to that architecture.")
# Options that only one architecture has: dest -> option.
PGGAN_ONLY = {"latent_dim": "--latent-dim", "images_per_phase": "--images-per-phase",
              "batch_sizes": "--batch-sizes", "final_stable_images": "--final-stable-images",
              "ema_beta": "--ema-beta"}
STYLEGAN2_ONLY = {"z_dim": "--z-dim", "w_dim": "--w-dim", "mapping_layers": "--mapping-layers",
                  "batch_size": "--batch-size", "total_images": "--total-images",
                  "r1_gamma": "--r1-gamma", "r1_every": "--r1-every",
                  "style_mixing": "--style-mixing", "ema_images": "--ema-images",
                  "ema_rampup": "--ema-rampup"}
# The trainer of each --arch: its config, its run, and the options only it has.
TRAINERS = {"pggan": (TrainConfig, train_pggan, PGGAN_ONLY),
            "stylegan2": (StyleGAN2TrainConfig, train_stylegan2, STYLEGAN2_ONLY)}
# Options where 0 means "off", which the configs spell None.
ZERO_MEANS_OFF = ("ema_rampup", "final_stable_images")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pggan, stylegan2 = TrainConfig(), StyleGAN2TrainConfig()
    parser.description = DESCRIPTION
    _add_network_options(parser, pggan, stylegan2)
    _add_pggan_options(parser.add_argument_group("PGGAN only"), pggan)
    _add_stylegan2_options(parser.add_argument_group("StyleGAN2 only"), stylegan2)
    _add_run_options(parser, pggan)


def run_command(args: argparse.Namespace) -> None:
    train = TRAINERS[args.arch][1]
    print(f"wrote {train(train_config(args))}")


def train_config(args: argparse.Namespace) -> TrainConfig | StyleGAN2TrainConfig:
    """The chosen architecture's config from the parsed options; options not given keep its
    own defaults."""
    _refuse_options_of_the_other_arch(args)
    config_class = TRAINERS[args.arch][0]
    options = {**given_fields(config_class, args), "learning_rate_g": args.lr_g,
               "learning_rate_d": args.lr_d, "output_dir": args.out, "num_threads": args.threads}
    values = {name: value for name, value in options.items() if value is not None}
    for name in ZERO_MEANS_OFF:
        if values.get(name) == 0:
            values[name] = None
    return config_class(**values, resume=not args.restart)


def _refuse_options_of_the_other_arch(args: argparse.Namespace) -> None:
    for other, (_, _, only_there) in TRAINERS.items():
        given = [option for dest, option in only_there.items() if getattr(args, dest) is not None]
        if other != args.arch and given:
            raise CommandError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} only "
                               f"to --arch {other}, not to --arch {args.arch} (see train --help)")


def _listed(values: tuple) -> str:
    return ",".join(str(value) for value in values)


def _add_network_options(parser: argparse.ArgumentParser, pggan: TrainConfig,
                         stylegan2: StyleGAN2TrainConfig) -> None:
    """What both architectures have; the defaults differ, and the help gives both."""
    parser.add_argument("--arch", choices=("pggan", "stylegan2"), default="pggan",
                        help="the network to train (default pggan)")
    parser.add_argument("--data", required=True,
                        help=f"a folder of images (centre-cropped, resized) or '{PROCEDURAL}'")
    parser.add_argument("--resolution", type=int,
                        help=f"output size, a power of two (default {pggan.resolution})")
    parser.add_argument("--channels", type=numbers,
                        help=f"feature channels per resolution (default {_listed(pggan.channels)}; "
                             f"stylegan2: {_listed(stylegan2.channels)}, for G and D)")
    parser.add_argument("--lr-g", type=float,
                        help=f"Adam learning rate of the generator (default {pggan.learning_rate_g}; "
                             f"stylegan2: {stylegan2.learning_rate_g})")
    parser.add_argument("--lr-d", type=float,
                        help=f"Adam learning rate of the discriminator (default "
                             f"{pggan.learning_rate_d}; stylegan2: {stylegan2.learning_rate_d})")
    parser.add_argument("--seed", type=int, default=pggan.seed,
                        help=f"seed of weights, data order and noise (default {pggan.seed})")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help=f"bf16 autocast or fp32 (default {pggan.precision}; stylegan2: "
                             f"{stylegan2.precision}, bf16 only where the CPU has native bf16; pggan "
                             "takes bf16 or fp32)")


def _add_pggan_options(group, pggan: TrainConfig) -> None:
    group.add_argument("--latent-dim", type=int,
                       help=f"[pggan] length of the latent code z (default {pggan.latent_dim})")
    group.add_argument("--images-per-phase", type=numbers,
                       help="[pggan] images per fade-in and per stabilise phase, per resolution "
                            f"(default {_listed(pggan.images_per_phase)})")
    group.add_argument("--batch-sizes", type=numbers,
                       help=f"[pggan] minibatch per resolution (default {_listed(pggan.batch_sizes)})")
    group.add_argument("--final-stable-images", type=int,
                       help="[pggan] length of the last phase at full resolution (default "
                            f"{pggan.final_stable_images}; 0 means the last --images-per-phase); "
                            "raise it and rerun to continue a finished run")
    group.add_argument("--ema-beta", type=float,
                       help=f"[pggan] decay of the moving-average generator that is saved (default "
                            f"{pggan.ema_beta})")


def _add_stylegan2_options(group, stylegan2: StyleGAN2TrainConfig) -> None:
    group.add_argument("--z-dim", type=int, help=f"[stylegan2] length of z (default {stylegan2.z_dim})")
    group.add_argument("--w-dim", type=int, help=f"[stylegan2] length of w (default {stylegan2.w_dim})")
    group.add_argument("--mapping-layers", type=int,
                       help=f"[stylegan2] layers of the mapping network (default "
                            f"{stylegan2.mapping_layers})")
    group.add_argument("--batch-size", type=int,
                       help=f"[stylegan2] minibatch (default {stylegan2.batch_size})")
    group.add_argument("--total-images", type=int,
                       help=f"[stylegan2] images to train on (default {stylegan2.total_images}); "
                            "raise it and rerun to continue a finished run")
    group.add_argument("--r1-gamma", type=float,
                       help="[stylegan2] R1 weight gamma (default 0.0002 * resolution^2 / batch, "
                            "stylegan2-ada's auto value; 0 turns R1 off)")
    group.add_argument("--r1-every", type=int,
                       help=f"[stylegan2] lazy R1: every this many steps (default {stylegan2.r1_every})")
    group.add_argument("--style-mixing", type=float,
                       help=f"[stylegan2] probability of mixing two latents (default "
                            f"{stylegan2.style_mixing})")
    group.add_argument("--ema-images", type=int,
                       help="[stylegan2] half-life of the saved moving-average generator in images "
                            "(default batch * 10000 / 32)")
    group.add_argument("--ema-rampup", type=float,
                       help="[stylegan2] the half-life is at most this times the images seen "
                            f"(default {stylegan2.ema_rampup}; 0 turns the ramp-up off)")


def _add_run_options(parser: argparse.ArgumentParser, pggan: TrainConfig) -> None:
    """The run folder, how often it is written to, and the machine."""
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
