"""What the PGGAN and StyleGAN2 trainers share: the folder a run writes into (its file names, its
lock, the checkpoint reader, resuming), the loop that logs progress, saves sample grids and
checkpoints, and the final save of the moving-average generator.

A trainer (lab.train.Trainer, lab.train_stylegan2.StyleGAN2Trainer) brings its own networks,
losses and schedule; `run_loop` and `train_in_folder` drive any object with the
`SteppingTrainer` protocol below.
"""
from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from .. import imaging
from ..checkpoints import save_generator, torch_file
from ..files import DirectoryLock, remove_stale_temporaries, write_atomically
from ..imaging import save_image
from ..method import compiler_cache
from ..sampling import image_grid

CHECKPOINT_NAME = "checkpoint.pt"
LOCK_NAME = ".train.lock"  # holds the pid of the training process using the folder
FINAL_NAME = "generator.safetensors"
TRAINED_FORMAT = "ganprior-train"
UNNAMED_ARCH = "pggan"  # PGGAN checkpoints from before --arch name no architecture


class SteppingTrainer(Protocol):
    config: Any  # output_dir, resolution, total_images, log_every, sample_every, checkpoint_every
    images_seen: int
    elapsed_seconds: float

    @property
    def finished(self) -> bool: ...
    def train_step(self) -> dict[str, float]: ...
    def describe_phase(self) -> str: ...  # "" where the schedule has no phases
    def samples(self) -> torch.Tensor: ...
    def save_checkpoint(self, path: Path) -> None: ...
    def load_checkpoint(self, path: Path) -> None: ...
    def load_state_dict(self, state: dict) -> None: ...
    def final_generator(self) -> torch.nn.Module: ...
    def training_record(self) -> dict: ...  # what the saved generator's metadata says of the run


def save_sample_grid(images: torch.Tensor, display_size: int, path: Path) -> None:
    """[B, 3, r, r] in [-1, 1] as one grid, 8 per row, each nearest-upscaled to display_size."""
    enlarged = F.interpolate(images.float(), size=display_size, mode="nearest")
    save_image(image_grid(imaging.to_unit_range(enlarged), columns=8, gap=0), path)


def restart_advice(path: Path) -> str:
    return (f"pass --restart to start from scratch (it replaces {path.name}), or choose "
            "another --out")


def read_checkpoint(path: Path, arch: str) -> dict:
    """The state dict in a training checkpoint of architecture `arch`, read without torch.load;
    anything else (damaged, foreign, another trainer's) is one ValueError naming the file."""
    restart = restart_advice(path)
    try:
        # The bounded reader checkpoints use (no torch.load: a hostile file in --out can
        # neither run code nor claim terabytes), format by content.
        data = path.read_bytes()
        if not torch_file.looks_like_torch_file(data[:16]):
            raise ValueError("its first bytes are not a torch file's")
        state = torch_file.read(data)
    except Exception as error:  # truncated, empty, not a torch file, or unsafe to unpickle
        reason = (f"{type(error).__name__}: {str(error).splitlines()[0][:80]}" if str(error)
                  else type(error).__name__)
        raise ValueError(f"{path}: not a readable training checkpoint (corrupt, truncated "
                         f"or another kind of file: {reason}); {restart}") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ValueError(f"{path}: not a checkpoint of this trainer (no training config "
                         f"inside); {restart}")
    saved_arch = state.get("arch", UNNAMED_ARCH)
    if saved_arch != arch:
        raise ValueError(f"{path} is a checkpoint of a {str(saved_arch)[:20]} training run, not "
                         f"a {arch} one: resume it with --arch {str(saved_arch)[:20]}, or "
                         + restart[5:])
    return state


class ScheduleMismatch(ValueError):
    """A checkpoint's position that the resumed run's schedule cannot reach: the message is
    already the whole advice."""


def write_checkpoint(path: Path, state: dict) -> None:
    # Serialised in memory and written by the one atomic writer: a crash, Ctrl-C or a full
    # disk mid-save never leaves a broken checkpoint or a temporary file.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getvalue())


def restore_checkpoint(trainer: SteppingTrainer, path: Path, arch: str,
                       differences: Callable[[dict], list[str]]) -> None:
    """Loads the checkpoint at `path` into `trainer` (its `load_state_dict`). `differences`
    names the settings in which the checkpoint's state differs from the trainer's; any, or a
    state that does not fit, is one ValueError naming the file and what to do."""
    restart = restart_advice(path)
    state = read_checkpoint(path, arch)
    differing = differences(state)
    if differing:
        raise ValueError(f"{path} was trained with other settings ({'; '.join(differing)}): "
                         "resume with the settings it was started with, or " + restart[5:])
    try:
        trainer.load_state_dict(state)
    except ScheduleMismatch:
        raise
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise ValueError(f"{path}: does not fit this trainer ({reason}); {restart}") from None


def _format_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{name} {value:.2e}" if name == "r1" else f"{name} {value:+.3f}"
                    for name, value in losses.items())


def run_loop(trainer: SteppingTrainer, stop_at_images: int | None = None) -> None:
    """Trains until the schedule ends (or `stop_at_images`): a progress line every log_every
    images, a sample grid every sample_every, a checkpoint every checkpoint_every and at the end."""
    c = trainer.config
    output = Path(c.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    checkpoint_path = output / CHECKPOINT_NAME
    window_start, window_images = time.perf_counter(), 0
    last_time = time.perf_counter()
    while not trainer.finished and (stop_at_images is None
                                    or trainer.images_seen < stop_at_images):
        before = trainer.images_seen
        losses = trainer.train_step()
        now = time.perf_counter()
        trainer.elapsed_seconds += now - last_time
        last_time = now
        window_images += trainer.images_seen - before
        if trainer.images_seen // c.log_every != before // c.log_every:
            rate = window_images / max(now - window_start, 1e-9)
            remaining = max(c.total_images - trainer.images_seen, 0)
            fields = [f"kimg {trainer.images_seen / 1000:8.1f}/{c.total_images / 1000:.0f}",
                      trainer.describe_phase(), f"{rate:6.1f} img/s",
                      f"ETA at this rate {remaining / rate / 60:6.1f} min",
                      f"elapsed {trainer.elapsed_seconds / 60:6.1f} min", _format_losses(losses)]
            print(" | ".join(field for field in fields if field), flush=True)
            window_start, window_images = now, 0
        if trainer.images_seen // c.sample_every != before // c.sample_every:
            save_sample_grid(trainer.samples(), c.resolution,
                             output / f"samples_{trainer.images_seen // 1000:06d}kimg.png")
        if trainer.images_seen // c.checkpoint_every != before // c.checkpoint_every:
            trainer.save_checkpoint(checkpoint_path)
    trainer.save_checkpoint(checkpoint_path)


def train_in_folder(config: Any, make_trainer: Callable[[Any], SteppingTrainer],
                    config_record: dict, notes: list[str] | None = None) -> Path:
    """Runs (or resumes) a whole training run in `config.output_dir` under its lock; writes
    `config_record` as train_config.json and finally the moving-average generator as
    FINAL_NAME; returns its path. A run that wrote nothing leaves no folder behind."""
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    notes = list(notes or [])
    compiler_cache.prepare_cache_dir(notes)  # Adam imports torch's compiler stack (see there)
    for note in notes:
        print(f"note: {note}", flush=True)
    trainer = make_trainer(config)
    output = Path(config.output_dir)
    created = not output.exists()
    try:
        output.mkdir(parents=True, exist_ok=True)
        with DirectoryLock(output / LOCK_NAME, "training"):
            # Left by a run killed mid-write (SIGKILL); the lock says no other run writes here.
            remove_stale_temporaries(output)
            return _train_locked(trainer, config, output, config_record)
    except BaseException:
        if created:  # a run that wrote nothing (a full disk, Ctrl-C at once) leaves no folder
            with contextlib.suppress(OSError):
                output.rmdir()
        raise


def _train_locked(trainer: SteppingTrainer, config: Any, output: Path,
                  config_record: dict) -> Path:
    checkpoint_path = output / CHECKPOINT_NAME
    if config.resume and checkpoint_path.exists():
        trainer.load_checkpoint(checkpoint_path)
        print(f"resumed from {checkpoint_path} at kimg {trainer.images_seen / 1000:.1f}",
              flush=True)
    write_atomically(output / "train_config.json", json.dumps(config_record, indent=2))
    run_loop(trainer)
    final_path = output / FINAL_NAME
    save_sample_grid(trainer.samples(), config.resolution, output / "samples_final.png")
    save_generator(trainer.final_generator(), final_path, source_format=TRAINED_FORMAT,
                   extra_metadata={"training": trainer.training_record()})
    print(f"saved {final_path} after {trainer.images_seen} images, "
          f"{trainer.elapsed_seconds / 60:.1f} min", flush=True)
    return final_path
