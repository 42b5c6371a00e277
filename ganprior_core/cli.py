"""The command line, `python -m ganprior_core <command> ...`: the product commands (generate,
inpaint, restore, metrics, convert) and the dispatch to the research tools.

The product commands use only the library's public face (`ganprior_core`) and never import the
lab: they pay for none of the tools' imports, and a change to a research tool cannot break them.
Each research tool in ganprior_core/lab declares its own options and runs itself; this module
lists it by name and one line of help (RESEARCH_TOOLS) and imports it only when it is the command
chosen. What every command shares is here: the options several commands have, the checks made
before any work, and the one-line errors and exit codes.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import io
import signal
import sys
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import (
    DOWNSAMPLERS,
    G2_STYLE_SOURCES,
    LATENT_SPACES,
    NOISE_HANDLING,
    PRECISIONS,
    PRESET_NAMES,
    SCHEDULES,
    STOP_MODES,
    VECTORIZE_CHOICES,
    CheckpointError,
    OptimizerConfig,
    PerceptualModelError,
    Progress,
    StartsConfig,
    StyleGAN2Options,
    batch_size_that_fits,
    check_inpaint_fits,
    convert_checkpoint,
    family_of,
    imaging,
    inpaint_any_size,
    inpaint_batch_any_size,
    load_generator,
    load_vgg16_features,
    metrics,
    parse_compile_setting,
    preset,
    restoration_chain,
    restore_any_size,
    restore_batch_any_size,
    vectorizes,
)
from .files import (
    check_output_file,
    check_output_folder,
    refuse_output_over_input,
    require_regular_file,
    same_file,
    write_atomically,
)
from .sampling import GENERATE_NOISE_MODES, generate, image_grid, sample_latents
from .validation import check_count, check_seed, resolve_device

DESCRIPTION = "Command line: `python -m ganprior_core <command> ...` (see `--help` of each command)."

# The research tools: command -> (its module in ganprior_core.lab, one line of help). The help is
# here so that listing the commands imports no tool. A tool's module declares its options
# (`add_arguments(parser)`) and runs the command (`run_command(args)`).
RESEARCH_TOOLS = {
    "demo": ("demo", "inpaint a bundled facade with a bundled prior"),
    "train": ("train_command", "train a PGGAN or StyleGAN2 prior"),
    "bench": ("bench", "benchmark methods on many images: report.md, results.csv, summary.json"),
    "bench-speed": ("speed", "time optimisation steps: reference implementation vs the project's"),
    "swd": ("swd", "multi-scale sliced Wasserstein distance of a prior against procedural facades"),
    "fill-study": ("fill_study", "which signal a run can see ranks its hole fill, over seeds of held-out facades"),
    "choose": ("choose", "compare settings of the method on held-out facades (paired differences)"),
    "compare": ("compare", "paired differences between bench runs on the same images and holes"),
    "stop-study": ("stop_study", "replay auto-stop rules on recorded runs of held-out facades"),
    "starts-study": ("start_study", "several starts against one: default runs of held-out facades, "
                                    "multi-start schedules replayed"),
}
# Commands whose --out is a folder they fill (the others' --out is a file, checked by the command).
OUTPUT_FOLDER_COMMANDS = ("demo", "bench", "train", "choose", "stop-study", "fill-study",
                          "starts-study")


class CommandError(Exception):
    """A user mistake the CLI reports as one line, without a traceback."""


# ---------------------------------------------------------------------------------------------
# The product commands

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
    # generate checks memory before it runs, counting the copies made of its outputs here: .npy
    # writes them as they are; a grid is the outputs in [0, 1], the grid and its 8-bit pixels.
    copies = 1 if out.suffix.lower() == ".npy" else GRID_OUTPUT_COPIES
    options = {"truncation_psi": args.truncation, "noise_mode": args.noise, "output_copies": copies}
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
        latents = sample_latents(args.count, family_of(generator).z_dim(generator.config), args.seed)
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


def _check_inpaint_files(args: argparse.Namespace) -> None:
    """Inputs must be regular files (checked before the slow loads, so a typo in --mask does not
    wait for the checkpoint); outputs must be writable and must not overwrite each other or a
    file the user gave."""
    for option, path in (("checkpoint", args.checkpoint), ("image", args.image),
                         ("mask", args.mask), ("VGG16 weights", args.vgg)):
        if path is not None:
            require_regular_file(path, option)
    outputs = {"--out": args.out, "--raw-out": args.raw_out}
    for rank in range(2, args.candidates + 1):
        outputs[f"--out (candidate {rank})"] = candidate_path(args.out, rank)
        if args.raw_out is not None:
            outputs[f"--raw-out (candidate {rank})"] = candidate_path(args.raw_out, rank)
    inputs = {"--image": args.image, "--mask": args.mask, "--checkpoint": args.checkpoint,
              "--vgg": args.vgg}
    for option, path in outputs.items():
        if path is not None:
            imaging.check_output_image_path(path, option)
    # Same path, a hard link or a symbolic link: compared by device and inode too.
    refuse_output_over_input(outputs, inputs)


# Image-sized [3, H, W] float32 copies `inpaint` holds at its peak: the image as read (decoding
# holds more), its alpha and mask, the run's own copies (memory.INPAINT_IMAGE_COPIES) and the 8-
# or 16-bit pixels of the file written: measured 5.5 for an 8-bit PNG in and out, 8.7 for a
# 16-bit RGBA PNG in and out (docs/memory.md).
INPAINT_COMMAND_IMAGE_COPIES = 10.5
# restore holds inpaint's copies of the result-sized image and its step's own (the high-resolution
# image, its observation and their gradients, the projection's working copies: restore.py).
RESTORE_COMMAND_IMAGE_COPIES = INPAINT_COMMAND_IMAGE_COPIES + 6.0
# Copies of generate's outputs a grid makes: [0, 1] values, the grid, its 8-bit pixels.
GRID_OUTPUT_COPIES = 4.0


def candidate_path(path: str, rank: int) -> str:
    """Where candidate `rank` (2, 3, ...) of --out goes: out.png -> out_candidate2.png."""
    path = Path(path)
    return str(path.with_name(f"{path.stem}_candidate{rank}{path.suffix}"))


def _starts_config(args: argparse.Namespace) -> StartsConfig:
    starts = StartsConfig(args.starts, args.choose_at, args.candidates, args.vectorize)
    try:
        starts.validate()
    except ValueError as error:
        raise CommandError(f"--starts/--choose-at/--candidates: {error}") from None
    return starts


def _inpaint_command(args: argparse.Namespace) -> None:
    """One --image, or several (given one by one or as a folder) optimised together (the
    library's inpaint_batch_any_size): each result is what `inpaint` of that image alone with
    its seed writes."""
    jobs = _image_jobs(args)
    starts = _starts_config(args)
    _check_jobs_files(args, jobs)
    generator = load_generator(args.checkpoint)
    model_config, optimizer_config = _inpaint_configs(args, generator.config)
    perceptual = load_vgg16_features(args.vgg) if args.vgg else None
    sizes = [imaging.image_size(job.image) for job in jobs]  # from the headers: nothing decoded yet
    for job, size in zip(jobs, sizes):
        _check_output_sizes(job, size)
    # Before the images are decoded or the prior copied: refused with what would fit (one run
    # with the largest image; how many run together is the library's choice).
    largest = max(sizes, key=lambda size: size[0] * size[1])
    check_inpaint_fits(generator, model_config, optimizer_config, perceptual, args.device,
                       image_size=largest,
                       image_copies=INPAINT_COMMAND_IMAGE_COPIES + 2 * (starts.candidates - 1),
                       starts=starts.starts)
    if len(jobs) == 1:
        [(loaded, hole)] = _read_inputs(jobs, named=False)
        result = inpaint_any_size(generator, loaded.pixels, hole, model_config, optimizer_config,
                                  args.seed, args.fit, args.device, perceptual,
                                  print_progress(args.log_every), starts=starts)
        _write_inpainting(jobs[0], loaded, hole, result)
        return
    device, groups = _groups_that_fit(args, generator, model_config, optimizer_config, perceptual,
                                      len(jobs), largest, INPAINT_COMMAND_IMAGE_COPIES)
    for indices in groups:
        group = [jobs[index] for index in indices]
        inputs = _read_inputs(group, named=True)
        results = inpaint_batch_any_size(
            generator, [image.pixels for image, _ in inputs], [hole for _, hole in inputs],
            model_config, optimizer_config, [job.seed for job in group], args.fit, device,
            perceptual, image_copies=INPAINT_COMMAND_IMAGE_COPIES, vectorize=args.vectorize,
            callbacks=[print_progress(args.log_every, f"{Path(job.image).name}: ") for job in group])
        for job, (image, hole), result in zip(group, inputs, results):
            _write_inpainting(job, image, hole, result)


def _groups_that_fit(args: argparse.Namespace, generator, model_config, optimizer_config,
                     perceptual, count: int, largest: tuple[int, int],
                     image_copies: float) -> tuple[torch.device, list[range]]:
    """The device, and the images' indices in groups of as many as the memory available now holds
    with the command's copies of each image (the library's own count). Each group is read just
    before it runs, so a large folder is never decoded at once, and its results are written
    when it ends."""
    device = resolve_device(args.device)
    together = batch_size_that_fits(generator, model_config, optimizer_config, perceptual, device,
                                    count, largest, image_copies, vectorizes(args.vectorize, device))
    if together < count:
        print(f"note: {count} images run {together} at a time, what the memory available now "
              "holds; each group's results are written when it ends", flush=True)
    return device, [range(first, min(first + together, count)) for first in range(0, count, together)]


def _read_inputs(jobs: list[argparse.Namespace], named: bool) -> list[tuple]:
    """(the image as read, its hole) of each job, its notes printed (after the image's name
    where several run)."""
    inputs = []
    for job in jobs:
        loaded = imaging.read_image(job.image)
        hole, notes = _hole_and_input_notes(job, loaded)
        for note in notes:
            print(f"note: {Path(job.image).name + ': ' if named else ''}{note}", flush=True)
        inputs.append((loaded, hole))
    return inputs


def _check_jobs_files(args: argparse.Namespace, jobs: list[argparse.Namespace]) -> None:
    """Each job's files (_check_inpaint_files) and, with several, no job's output over another's
    output or any job's input."""
    for job in jobs:
        _check_inpaint_files(job)
    if len(jobs) > 1:
        outputs, inputs = {}, {"--checkpoint": args.checkpoint, "--vgg": args.vgg}
        for index, job in enumerate(jobs, start=1):
            outputs.update({f"--out (image {index})": job.out,
                            f"--raw-out (image {index})": job.raw_out})
            inputs.update({f"--image (image {index})": job.image,
                           f"--mask (image {index})": job.mask})
        refuse_output_over_input(outputs, inputs)


def _image_jobs(args: argparse.Namespace) -> list[argparse.Namespace]:
    """The command's options for each --image: its own --mask (one given for all, or one each),
    --out and --raw-out (one each), and seed (--seed + its index, as the node's batch)."""
    if any(Path(image).is_dir() for image in args.image):
        args = _folder_images(args)
    count = len(args.image)
    per_image = {}
    for option, attribute, one_for_all in (("--mask", "mask", True), ("--out", "out", False),
                                           ("--raw-out", "raw_out", False)):
        values = getattr(args, attribute)
        if values is None or len(values) == count:
            per_image[attribute] = values or [None] * count
        elif one_for_all and len(values) == 1:
            per_image[attribute] = values * count
        else:
            either = " (or one for all)" if one_for_all else ""
            raise CommandError(f"give one {option} per --image{either}: {count} --image, "
                               f"{len(values)} {option}")
    if count > 1 and args.starts != 1:
        raise CommandError("several images are optimised together, one start each: --starts "
                           "must be 1 (run the images one at a time for more starts)")
    seeds = [args.seed] if count == 1 else [(check_seed(args.seed) + index) % 2 ** 64
                                            for index in range(count)]
    return [argparse.Namespace(**{**vars(args), **{name: values[index]
                                                  for name, values in per_image.items()},
                                  "image": args.image[index], "seed": seeds[index]})
            for index in range(count)]


def _folder_images(args: argparse.Namespace) -> argparse.Namespace:
    """--image FOLDER as the options of several --image: every image file in it, sorted by name;
    each result under the image's name in the --out folder (and the --raw-out folder); each
    mask the one --mask file, the mask of the image's name in a --mask folder, or none (the
    image's transparency)."""
    folder = Path(args.image[0])
    if len(args.image) > 1:
        folders = [image for image in args.image if Path(image).is_dir()]
        raise CommandError(f"--image {folders[0]} is a folder, which stands for every image in it: "
                           f"give it as the only --image ({len(args.image)} --image given)")
    masks = args.mask or []
    if len(masks) > 1:
        raise CommandError(f"--image {folder} is a folder: give one --mask (a mask file for every "
                           f"image, or a folder of masks named as the images), or none "
                           f"({len(masks)} given)")
    mask_folder = Path(masks[0]) if masks and Path(masks[0]).is_dir() else None
    targets = {}
    for option, given in (("--out", args.out), ("--raw-out", args.raw_out)):
        if given is not None:
            targets[option] = _results_folder(option, given, folder, mask_folder)
    if mask_folder is not None and same_file(mask_folder, folder):
        raise CommandError(f"--mask {mask_folder} is the --image folder: its masks would be read "
                           "as images too; keep the masks in a folder of their own")
    if masks and mask_folder is None and same_file(Path(masks[0]).parent, folder):
        raise CommandError(f"--mask {masks[0]} lies in the --image folder, so it would be filled "
                           "as one of the images; move it out of that folder")
    if len(targets) == 2 and same_file(targets["--out"], targets["--raw-out"]):
        raise CommandError(f"--out and --raw-out are the same folder {targets['--out']}: the raw "
                           "images would overwrite the composites of the same names; give two folders")
    images = _folder_image_files(folder)
    if mask_folder is not None:
        masks = _folder_masks(images, mask_folder)
    elif masks:
        masks = masks * len(images)
    return argparse.Namespace(**{
        **vars(args), "image": [str(image) for image in images], "mask": masks or None,
        **{option.lstrip("-").replace("-", "_"): [str(target / image.name) for image in images]
           for option, target in targets.items()}})


def _results_folder(option: str, given: list[str], images: Path, masks: Path | None) -> Path:
    """The folder --out (or --raw-out) names for the results of --image FOLDER: one, a folder
    (made when the first result is written), and not a folder of the inputs."""
    if len(given) != 1:
        raise CommandError(f"--image {images} is a folder: give one {option}, the folder its "
                           f"results go to ({len(given)} given)")
    target = Path(given[0])
    if not target.is_dir() and target.suffix.lower() in imaging.IMAGE_SUFFIXES:
        raise CommandError(f"--image {images} is a directory, so its images are read and {option} "
                           f"{target} must be a folder for their results (each under its image's "
                           "name), not an image file")
    check_output_folder(target, option)
    for name, source in (("--image", images), ("--mask", masks)):
        if source is not None and same_file(target, source):
            raise CommandError(f"{option} {target} is the {name} folder: the results would "
                               f"overwrite its files of the same names; give another folder")
    return target


def _folder_image_files(folder: Path) -> list[Path]:
    """The image files of --image FOLDER by name (visible regular files with an image
    extension, not its subfolders); a note names what else it holds."""
    entries = sorted(folder.iterdir(), key=lambda entry: entry.name)
    images = [entry for entry in entries if not entry.name.startswith(".")
              and entry.suffix.lower() in imaging.IMAGE_SUFFIXES and entry.is_file()]
    if not images:
        raise CommandError(f"--image folder {folder} holds no image files (visible files named "
                           f"{', '.join(imaging.IMAGE_SUFFIXES)})")
    read = set(images)
    skipped = [entry.name + ("/" if entry.is_dir() else "") for entry in entries if entry not in read]
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"note: {folder}: {len(images)} images; skipped {len(skipped)} other entries "
              f"(only visible files named {', '.join(imaging.IMAGE_SUFFIXES)} are read, not "
              f"subfolders): {shown}", flush=True)
    return images


def _folder_masks(images: list[Path], masks: Path) -> list[str]:
    """Each image's mask in the --mask folder: the file of its name or, failing that, the one
    image file of its name with another extension (a photo's .jpg and its mask's .png)."""
    files = [entry for entry in masks.iterdir() if entry.suffix.lower() in imaging.IMAGE_SUFFIXES]
    names = {entry.name for entry in files}
    by_stem: dict[str, list[str]] = {}
    for entry in sorted(files, key=lambda entry: entry.name):
        by_stem.setdefault(entry.stem, []).append(entry.name)
    found = []
    for image in images:
        if image.name in names:
            found.append(str(masks / image.name))
            continue
        candidates = by_stem.get(image.stem, [])
        if len(candidates) != 1:
            problem = ("no mask" if not candidates else
                       f"{len(candidates)} masks ({', '.join(candidates)}) and none named as it")
            raise CommandError(f"--mask folder {masks} has {problem} for {image.name}: a mask has "
                               "the image's file name (or its name with another image extension); "
                               "give one for every image, or one --mask file for all")
        found.append(str(masks / candidates[0]))
    return found


def _check_output_sizes(args: argparse.Namespace, size: tuple[int, int]) -> None:
    """The result has the input's size: refused where --out or --raw-out cannot hold it."""
    for option in ("out", "raw_out"):
        if getattr(args, option) is not None:
            imaging.check_output_image_path(getattr(args, option), "--" + option.replace("_", "-"),
                                            size=size)


def _write_inpainting(args: argparse.Namespace, loaded, hole: torch.Tensor, result) -> None:
    """--out (and --raw-out) of one image's result, every candidate, with their notes."""
    for note in result.notes:
        print(f"note: {note}")
    alpha = _output_alpha(loaded, hole)
    bits = 16 if loaded.bits > 8 else 8
    for rank, candidate in enumerate(result.candidates(), start=1):
        out = args.out if rank == 1 else candidate_path(args.out, rank)
        for note in [*(_bit_depth_notes(loaded, out) if rank == 1 else []),
                     *imaging.save_image(candidate.composite, out, alpha=alpha, bits=bits)]:
            print(f"note: {note}")
        fit = (f"{candidate.describe_stop()}, final loss {candidate.loss_history[-1]:.5f}"
               if candidate.loss_history else "no steps: nothing was known")
        choice = candidate.describe_choice()
        print(f"wrote {out} ({candidate.seconds:.1f} s, preset {args.preset}, "
              f"{choice + ', ' if choice else ''}{fit})")
        if args.raw_out:
            raw = args.raw_out if rank == 1 else candidate_path(args.raw_out, rank)
            imaging.save_image(candidate.output, raw,
                               bits=bits if Path(raw).suffix.lower() == ".png" else 8)
            print(f"wrote {raw} (the generator's whole image, not composited)")


def _hole_and_input_notes(args: argparse.Namespace, loaded) -> tuple[torch.Tensor, list[str]]:
    """The hole (the --mask file; without one, the image's transparent pixels, as ComfyUI's Load
    Image reads them; else none) and notes on what of the image file the run does not use."""
    notes = list(loaded.notes)
    transparent = loaded.transparent_pixels
    if args.mask:
        if transparent:
            notes.append(f"{Path(args.image).name} has {transparent} transparent or partly "
                         "transparent pixels: --mask says what to fill, and they are read as their "
                         "stored colour; --out keeps their alpha where the format holds one")
        return imaging.load_mask(args.mask), notes
    hole = loaded.alpha_hole()
    if hole is None:
        return torch.zeros(loaded.pixels.shape[1:]), notes
    holes = int(hole.sum())
    if holes:
        notes.append(f"no --mask: the {holes} transparent pixels of {Path(args.image).name} "
                     "(alpha at most half) are the hole, as ComfyUI's Load Image reads them; give "
                     "--mask to choose the hole yourself")
    else:
        notes.append(f"no --mask: {Path(args.image).name} has {transparent} partly transparent "
                     "pixels, none transparent enough (alpha at most half) to be a hole, so the "
                     "whole image is reconstructed; give --mask to choose a hole")
    return hole, notes


def _output_alpha(loaded, hole: torch.Tensor) -> torch.Tensor | None:
    """The alpha channel --out keeps: the image's where it had transparency, opaque where the
    hole was filled; None for an image without transparency, or none left once filled."""
    if not loaded.transparent_pixels:
        return None
    filled = imaging.resize_mask(hole, tuple(loaded.pixels.shape[1:]))
    alpha = torch.maximum(loaded.alpha, filled)
    return None if bool((alpha >= 1).all()) else alpha  # all opaque once filled: plain RGB


def _bit_depth_notes(loaded, out: str | Path) -> list[str]:
    """What --out cannot keep of the image's bit depth beyond 16 (save_image notes a format
    that holds only 8)."""
    if loaded.bits > 16 and Path(out).suffix.lower() == ".png":
        return [f"{Path(out).name}: the image's 32-bit floating-point samples are written at 16 bits "
                "per channel"]
    return []


def _restore_command(args: argparse.Namespace) -> None:
    """`restore`: super-resolution (--scale), colorization (--gray) and holes (--mask, on the
    input's grid), alone or together, in one run; the result is consistent with the input. One
    --image, or several (given one by one or as a folder) optimised together (the library's
    restore_batch_any_size): each result is what `restore` of that image alone with its seed
    writes."""
    scale = _scale(args.scale)
    if scale == 1 and not args.gray and args.mask is None:
        raise CommandError("nothing to restore: give --scale above 1, --gray, or --mask (holes "
                           "alone: inpaint does the same)")
    starts = _starts_config(args)
    jobs = _image_jobs(args)
    _check_jobs_files(args, jobs)
    sizes = [imaging.image_size(job.image) for job in jobs]  # from the headers: nothing decoded yet
    result_sizes = [(height * scale, width * scale) for height, width in sizes]
    for job, result_size in zip(jobs, result_sizes):
        if result_size[0] * result_size[1] > imaging.MAX_IMAGE_PIXELS:
            raise CommandError(f"--scale {scale}: the result of {job.image} would be "
                               f"{result_size[1]}x{result_size[0]} pixels, over the "
                               f"{imaging.MAX_IMAGE_PIXELS:,} accepted; use a smaller --scale or "
                               "a smaller image")
        _check_output_sizes(job, result_size)  # the result is F times the input: fits the format?
    generator = load_generator(args.checkpoint)
    model_config, optimizer_config = _inpaint_configs(args, generator.config)
    perceptual = load_vgg16_features(args.vgg) if args.vgg else None
    largest = max(result_sizes, key=lambda size: size[0] * size[1])
    check_inpaint_fits(generator, model_config, optimizer_config, perceptual, args.device,
                       image_size=largest,
                       image_copies=RESTORE_COMMAND_IMAGE_COPIES + 2 * (starts.candidates - 1),
                       starts=starts.starts)
    if len(jobs) == 1:
        loaded, hole, degradation = _read_restore_input(jobs[0], scale, sizes[0], named=False)
        result = restore_any_size(generator, loaded.pixels, degradation, model_config,
                                  optimizer_config, args.seed, args.fit, args.device, perceptual,
                                  print_progress(args.log_every), starts=starts)
        _write_restoration(jobs[0], loaded, hole, result, scale, result_sizes[0], named=False)
        return
    device, groups = _groups_that_fit(args, generator, model_config, optimizer_config, perceptual,
                                      len(jobs), largest, RESTORE_COMMAND_IMAGE_COPIES)
    for group in groups:
        inputs = [_read_restore_input(jobs[index], scale, sizes[index], named=True)
                  for index in group]
        results = restore_batch_any_size(
            generator, [loaded.pixels for loaded, _, _ in inputs],
            [degradation for _, _, degradation in inputs], model_config, optimizer_config,
            [jobs[index].seed for index in group], args.fit, device, perceptual,
            callbacks=[print_progress(args.log_every, f"{Path(jobs[index].image).name}: ")
                       for index in group],
            vectorize=args.vectorize, image_copies=RESTORE_COMMAND_IMAGE_COPIES)
        for index, (loaded, hole, _), result in zip(group, inputs, results):
            _write_restoration(jobs[index], loaded, hole, result, scale, result_sizes[index],
                               named=True)


def _read_restore_input(job: argparse.Namespace, scale: int, size: tuple[int, int], named: bool):
    """(the image as read, its hole on the input's grid, the degradation to restore it through),
    its notes printed (after the image's name where several run)."""
    loaded = imaging.read_image(job.image)
    hole, notes = _hole_and_input_notes(job, loaded)
    if tuple(hole.shape) != tuple(size):
        notes.append(f"--mask is {hole.shape[1]}x{hole.shape[0]}: resized to the input's "
                     f"{size[1]}x{size[0]} grid (a hole grows rather than shrinks)")
        hole = imaging.resize_mask(hole, size)
    has_hole = bool(imaging.hole_pixels(hole).any())
    if scale > 1 and loaded.transparent_pixels:
        notes.append(f"--scale {scale}: the output is RGB; the input's alpha is not upscaled")
    for note in notes:
        print(f"note: {Path(job.image).name + ': ' if named else ''}{note}", flush=True)
    degradation = restoration_chain(gray=job.gray, scale=scale,
                                    downsampler=job.downsampler if scale > 1 else None,
                                    hole_mask=hole if has_hole else None)
    return loaded, hole, degradation


def _write_restoration(job: argparse.Namespace, loaded, hole: torch.Tensor, result, scale: int,
                       result_size: tuple[int, int], named: bool) -> None:
    """Every candidate of one image's result at --out (and --raw-out), each with its line."""
    prefix = f"{Path(job.image).name}: " if named else ""
    for note in result.notes:
        print(f"note: {prefix}{note}")
    alpha = _output_alpha(loaded, hole) if scale == 1 else None
    bits = 16 if loaded.bits > 8 else 8
    for rank, candidate in enumerate(result.candidates(), start=1):
        out = job.out if rank == 1 else candidate_path(job.out, rank)
        for note in [*(_bit_depth_notes(loaded, out) if rank == 1 else []),
                     *imaging.save_image(candidate.restored, out, alpha=alpha, bits=bits)]:
            print(f"note: {prefix}{note}")
        fit = (f"{candidate.describe_stop()}, final loss {candidate.loss_history[-1]:.5f}"
               if candidate.loss_history else "no steps: nothing was known")
        choice = candidate.describe_choice()
        report = candidate.projection
        consistency = ("consistent with the input" if report.consistent else
                       "NOT consistent with the input (see the notes)")
        print(f"wrote {out} ({result_size[1]}x{result_size[0]}, {candidate.seconds:.1f} s, preset "
              f"{job.preset}, {choice + ', ' if choice else ''}{fit}; {consistency}: max error "
              f"{report.max_error * 255:.3g} grey levels)")
        if job.raw_out:
            raw = job.raw_out if rank == 1 else candidate_path(job.raw_out, rank)
            imaging.save_image(candidate.output, raw,
                               bits=bits if Path(raw).suffix.lower() == ".png" else 8)
            print(f"wrote {raw} (the generator's whole image, not projected onto the input)")


def _scale(text: str) -> int:
    """--scale: a positive integer factor."""
    try:
        scale = int(str(text).strip())
    except ValueError:
        scale = None
    if scale is None or scale < 1:
        raise CommandError(f"--scale must be a positive integer factor (1, 2, 3, 4, 8, ...), got {text!r}")
    return scale


def _inpaint_configs(args: argparse.Namespace, generator_config):
    """The preset's model and optimiser configs with every option that was given applied."""
    model_config, optimizer_config = preset(args.preset, generator_config)
    # Every OptimizerConfig field the command has an option for, where the option was given.
    overrides = {name: value for name, value in given_fields(OptimizerConfig, args).items()
                 if value is not None}
    overrides["freeze_g1_at"] = args.freeze_g1_at  # None is a value here: never freeze
    if args.compile is not None:
        overrides["compile"] = parse_compile_setting(args.compile)
    optimizer_config = replace(optimizer_config, preview_every=args.log_every, **overrides)
    if args.codes is not None or args.split is not None:
        model_config = replace(model_config,
                               num_codes=args.codes if args.codes is not None else model_config.num_codes,
                               split_layer=args.split if args.split is not None else model_config.split_layer)
    stylegan2 = {name: value for name, value in given_fields(StyleGAN2Options, args).items()
                 if value is not None}
    if stylegan2:
        model_config = replace(model_config, stylegan2=replace(model_config.stylegan2, **stylegan2))
        model_config.validate(generator_config)
    return model_config, optimizer_config


def _metrics_command(args: argparse.Namespace) -> None:
    loaded = {path: imaging.read_image(path) for path in (args.image, args.reference)}
    image, reference = loaded[args.image].pixels, loaded[args.reference].pixels
    for path, read in loaded.items():
        for note in read.notes:
            print(f"note: {note}")
        if read.transparent_pixels:
            print(f"note: {Path(path).name} has {read.transparent_pixels} transparent or partly "
                  "transparent pixels: they are scored by their stored colour (alpha is not compared)")
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


# ---------------------------------------------------------------------------------------------
# What commands share; the research tools' modules use these too

def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")


def _freeze_step(text: str) -> int | None:
    if text.strip().lower() == "never":
        return None
    try:
        return check_count(int(text), "--freeze-g1-at", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of steps (at least 1) or 'never', "
                                         f"got {text!r}") from None


def add_freeze_option(parser: argparse.ArgumentParser) -> None:
    default = OptimizerConfig().freeze_g1_at
    parser.add_argument("--freeze-g1-at", type=_freeze_step, default=default, metavar="STEPS|never",
                        help="in runs that fine-tune the whole generator (paper), freeze the codes "
                             "and G1 after this many steps and reuse their features, so later steps "
                             "run only the fusion, G2 and the loss; 'never' runs G1 at every step, "
                             f"the paper's computation (default {default})")


def add_starts_options(parser: argparse.ArgumentParser) -> None:
    default = StartsConfig()
    parser.add_argument("--starts", type=int, default=default.starts,
                        help="independent starts of the optimisation (their own seeds, derived from "
                             "--seed); after --choose-at steps they are compared by how well their "
                             "fills of the hole agree and the best continue "
                             f"(docs/trustworthy_fill.md) (default {default.starts})")
    parser.add_argument("--choose-at", dest="choose_at", type=int, default=default.choose_at,
                        help=f"steps every start runs before the comparison (default {default.choose_at})")
    parser.add_argument("--candidates", type=int, default=default.candidates,
                        help="fills written, the best first: --out, then OUT_candidate2, ... each "
                             f"with its seed and agreement (default {default.candidates})")
    parser.add_argument("--vectorize", choices=VECTORIZE_CHOICES, default=default.vectorize,
                        help="how several starts of an image (and several images) are stepped "
                             "together: vmap, side by side in one vectorised fp32 pass (what a GPU "
                             "needs; equal to one after another up to float rounding), loop, one "
                             "after another (exact, what a CPU runs fastest), or auto: vmap on "
                             f"CUDA, else loop (default {default.vectorize})")


def print_progress(every: int, prefix: str = ""):
    """A progress callback printing the loss every `every` steps and at the last one, each line
    after `prefix`."""
    def report(progress: Progress) -> None:
        if progress.stopped_early:
            return  # the command's own summary line says where and why it stopped
        if progress.loss is not None and (progress.step % every == 0 or progress.step == progress.total):
            start = "" if progress.starts == 1 else f"start {progress.start + 1}/{progress.starts}  "
            print(f"{prefix}{start}step {progress.step}/{progress.total}  loss {progress.loss:.5f}", flush=True)
    return report


# Option types for comma-separated lists. argparse names the type in its refusal ("invalid
# numbers value: '1,x'"), so they keep these short names.
def names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def numbers(text: str) -> tuple[int, ...]:
    return tuple(int(item) for item in names(text))


def given_fields(config_class, args: argparse.Namespace) -> dict:
    """The parsed options named like fields of the dataclass `config_class`."""
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)
            if hasattr(args, field.name)}


def config_from_args(config_class, args: argparse.Namespace, **values):
    """A config dataclass from the parsed options of the same names, then `values` (options
    named otherwise, or derived)."""
    return config_class(**{**given_fields(config_class, args), **values})


# ---------------------------------------------------------------------------------------------
# The product commands' options

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
    add_device_option(gen)
    gen.set_defaults(run=_generate_command)


def _add_inpaint_command(commands) -> None:
    """`inpaint`: fill the hole of one image (or reconstruct it)."""
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
    inp.add_argument("--image", required=True, action="append",
                     help="the image to fill (PNG, JPEG, ...); give it several times (each with "
                          "its own --out) to optimise several images together, image i with "
                          "seed + i: each result is what that image alone with its seed gives. "
                          f"A folder: every visible file in it named {', '.join(imaging.IMAGE_SUFFIXES)}, "
                          "sorted by name, as if each were given (a note names what is skipped); "
                          "--out (and --raw-out) is then a folder, made if missing, where each "
                          "result takes its image's name")
    inp.add_argument("--mask", action="append",
                     help="mask image, white = hole; omit to fill the image's transparent "
                          "pixels (as ComfyUI's Load Image reads them; a note says so) or, "
                          "for an opaque image, to reconstruct the whole image; with several "
                          "--image, one for all or one per image; with an --image folder, one "
                          "for all or a folder holding each image's mask under the image's name "
                          "(or that name with another image extension)")
    inp.add_argument("--out", required=True, action="append",
                     help="the composite at the input's size; a .png keeps a "
                          "16-bit input's depth and its alpha (filled pixels "
                          "opaque); other formats say what they drop; one per --image, or a "
                          "folder (not the input's) for an --image folder")
    inp.add_argument("--raw-out", action="append",
                     help="also write the generator's whole image (at the input's size, "
                          "not composited); one per --image, or a folder for an --image folder")
    _add_run_options(inp)
    inp.set_defaults(run=_inpaint_command)


def _add_run_options(inp: argparse.ArgumentParser) -> None:
    """The options of a run of the method that inpaint and restore share (preset ... device)."""
    defaults = OptimizerConfig()
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
    add_freeze_option(inp)
    add_starts_options(inp)
    inp.add_argument("--fit", choices=imaging.FIT_MODES, default="resize",
                     help="how a non-square or differently sized image meets the generator: "
                          "resize (stretch) or pad (keep the aspect) (default resize)")
    inp.add_argument("--log-every", type=int, default=100,
                     help="print the loss every this many steps (default 100)")
    add_device_option(inp)


def _add_restore_command(commands) -> None:
    """`restore`: super-resolution, colorization and holes, alone or together."""
    res = commands.add_parser(
        "restore", help="super-resolve, colourise and/or fill an image with the GAN prior",
        description="Restore an image of any size: --scale F super-resolves it F times (the input "
                    "is the low-resolution image, made with --downsampler), --gray colourises it "
                    "(a colour input is read as its luma), --mask fills a hole (white = hole, on "
                    "the input's grid); any of them together, in one run. The result is "
                    "consistent with the input: degrading it as said gives the input back (area "
                    "exactly, bilinear / bicubic to half a grey level where reachable: a note "
                    "says where not). Stops by itself as inpaint does (--stop auto).")
    res.add_argument("--checkpoint", required=True,
                     help="the prior: any supported PGGAN or StyleGAN2 checkpoint (.pth, .pkl, "
                          ".safetensors)")
    res.add_argument("--image", required=True, action="append",
                     help="the image to restore (PNG, JPEG, ...); several --image (each with its "
                          "own --out), or a folder (its image files by name, --out a folder), are "
                          "optimised together as inpaint's, image i with seed + i")
    res.add_argument("--mask", action="append",
                     help="mask image on the input's grid, white = hole; without it a "
                          "transparent input's transparent pixels are the hole (a note says so); "
                          "with several --image one for all or one each, with a folder one for "
                          "all or a folder of masks named as the images")
    res.add_argument("--scale", default="1", metavar="F",
                     help="super-resolution factor, a positive integer: the result is F times the "
                          "input on each side (default 1: none)")
    res.add_argument("--downsampler", choices=DOWNSAMPLERS, default="area",
                     help="how the low-resolution input was made from the image: area (the mean "
                          "of F x F blocks), bilinear or bicubic (antialiased, as PIL makes "
                          "thumbnails); consistency is with this one (default area)")
    res.add_argument("--gray", action="store_true",
                     help="colourise: the input is gray (a colour input is read as its BT.601 "
                          "luma, with a note); the result keeps that luma exactly")
    res.add_argument("--out", required=True, action="append",
                     help="the result, F times the input's size; a .png keeps a 16-bit input's "
                          "depth; one per --image, or a folder for an --image folder")
    res.add_argument("--raw-out", action="append",
                     help="also write the generator's whole image at the result's size (not "
                          "projected onto the input); one per --image, or a folder")
    _add_run_options(res)
    res.set_defaults(run=_restore_command)


def _add_metrics_command(commands) -> None:
    """`metrics`: PSNR and SSIM of an image against a reference."""
    met = commands.add_parser("metrics", help="PSNR and SSIM of an image against a reference")
    met.add_argument("image", help="the image to score")
    met.add_argument("reference", help="the ground truth, same size")
    met.add_argument("--mask", help="also score inside this hole mask (white = hole)")
    met.set_defaults(run=_metrics_command)


def _add_convert_command(commands) -> None:
    """`convert`: any supported checkpoint to this project's .safetensors."""
    conv = commands.add_parser("convert", help="convert any supported checkpoint to .safetensors")
    conv.add_argument("source", help="any supported checkpoint (.pth, .pkl, .safetensors)")
    conv.add_argument("destination", help="the .safetensors file to write")
    conv.set_defaults(run=_convert_command)


PRODUCT_COMMANDS = (_add_generate_command, _add_inpaint_command, _add_restore_command,
                    _add_metrics_command,
                    _add_convert_command)


# ---------------------------------------------------------------------------------------------
# The parser, the checks every command shares, and running a command

def build_parser(declared_tools: Collection[str] = tuple(RESEARCH_TOOLS)) -> argparse.ArgumentParser:
    """Every command. The research tools in `declared_tools` come with their options (their
    modules are imported); the others are listed by name and help only."""
    parser = argparse.ArgumentParser(prog="python -m ganprior_core", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in PRODUCT_COMMANDS:
        add_command(commands)
    for name, (module_name, help_text) in RESEARCH_TOOLS.items():
        tool_parser = commands.add_parser(name, help=help_text)
        if name in declared_tools:
            tool = importlib.import_module(f"{__package__}.lab.{module_name}")
            tool.add_arguments(tool_parser)
            tool_parser.set_defaults(run=tool.run_command)
    return parser


def chosen_tools(argv: Sequence) -> tuple[str, ...]:
    """The research tool `argv` runs, if any. The top level takes no option but --help, so the
    first word that is not an option is the command."""
    command = next((str(word) for word in argv if not str(word).startswith("-")), None)
    return (command,) if command in RESEARCH_TOOLS else ()


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


def main(argv: Sequence | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    with _printing_that_cannot_fail():
        args = build_parser(chosen_tools(argv)).parse_args(argv)
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
        try:
            return _run(args)
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _printing_that_cannot_fail() -> Iterator[None]:
    """Printing must not fail a run that succeeded: on a console or pipe in a legacy encoding
    (cp1252 on Windows with the output redirected), a character it cannot show (a non-Latin
    --out name) is printed as a backslash escape instead of raising once the work is done."""
    streams = [(stream, stream.errors) for stream in (sys.stdout, sys.stderr)
               if isinstance(stream, io.TextIOWrapper)]
    for stream, _ in streams:
        stream.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        for stream, errors in streams:
            stream.reconfigure(errors=errors)


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
