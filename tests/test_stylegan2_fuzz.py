"""Property: a damaged StyleGAN2 checkpoint of any layout loads or gives a one-line
CheckpointError, nothing else (the StyleGAN2 sibling of test_checkpoint_fuzz). Derandomised."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from stylegan2_builders import (
    dumps,
    generator_kwargs,
    rosinality_converted,
    rosinality_state,
    rosinality_train_checkpoint,
    sg2ada_snapshot,
    tf_generator,
    tf_pickle,
)
from stylegan2_reference import random_state
from test_checkpoint_fuzz import assert_mutations_load_or_refuse

from ganprior_core.checkpoints import convert_checkpoint, load_generator

EXAMPLES_PER_FORMAT = 40
SECONDS_PER_LOAD = 10


def _valid_files(directory: Path) -> dict[str, Path]:
    # 8x8, 4 channels, z = w = 4, one mapping layer: small files, many mutations per second.
    state = random_state(8, [4, 4], 4, 4, 1, seed=0)
    kwargs = generator_kwargs(resolution=8, channel_base=32, channel_max=4, z_dim=4, w_dim=4,
                              mapping_layers=1)
    paths = {"sg2ada_p4.pkl": directory / "sg2ada_p4.pkl",
             "sg2ada_p3.pkl": directory / "sg2ada_p3.pkl"}
    paths["sg2ada_p4.pkl"].write_bytes(dumps(sg2ada_snapshot(state, None, kwargs), 4))
    paths["sg2ada_p3.pkl"].write_bytes(dumps(sg2ada_snapshot(state, None, kwargs, nhwc=True), 3))
    paths["tf.pkl"] = tf_pickle(directory / "tf.pkl", tf_generator(state, 8))
    ros = rosinality_state(8, [4, 4], 4, 1, seed=1)
    paths["rosinality.pt"] = rosinality_converted(directory / "rosinality.pt", ros,
                                                  torch.zeros(4))
    paths["rosinality_train.pt"] = rosinality_train_checkpoint(
        directory / "rosinality_train.pt", ros, ros, 8, 1, 4)
    paths["stylegan2.safetensors"] = directory / "stylegan2.safetensors"
    convert_checkpoint(paths["rosinality.pt"], paths["stylegan2.safetensors"])
    return paths


_WORK = Path(tempfile.mkdtemp(prefix="ganprior-sg2-fuzz-"))
atexit.register(shutil.rmtree, _WORK, ignore_errors=True)
VALID = {name: path.read_bytes() for name, path in _valid_files(_WORK).items()}


def test_the_seeds_load():
    for name in VALID:
        assert load_generator(_WORK / name).config.resolution == 8


@pytest.mark.parametrize("name", list(VALID))
def test_mutated_stylegan2_files_load_or_raise_checkpoint_error(name):
    assert_mutations_load_or_refuse(VALID[name], _WORK / f"mutated_{name}", EXAMPLES_PER_FORMAT,
                                    SECONDS_PER_LOAD)
