"""stylegan2-ada-pytorch / stylegan3-repository network pickles
(ganprior_core/checkpoints/nvidia_stylegan2.py), against tests/stylegan2_reference.py run on the
NVIDIA-named state dict each file was built from."""
from __future__ import annotations

import pickle

import pytest
import torch

from ganprior_core.checkpoints import (
    NVIDIA_SG2ADA,
    load_checkpoint,
    load_generator,
)
from ganprior_core.networks.stylegan2 import StyleGAN2Generator
from tests.stylegan2_builders import (
    KWARGS,
    NUMPY_1,
    NUMPY_2,
    SMALL_CONFIG,
    TOLERANCE,
    generator_kwargs,
    max_error_nvidia,
    nvidia_state,
    sg2ada_snapshot,
    write,
)


@pytest.mark.parametrize("protocol, numpy_module, layout", [
    (3, NUMPY_1, "snapshot"), (4, NUMPY_2, "snapshot"), (4, NUMPY_1, "legacy"),
    (3, NUMPY_2, "stylegan3-repo")])
def test_sg2ada_pickles_match_the_reference(tmp_path, protocol, numpy_module, layout):
    g_ema, g = nvidia_state(1), nvidia_state(2)
    clamp = 0.5 if layout == "stylegan3-repo" else 256  # 0.5: the clamp acts, and must be read
    kwargs = generator_kwargs(**KWARGS, conv_clamp=clamp, flat=layout == "stylegan3-repo")
    path = write(tmp_path / "network-snapshot.pkl",
                 sg2ada_snapshot(g_ema, g, kwargs, legacy_layout=layout == "legacy"),
                 protocol, numpy_module)
    if protocol == 3:
        assert pickle.STACK_GLOBAL not in {op.code.encode("latin1") for op, _, _ in
                                           __import__("pickletools").genops(path.read_bytes())}
    loaded = load_checkpoint(path)
    assert (loaded.family, loaded.source_format, loaded.source_network) == \
        ("stylegan2", NVIDIA_SG2ADA, "G_ema")
    assert isinstance(loaded.generator, StyleGAN2Generator)
    assert loaded.generator.config.conv_clamp == clamp
    assert loaded.generator.config.channels == (16, 16, 8)
    assert max_error_nvidia(loaded.generator, g_ema, conv_clamp=clamp) <= TOLERANCE
    if clamp < 1:
        assert max_error_nvidia(loaded.generator, g_ema, conv_clamp=None) > 0.1


def test_sg2ada_without_g_ema_uses_g_and_says_so(tmp_path):
    g = nvidia_state(3)
    path = write(tmp_path / "g_only.pkl", sg2ada_snapshot(None, g, generator_kwargs(**KWARGS)))
    loaded = load_checkpoint(path)
    assert loaded.source_network.startswith("G (") and "no G_ema" in loaded.source_network
    assert max_error_nvidia(loaded.generator, g) <= TOLERANCE


def test_channels_last_snapshot_tensors_load_with_their_strides(tmp_path):
    g_ema = nvidia_state(4)
    content = sg2ada_snapshot(g_ema, None, generator_kwargs(**KWARGS), nhwc=True)
    weight = (content["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]
              ["b16"].meta["state"]["_modules"]["conv0"].meta["state"]["_parameters"]["weight"])
    assert not weight.is_contiguous() and weight.stride()[1] == 1  # NHWC: channels innermost
    path = write(tmp_path / "nhwc.pkl", content)
    assert max_error_nvidia(load_generator(path), g_ema) <= TOLERANCE


@pytest.mark.parametrize("protocol, nhwc", [(3, False), (4, True)])
def test_real_torch_modules_reduced_as_persistence_does_load(tmp_path, protocol, nhwc):
    """The module state is torch's own Module __dict__ (all its hook dicts, the
    _non_persistent_buffers_set, Parameters pickled by torch), not a hand-written one."""
    from ganprior_core.networks.stylegan2 import StyleGAN2Config
    from tests.stylegan2_builders import real_module_snapshot
    state = nvidia_state(40)
    generator = StyleGAN2Generator(StyleGAN2Config(**SMALL_CONFIG))
    generator.load_state_dict(state)
    generator.requires_grad_(False)
    if nhwc:
        generator.to(memory_format=torch.channels_last)
        assert not generator.synthesis.b16.conv0.weight.is_contiguous()
    path = tmp_path / "real-modules.pkl"
    path.write_bytes(real_module_snapshot(generator, generator_kwargs(**KWARGS), protocol))
    loaded = load_checkpoint(path)
    assert loaded.source_network == "G_ema"
    assert max_error_nvidia(loaded.generator, state) <= TOLERANCE
