"""load_generator against forward passes written here from each format's own definition.

The references work on the file's own arrays and layouts (TF: NHWC with [kh, kw, in, out] kernels;
Theano/Lasagne: true convolutions with the stored scale; genforce: its pre-normalising blocks) and
never use ganprior_core.networks.pggan, so a wrong transpose, flip or scale in the loader shows up as a
different image.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import pickletools
import sys
import types
from collections import deque

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from checkpoint_builders import (
    NUMPY_1,
    NUMPY_2,
    Arch,
    PickledNetwork,
    genforce_state_dict,
    genforce_zoo_state_dict,
    nvidia_pickle,
    tf_discriminator_variables,
    tf_network_state,
    tf_variables,
    theano_network_state,
    theano_param_values,
    write_pickle,
)
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from ganprior_core.checkpoints import (
    ACCEPTED_FORMATS,
    CHECKPOINT_EXTENSIONS,
    CheckpointError,
    convert_checkpoint,
    load_checkpoint,
    load_generator,
    save_generator,
)
from ganprior_core.cli import main as cli_main

# float32 against a float64 reference, relative to the output's scale: the network's outputs reach
# ~6 and the last rounding bits depend on the CPU's convolution kernels (AVX2 vs AVX-512).
TOLERANCE = 1e-5
SQRT2 = math.sqrt(2)
SMALL = Arch()
SMALL_FUSED = Arch(resolution=32, channels=(12, 10, 8, 6), latent=8, fused=True)


def latents(arch: Arch, batch: int = 3, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, arch.latent)).astype(np.float32)


def generate(generator, z: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return generator(torch.from_numpy(z)).double().numpy()


def assert_matches(generator, reference: np.ndarray, z: np.ndarray) -> None:
    image = generate(generator, z)
    assert image.shape == reference.shape
    assert np.abs(image - reference).max() <= TOLERANCE * max(1.0, np.abs(reference).max())


def leaky_relu(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, 0.2 * x)


# ---------------------------------------------------------------------------------------------
# Reference: NVIDIA TensorFlow G_paper (networks.py), NHWC with TF kernels

def _pixel_norm_last_axis(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True) + 1e-8)


def _tf_conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """tf.nn.conv2d, SAME padding: out[y, x] = sum_ij in[y + i - p, x + j - p] * kernel[i, j]."""
    size = kernel.shape[0]
    pad = size // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    height, width = x.shape[1:3]
    return sum(np.einsum("bhwc,co->bhwo", padded[:, i:i + height, j:j + width], kernel[i, j])
               for i in range(size) for j in range(size))


def _tf_upscale_conv_transpose(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """upscale2d_conv2d: 3x3 kernel [k, k, out, in] -> 4x4 sum of shifts, then conv2d_transpose
    with stride 2 and SAME padding (1 before), i.e. out[2y + i - 1] += in[y] * kernel4[i]."""
    padded = np.pad(kernel, ((1, 1), (1, 1), (0, 0), (0, 0)))
    kernel4 = padded[1:, 1:] + padded[:-1, 1:] + padded[1:, :-1] + padded[:-1, :-1]
    batch, height, width, _ = x.shape
    out = np.zeros((batch, 2 * height + 2, 2 * width + 2, kernel.shape[2]))
    for i in range(4):
        for j in range(4):
            out[:, i:i + 2 * height:2, j:j + 2 * width:2] += np.einsum(
                "bhwc,oc->bhwo", x, kernel4[i, j])
    return out[:, 1:2 * height + 1, 1:2 * width + 1]


def tf_reference(variables: dict, z: np.ndarray, use_wscale: bool = True) -> np.ndarray:
    v = {name: np.asarray(value, np.float64) for name, value in variables.items()}

    def weight(name: str, gain: float, fan_in: int) -> np.ndarray:
        return v[name] * (gain / math.sqrt(fan_in)) if use_wscale else v[name]

    def conv_layer(x: np.ndarray, scope: str) -> np.ndarray:
        w = weight(f"{scope}/weight", SQRT2, int(np.prod(v[f"{scope}/weight"].shape[:-1])))
        return _pixel_norm_last_axis(leaky_relu(_tf_conv_same(x, w) + v[f"{scope}/bias"]))

    x = _pixel_norm_last_axis(z.astype(np.float64))
    dense = weight("4x4/Dense/weight", SQRT2 / 4, z.shape[1])
    x = (x @ dense).reshape(len(z), -1, 4, 4).transpose(0, 2, 3, 1)  # tf.reshape to NCHW
    x = _pixel_norm_last_axis(leaky_relu(x + v["4x4/Dense/bias"]))
    x = conv_layer(x, "4x4/Conv")
    resolution = 8
    while f"{resolution}x{resolution}/Conv1/weight" in v:
        scope = f"{resolution}x{resolution}"
        if f"{scope}/Conv0_up/weight" in v:
            kernel = v[f"{scope}/Conv0_up/weight"]
            kernel = kernel * (SQRT2 / math.sqrt(9 * kernel.shape[3])) if use_wscale else kernel
            x = _tf_upscale_conv_transpose(x, kernel) + v[f"{scope}/Conv0_up/bias"]
            x = _pixel_norm_last_axis(leaky_relu(x))
        else:
            x = conv_layer(x.repeat(2, axis=1).repeat(2, axis=2), f"{scope}/Conv0")
        x = conv_layer(x, f"{scope}/Conv1")
        resolution *= 2
    to_rgb = weight("ToRGB_lod0/weight", 1.0, x.shape[-1])
    image = _tf_conv_same(x, to_rgb) + v["ToRGB_lod0/bias"]
    return image.transpose(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------
# Reference: NVIDIA Theano G_paper (Lasagne layers, WScaleLayer with stored scale)

def _pixel_norm_channels(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + 1e-8)


def _lasagne_conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Conv2DLayer(pad=1), flip_filters=True: a true convolution of NCHW x with [out, in, k, k]."""
    size = kernel.shape[-1]
    pad = size // 2
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    height, width = x.shape[2:]
    return sum(np.einsum("bchw,oc->bohw", padded[:, :, i:i + height, j:j + width],
                         kernel[:, :, size - 1 - i, size - 1 - j])
               for i in range(size) for j in range(size))


def theano_reference(params: list, z: np.ndarray, use_wscale: bool) -> np.ndarray:
    values = deque(np.asarray(p, np.float64) for p in params)

    def wscale(v: np.ndarray) -> np.ndarray:  # WScaleLayer: v * scale + b (scale only with wscale)
        scale = float(values.popleft()) if use_wscale else 1.0
        bias = values.popleft()
        return v * scale + bias.reshape(1, -1, *([1] * (v.ndim - 2)))

    def conv(x: np.ndarray) -> np.ndarray:
        return _pixel_norm_channels(leaky_relu(wscale(_lasagne_conv_same(x, values.popleft()))))

    x = _pixel_norm_channels(z.astype(np.float64))
    dense = values.popleft()  # 4x4 'full' conv of a 1x1 input: out[c,h,w] = sum_k z_k W[c,k,h,w]
    x = _pixel_norm_channels(leaky_relu(wscale(np.einsum("bk,ckhw->bchw", x, dense))))
    x = conv(x)
    while values[0].ndim == 4:  # Conv0 (after 2x nearest upscale) and Conv1 per resolution
        x = conv(conv(x.repeat(2, axis=2).repeat(2, axis=3)))
    return wscale(np.einsum("bchw,cu->buhw", x, values.popleft()))  # NIN toRGB of lod 0


# ---------------------------------------------------------------------------------------------
# Reference: genforce / mGANprior PGGANGeneratorNet (ConvBlock: pixel norm, conv, wscale, act)

def genforce_reference(state: dict, z: np.ndarray) -> np.ndarray:
    w = {name: tensor.double() for name, tensor in state.items()}

    def pixel_norm(x):
        return x / torch.sqrt((x ** 2).mean(dim=1, keepdim=True) + 1e-8)

    x = torch.from_numpy(z).double()
    x = x.view(*x.shape, 1, 1)
    layer = 0
    while f"layer{layer}.wscale.bias" in w:
        x = pixel_norm(x)
        bias = w[f"layer{layer}.wscale.bias"].view(1, -1, 1, 1)
        if f"layer{layer}.weight" in w:  # fused conv transpose, kernel [k, k, in, out]
            kernel = w[f"layer{layer}.weight"]
            scale = SQRT2 / math.sqrt(kernel.shape[2] * 9)
            kernel = F.pad(kernel * scale, (0, 0, 0, 0, 1, 1, 1, 1))
            kernel = kernel[1:, 1:] + kernel[:-1, 1:] + kernel[1:, :-1] + kernel[:-1, :-1]
            x = F.conv_transpose2d(x, kernel.permute(2, 3, 0, 1), stride=2, padding=1) + bias
        else:
            kernel = w[f"layer{layer}.conv.weight"]
            scale = SQRT2 / math.sqrt(kernel[0].numel())
            if layer >= 2 and layer % 2 == 0:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            padding = 3 if layer == 0 else 1
            x = F.conv2d(x, kernel * scale, padding=padding) + bias
        x = F.leaky_relu(x, 0.2)
        layer += 1
    last = layer // 2 - 1
    to_rgb = w[f"output{last}.conv.weight"]
    x = F.conv2d(pixel_norm(x), to_rgb / math.sqrt(to_rgb.shape[1]))
    return (x + w[f"output{last}.wscale.bias"].view(1, -1, 1, 1)).numpy()


# ---------------------------------------------------------------------------------------------
# Reference: genforce/genforce PGGANGenerator (model zoo). Its forward pixel-normalises z, then
# every ConvBlock runs pixel norm -> (nearest upsample) -> conv with weight * wscale -> bias ->
# leaky ReLU; fused up blocks use conv_transpose2d with the 4x4 sum of the padded [in, out, 3, 3]
# kernel's shifts (stride 2, padding 1); output{j} is the same block with a 1x1 conv, gain 1, no
# activation. With lod 0 the image is output{last}.

def genforce_zoo_reference(state: dict, z: np.ndarray, fused: bool) -> np.ndarray:
    w = {name: tensor.double() for name, tensor in state.items()}

    def pixel_norm(x):
        return x / torch.sqrt((x ** 2).mean(dim=1, keepdim=True) + 1e-8)

    x = pixel_norm(torch.from_numpy(z).double())
    x = x.view(*x.shape, 1, 1)
    layer = 0
    while f"layer{layer}.weight" in w:
        weight, bias = w[f"layer{layer}.weight"], w[f"layer{layer}.bias"]
        x = pixel_norm(x)
        upsampling = layer >= 2 and layer % 2 == 0
        if upsampling and fused:
            kernel = F.pad(weight * (SQRT2 / math.sqrt(weight.shape[0] * 9)), (1, 1, 1, 1))
            kernel = kernel[:, :, 1:, 1:] + kernel[:, :, :-1, 1:] + kernel[:, :, 1:, :-1] + \
                kernel[:, :, :-1, :-1]
            x = F.conv_transpose2d(x, kernel, bias, stride=2, padding=1)
        else:
            if upsampling:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            scale = SQRT2 / math.sqrt(weight[0].numel())
            x = F.conv2d(x, weight * scale, bias, padding=3 if layer == 0 else 1)
        x = F.leaky_relu(x, 0.2)
        layer += 1
    last = layer // 2 - 1
    to_rgb = w[f"output{last}.weight"]
    return F.conv2d(pixel_norm(x), to_rgb / math.sqrt(to_rgb.shape[1]),
                    w[f"output{last}.bias"]).numpy()


# ---------------------------------------------------------------------------------------------
# Formats load and reproduce their reference images

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


def test_out_of_band_buffers_cannot_be_supplied_by_a_file(tmp_path):
    variables = tf_variables(SMALL, np.random.default_rng(24))
    path = tmp_path / "out-of-band.pkl"
    path.write_bytes(pickle.dumps(variables["4x4/Dense/weight"], protocol=5,
                                  buffer_callback=lambda buffer: False))
    refused(path, "damaged")


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


def test_format_is_detected_by_content_not_extension(tmp_path):
    variables = tf_variables(SMALL, np.random.default_rng(6))
    pickle_named_pth = nvidia_pickle(tmp_path / "nvidia.pth", tf_network_state(variables))
    genforce_named_pkl = tmp_path / "genforce.pkl"
    torch.save(genforce_state_dict(SMALL, np.random.default_rng(6)), genforce_named_pkl)
    assert load_generator(pickle_named_pth).config.resolution == 16
    assert load_generator(genforce_named_pkl).config.resolution == 16


def test_loaded_generator_is_cpu_float32_in_eval_mode(tmp_path):
    path = tmp_path / "g.pth"
    torch.save(genforce_state_dict(SMALL, np.random.default_rng(8)), path)
    generator = load_generator(path)
    assert not generator.training
    assert {(p.device.type, p.dtype) for p in generator.parameters()} == {("cpu", torch.float32)}


# ---------------------------------------------------------------------------------------------
# This project's .safetensors

def test_convert_then_load_safetensors_gives_identical_images(tmp_path):
    variables = tf_variables(SMALL_FUSED, np.random.default_rng(9))
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


def test_save_generator_round_trip_keeps_weights_and_extra_metadata(tmp_path, tiny_generator):
    path = tmp_path / "tuned.safetensors"
    save_generator(tiny_generator, path, source_format="ganprior-finetune",
                   extra_metadata={"note": "fine-tuned", "format": "overridden?"})
    loaded = load_generator(path)
    assert loaded.config == tiny_generator.config
    for name, tensor in tiny_generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    with safe_open(str(path), framework="pt") as file:
        header = json.loads(file.metadata()["ganprior"])
    assert header["note"] == "fine-tuned" and header["format"] == "ganprior-pggan"
    assert header["source_format"] == "ganprior-finetune"
    assert not list(tmp_path.glob("*.partial"))


# ---------------------------------------------------------------------------------------------
# Refusals: every one is a CheckpointError naming the file and the accepted formats

def refused(path, *fragments: str) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_generator(path)
    message = str(caught.value)
    assert str(path) in message
    assert all(description in message for description in ACCEPTED_FORMATS)
    for fragment in fragments:
        assert fragment in message
    return message


def test_mid_training_checkpoints_are_refused(tmp_path):
    rng = np.random.default_rng(10)
    genforce = tmp_path / "genforce.pth"
    torch.save(genforce_state_dict(SMALL, rng, lod=0.5), genforce)
    tf = nvidia_pickle(tmp_path / "tf.pkl", tf_network_state(tf_variables(SMALL, rng, lod=1.0)))
    theano = nvidia_pickle(tmp_path / "theano.pkl", theano_network_state(
        SMALL, theano_param_values(SMALL, rng, True), True, cur_lod=2.0), python2=True)
    for path in (genforce, tf, theano):
        refused(path, "mid-training", "lod")


def test_malicious_pickles_run_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    top_level = tmp_path / "top.pkl"
    top_level.write_bytes(pickle.dumps(Exploit()))
    hidden_in_state = write_pickle(tmp_path / "hidden.pkl", (
        PickledNetwork({"version": 2, "variables": [("lod", Exploit())]}),) * 3)
    torch_file = tmp_path / "evil.pth"
    torch.save({"layer0.conv.weight": Exploit()}, torch_file)
    source_in_state = nvidia_pickle(tmp_path / "src.pkl", tf_network_state(
        tf_variables(SMALL, np.random.default_rng(11)),
        build_module_src=f"open({str(marker)!r}, 'w').close()"))

    refused(top_level, "system", "refused")
    refused(hidden_in_state, "refused")
    refused(torch_file, "nothing in it was run")
    load_generator(source_in_state)  # build_module_src is data, never executed
    assert not marker.exists()


def test_damaged_files_are_refused(tmp_path):
    pickled = nvidia_pickle(tmp_path / "full.pkl", tf_network_state(
        tf_variables(SMALL, np.random.default_rng(12))))
    genforce = tmp_path / "full.pth"
    torch.save(genforce_state_dict(SMALL, np.random.default_rng(12)), genforce)
    converted = tmp_path / "full.safetensors"
    convert_checkpoint(genforce, converted)
    for source in (pickled, genforce, converted):
        data = source.read_bytes()
        truncated = tmp_path / f"truncated{source.suffix}"
        truncated.write_bytes(data[:len(data) // 2])
        refused(truncated, "damaged")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    refused(garbage, "damaged")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    refused(empty, "empty")
    refused(tmp_path / "missing.pkl", "no such checkpoint file")
    refused(tmp_path, "is a directory")
    os.mkfifo(tmp_path / "pipe.pth")  # opening a pipe would block: refused by its type
    refused(tmp_path / "pipe.pth", "not a regular file")


def test_files_of_the_wrong_kind_are_refused(tmp_path):
    image = tmp_path / "photo.pkl"
    Image.new("RGB", (8, 8)).save(image, format="PNG")
    refused(image, "damaged")

    random_pickle = tmp_path / "random.pkl"
    random_pickle.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    refused(random_pickle, "holds a dict")

    rng = np.random.default_rng(13)
    discriminator = write_pickle(tmp_path / "d.pkl", PickledNetwork(tf_network_state(
        tf_discriminator_variables(SMALL, rng), name="D", build_func_name="D_paper")))
    refused(discriminator, "discriminator")

    stylegan = write_pickle(tmp_path / "stylegan.pkl", (PickledNetwork({}),) * 3,
                            network_module="dnnlib.tflib.network")
    refused(stylegan, "StyleGAN")

    stylegan_pth = tmp_path / "stylegan_ffhq1024_generator.pth"
    torch.save({"mapping.dense0.linear.weight": torch.zeros(2, 2)}, stylegan_pth)
    refused(stylegan_pth, "StyleGAN")

    unrelated_state_dict = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 2)}, unrelated_state_dict)
    refused(unrelated_state_dict, "not a genforce PGGAN generator")

    foreign_safetensors = tmp_path / "sd15.safetensors"
    save_file({"model.weight": torch.zeros(2)}, str(foreign_safetensors))
    refused(foreign_safetensors, "no 'ganprior' metadata")

    conditional = nvidia_pickle(tmp_path / "cifar.pkl", tf_network_state(
        tf_variables(SMALL, rng), static_kwargs={"label_size": 10}))
    refused(conditional, "label_size=10")


def test_pytorch_gan_zoo_checkpoint_is_recognised_and_refused(tmp_path, monkeypatch):
    # pytorch_GAN_zoo saves {'config': models.utils.config.BaseConfig(), 'netG', 'netD', 'avgG'}.
    config_module = types.ModuleType("models.utils.config")

    class BaseConfig:
        pass

    BaseConfig.__module__, BaseConfig.__qualname__ = "models.utils.config", "BaseConfig"
    config_module.BaseConfig = BaseConfig
    for name in ("models", "models.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "models.utils.config", config_module)
    config = BaseConfig()
    config.depthScale0, config.alpha = 12, 0.0
    net_g = {"formatLayer.module.weight": torch.zeros(16 * 12, 16),
             "formatLayer.module.bias": torch.zeros(16 * 12),
             "toRGBLayers.0.module.weight": torch.zeros(3, 12, 1, 1)}
    path = tmp_path / "celebaHQ_s6_i80000.pth"
    torch.save({"config": config, "netG": net_g, "netD": {}, "avgG": net_g}, path)
    refused(path, "pytorch_GAN_zoo", "not supported")


def test_extensions_cover_every_accepted_format():
    assert set(CHECKPOINT_EXTENSIONS) == {".pth", ".pt", ".pkl", ".safetensors"}
