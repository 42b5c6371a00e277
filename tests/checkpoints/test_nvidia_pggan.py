"""NVIDIA's PGGAN pickles (ganprior_core/checkpoints/nvidia_pggan.py): TensorFlow and Theano /
Lasagne networks, against tests/pggan_reference.py's forward passes written from their definitions."""
from __future__ import annotations

import pickletools

import numpy as np
import pytest

from ganprior_core.checkpoints import (
    load_checkpoint,
    load_generator,
)
from tests.checkpoint_builders import (
    NUMPY_1,
    NUMPY_2,
    SMALL,
    SMALL_FUSED,
    PickledNetwork,
    nvidia_pickle,
    tf_discriminator_variables,
    tf_network_state,
    tf_variables,
    theano_network_state,
    theano_param_values,
    write_pickle,
)
from tests.pggan_reference import (
    assert_matches,
    generate,
    latents,
    tf_reference,
    theano_reference,
)


def test_numpy2_protocol5_pickle_with_in_band_buffers_matches_tf_forward(tmp_path):
    variables = tf_variables(SMALL, np.random.default_rng(23))
    path = nvidia_pickle(tmp_path / "resaved-under-numpy2.pkl", tf_network_state(variables),
                         numpy_module=NUMPY_2, protocol=5)
    data = path.read_bytes()
    opcodes = {opcode.name for opcode, _, _ in pickletools.genops(data)}
    assert data[:2] == b"\x80\x05" and "BYTEARRAY8" in opcodes  # numpy 2's in-band PickleBuffer
    assert b"numpy._core.numeric" in data and b"_frombuffer" in data
    loaded = load_checkpoint(path)
    assert (loaded.source_format, loaded.source_network) == ("nvidia-tf-pkl", "Gs")
    z = latents(SMALL)
    assert_matches(loaded.generator, tf_reference(variables, z), z)


@pytest.mark.parametrize("arch,use_wscale,numpy_module", [
    (SMALL, True, NUMPY_1), (SMALL_FUSED, True, NUMPY_1), (SMALL, False, NUMPY_1),
    (SMALL, True, NUMPY_2)], ids=["separate", "fused_scale", "no_wscale", "numpy2_names"])
def test_nvidia_tf_pickle_matches_tf_forward(tmp_path, arch, use_wscale, numpy_module):
    variables = tf_variables(arch, np.random.default_rng(2))
    state = tf_network_state(variables, static_kwargs={
        "num_channels": 3, "resolution": arch.resolution, "label_size": 0,
        "fused_scale": arch.fused, "use_wscale": use_wscale})
    path = nvidia_pickle(tmp_path / "karras2018iclr-test.pkl", state, numpy_module=numpy_module)
    assert numpy_module.encode() + b"\n_reconstruct" in path.read_bytes()
    generator = load_generator(path)
    assert generator.config.channels == arch.channels
    assert generator.config.latent_dim == arch.latent
    z = latents(arch)
    assert_matches(generator, tf_reference(variables, z, use_wscale), z)


def test_nvidia_tf_pickle_uses_gs_not_g(tmp_path):
    rng = np.random.default_rng(3)
    g_state = tf_network_state(tf_variables(SMALL, rng), name="G")
    gs_variables = tf_variables(SMALL, rng)
    d_state = tf_network_state(tf_discriminator_variables(SMALL, rng), name="D",
                               build_func_name="D_paper")
    path = write_pickle(tmp_path / "net.pkl", (PickledNetwork(g_state), PickledNetwork(d_state),
                                               PickledNetwork(tf_network_state(gs_variables))))
    z = latents(SMALL)
    assert_matches(load_generator(path), tf_reference(gs_variables, z), z)


@pytest.mark.parametrize("use_wscale", [True, False], ids=["wscale", "no_wscale"])
def test_nvidia_theano_python2_pickle_matches_lasagne_forward(tmp_path, use_wscale):
    params = theano_param_values(SMALL, np.random.default_rng(4), use_wscale)
    state = theano_network_state(SMALL, params, use_wscale)
    path = nvidia_pickle(tmp_path / "karras2018iclr-theano.pkl", state, network_module="network",
                         python2=True)
    opcodes = {opcode.name for opcode, _, _ in pickletools.genops(path.read_bytes())}
    assert "BINSTRING" in opcodes and "BINBYTES" not in opcodes  # Python 2 str, decoded as latin1
    generator = load_generator(path)
    assert generator.config.channels == SMALL.channels
    z = latents(SMALL)
    assert_matches(generator, theano_reference(params, z, use_wscale), z)


def test_references_are_sensitive_to_kernel_orientation(tmp_path):
    """Guards the tests themselves: a loader that forgot a flip would not pass unnoticed."""
    variables = tf_variables(SMALL, np.random.default_rng(5))
    path = nvidia_pickle(tmp_path / "net.pkl", tf_network_state(variables))
    z = latents(SMALL)
    for name in ("4x4/Dense/weight", "8x8/Conv0/weight"):
        wrong = dict(variables)
        wrong[name] = (variables[name].reshape(SMALL.latent, -1, 4, 4)[:, :, ::-1, ::-1]
                       .reshape(variables[name].shape) if "Dense" in name
                       else variables[name][::-1, ::-1])
        assert np.abs(generate(load_generator(path), z) - tf_reference(wrong, z)).max() > 1e-2
