"""This project's .safetensors (ganprior_core/checkpoints/project_file.py): what convert and
save_generator write for every family, read back exactly, and a header whose types are exact."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from ganprior_core.checkpoints import (
    GANPRIOR_SG2,
    ROSINALITY,
    convert_checkpoint,
    load_checkpoint,
    load_generator,
    save_generator,
)
from ganprior_core.cli import main as cli_main
from ganprior_core.families import family_of
from tests.checkpoint_builders import SMALL_FUSED, nvidia_pickle, tf_network_state
from tests.checkpoint_builders import load_refused as refused
from tests.checkpoint_builders import tf_variables as pggan_tf_variables
from tests.pggan_reference import generate, latents
from tests.stylegan2_builders import (
    KWARGS,
    MAPPING,
    W,
    Z,
    generator_kwargs,
    nvidia_state,
    rosinality_converted,
    rosinality_state,
    rosinality_train_checkpoint,
    sg2ada_snapshot,
    tf_generator,
    tf_pickle,
    write,
)


def test_a_converted_pggan_file_loads_to_identical_images(tmp_path):
    variables = pggan_tf_variables(SMALL_FUSED, np.random.default_rng(9))
    source = nvidia_pickle(tmp_path / "nvidia.pkl", tf_network_state(variables))
    destination = tmp_path / "nvidia.safetensors"
    convert_checkpoint(source, destination)
    z = latents(SMALL_FUSED)
    assert np.array_equal(generate(load_generator(destination), z),
                          generate(load_generator(source), z))
    with safe_open(str(destination), framework="pt") as file:
        header = json.loads(file.metadata()["ganprior"])
    assert header["format"] == "ganprior-pggan" and header["version"] == 1
    assert header["source_format"] == "nvidia-tf-pkl"
    assert header["config"] == {"resolution": 32, "channels": [12, 10, 8, 6], "latent_dim": 8,
                                "fused_scale": True}


def test_save_generator_round_trip_keeps_weights_and_extra_metadata(tmp_path, tiny_prior):
    path = tmp_path / "tuned.safetensors"
    save_generator(tiny_prior, path, source_format="ganprior-finetune",
                   extra_metadata={"note": "fine-tuned", "format": "overridden?"})
    loaded = load_generator(path)
    assert loaded.config == tiny_prior.config
    for name, tensor in tiny_prior.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    with safe_open(str(path), framework="pt") as file:
        header = json.loads(file.metadata()["ganprior"])
    assert header["note"] == "fine-tuned" and header["format"] == f"ganprior-{family_of(tiny_prior).name}"
    assert header["source_format"] == "ganprior-finetune"
    assert not list(tmp_path.glob("*.partial"))


def _all_layouts(directory: Path) -> dict[str, Path]:
    return {
        "sg2ada": write(directory / "snapshot.pkl", sg2ada_snapshot(
            nvidia_state(20), nvidia_state(21), generator_kwargs(**KWARGS, conv_clamp=256))),
        "tf": tf_pickle(directory / "tf.pkl", tf_generator(nvidia_state(22, resolution=32), 32)),
        "rosinality": rosinality_converted(directory / "ros.pt", rosinality_state(
            16, [16, 8, 8], W, MAPPING, seed=23), torch.zeros(W)),
        "rosinality_train": rosinality_train_checkpoint(
            directory / "ros_train.pt", rosinality_state(16, [8, 8, 8], W, MAPPING, seed=24),
            rosinality_state(16, [8, 8, 8], W, MAPPING, seed=25), 16, MAPPING, W),
    }


def test_every_stylegan2_layout_converts_to_identical_outputs(tmp_path):
    z = torch.randn(2, Z, generator=torch.Generator().manual_seed(3))
    for name, source in _all_layouts(tmp_path).items():
        destination = tmp_path / f"{name}.safetensors"
        if name == "tf":
            assert cli_main(["convert", str(source), str(destination)]) in (0, None)
        else:
            convert_checkpoint(source, destination)
        original, converted = load_checkpoint(source), load_checkpoint(destination)
        assert converted.family == "stylegan2"
        assert converted.source_format == original.source_format
        assert converted.source_network == original.source_network
        assert converted.generator.config == original.generator.config
        with torch.no_grad():
            for psi in (1.0, 0.7):
                for mode in ("const", "none"):
                    assert torch.equal(original.generator(z, psi, noise_mode=mode),
                                       converted.generator(z, psi, noise_mode=mode)), name


def _with_header(path: Path, destination: Path, change) -> Path:
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    project = json.loads(header["__metadata__"]["ganprior"])
    change(project)
    header["__metadata__"]["ganprior"] = json.dumps(project)
    raw = json.dumps(header).encode()
    destination.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + length:])
    return destination


def test_stylegan2_safetensors_header_types_are_exact(tmp_path):
    source = _all_layouts(tmp_path)["rosinality"]
    good = tmp_path / "good.safetensors"
    convert_checkpoint(source, good)
    header = json.loads(good.read_bytes()[8:8 + int.from_bytes(good.read_bytes()[:8], "little")])
    project = json.loads(header["__metadata__"]["ganprior"])
    assert project["format"] == GANPRIOR_SG2 and project["version"] == 1
    assert project["source_format"] == ROSINALITY
    cases = {
        "resolution_float": (lambda p: p["config"].update(resolution=16.0), "wrong type"),
        "channels_text": (lambda p: p["config"].update(channels=["16", 8, 8]), "wrong type"),
        "bool_z": (lambda p: p["config"].update(z_dim=True), "wrong type"),
        "int_lr": (lambda p: p["config"].update(mapping_lr_multiplier=1), "wrong type"),
        "unknown_field": (lambda p: p["config"].update(fused=True), "unknown fields"),
        "wrong_channels": (lambda p: p["config"].update(channels=[16, 8, 4]), "has shape"),
        "huge": (lambda p: p["config"].update(channels=[4096] * 3, z_dim=8192), "parameters"),
        "version": (lambda p: p.update(version=2), "version"),
    }
    for name, (change, fragment) in cases.items():
        refused(_with_header(good, tmp_path / f"{name}.safetensors", change), fragment)


def test_pggan_files_still_load_as_the_pggan_family(tmp_path):
    from ganprior_core.checkpoints import GANPRIOR, save_generator
    from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
    path = tmp_path / "pggan.safetensors"
    save_generator(PGGANGenerator(PGGANConfig(8, (8, 8), 8)), path)
    loaded = load_checkpoint(path)
    assert (loaded.family, loaded.source_format) == ("pggan", GANPRIOR)
    assert isinstance(loaded.generator, PGGANGenerator)
