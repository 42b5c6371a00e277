"""genforce / mGANprior PGGAN files (ganprior_core/checkpoints/genforce.py): state dicts and the
model zoo's .pth in every layout, against tests/pggan_reference.py's genforce forward passes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from ganprior_core.checkpoints import (
    load_checkpoint,
    load_generator,
)
from ganprior_core.cli import main as cli_main
from tests.checkpoint_builders import (
    SMALL,
    SMALL_FUSED,
    genforce_state_dict,
    genforce_zoo_state_dict,
)
from tests.pggan_reference import (
    assert_matches,
    generate,
    genforce_reference,
    genforce_zoo_reference,
    latents,
)


@pytest.mark.parametrize("arch", [SMALL, SMALL_FUSED], ids=["separate", "fused_scale"])
def test_genforce_state_dict_matches_genforce_forward(tmp_path, arch):
    state = genforce_state_dict(arch, np.random.default_rng(1))
    path = tmp_path / "pggan_test_generator.pth"
    torch.save(state, path)
    generator = load_generator(path)
    assert generator.config.resolution == arch.resolution
    assert generator.config.channels == arch.channels
    assert generator.config.fused_scale == arch.fused
    z = latents(arch)
    assert_matches(generator, genforce_reference(state, z), z)


def _zoo_layout(layout: str, smooth: dict, raw: dict) -> tuple[object, dict, str]:
    """(what torch.save writes, the weights the loader must use, the network it must name)."""
    if layout == "wrapped_both":
        return {"generator": raw, "generator_smooth": smooth}, smooth, "generator_smooth"
    if layout == "wrapped_generator_only":
        return {"generator": raw}, raw, "generator"
    return smooth, smooth, "bare state dict"


@pytest.mark.parametrize("arch", [SMALL, SMALL_FUSED], ids=["separate", "fused_scale"])
@pytest.mark.parametrize("layout", ["wrapped_both", "wrapped_generator_only", "bare"])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy_torch_format"])
def test_genforce_zoo_file_matches_genforce_forward(tmp_path, arch, layout, legacy):
    rng = np.random.default_rng(21)
    smooth, raw = genforce_zoo_state_dict(arch, rng), genforce_zoo_state_dict(arch, rng)
    content, used, network = _zoo_layout(layout, smooth, raw)
    path = tmp_path / "pggan_test16.pth"
    torch.save(content, path, _use_new_zipfile_serialization=not legacy)
    loaded = load_checkpoint(path)
    assert (loaded.source_format, loaded.source_network) == ("genforce-zoo-pth", network)
    config = loaded.generator.config
    assert (config.resolution, config.channels, config.latent_dim, config.fused_scale) == (
        arch.resolution, arch.channels, arch.latent, arch.fused)
    z = latents(arch)
    assert_matches(loaded.generator, genforce_zoo_reference(used, z, arch.fused), z)
    if layout == "wrapped_both":  # guards the test: the two generators give different images
        assert np.abs(genforce_zoo_reference(raw, z, arch.fused)
                      - genforce_zoo_reference(smooth, z, arch.fused)).max() > 1e-2


def test_genforce_zoo_cli_convert_round_trip_keeps_images_and_source(tmp_path):
    rng = np.random.default_rng(22)
    source = tmp_path / "pggan_test32.pth"
    torch.save({"generator": genforce_zoo_state_dict(SMALL_FUSED, rng),
                "generator_smooth": genforce_zoo_state_dict(SMALL_FUSED, rng)}, source)
    destination = tmp_path / "pggan_test32.safetensors"
    assert cli_main(["convert", str(source), str(destination)]) == 0
    z = latents(SMALL_FUSED)
    assert np.array_equal(generate(load_generator(destination), z),
                          generate(load_generator(source), z))
    with safe_open(str(destination), framework="pt") as file:
        header = json.loads(file.metadata()["ganprior"])
    assert (header["source_format"], header["source_network"]) == ("genforce-zoo-pth",
                                                                   "generator_smooth")
    loaded = load_checkpoint(destination)
    assert (loaded.source_format, loaded.source_network) == ("genforce-zoo-pth",
                                                             "generator_smooth")
