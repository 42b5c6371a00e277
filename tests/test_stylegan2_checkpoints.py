"""StyleGAN2 checkpoint loaders: every layout against an independent forward pass, hostile files,
one-line refusals and the conversion to this project's .safetensors.

Reference outputs: NVIDIA-layout files (stylegan2-ada pickles, TF pickles) are compared with
tests/stylegan2_reference.py run on the NVIDIA-named state dict the file was built from;
rosinality files with the float64 rosinality forward pass below, written from rosinality's
model.py definitions (EqualLinear, ModulatedConv2d, NoiseInjection, FusedLeakyReLU, ToRGB,
upfirdn2d_native), on the rosinality state dict itself.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import struct
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from stylegan2_builders import (
    NUMPY_1,
    NUMPY_2,
    Persistent,
    Reduce,
    dumps,
    generator_kwargs,
    module_state,
    rosinality_converted,
    rosinality_state,
    rosinality_train_checkpoint,
    sg2ada_snapshot,
    tf_generator,
    tf_pickle,
)
from stylegan2_reference import random_state, reference_mapping, reference_synthesis

from ganprior_core.checkpoints import (
    ACCEPTED_FORMATS,
    GANPRIOR_SG2,
    NVIDIA_SG2_TF,
    NVIDIA_SG2ADA,
    ROSINALITY,
    CheckpointError,
    convert_checkpoint,
    load_checkpoint,
    load_generator,
)
from ganprior_core.cli import main as cli_main
from ganprior_core.networks.stylegan2 import StyleGAN2Generator

TOLERANCE = 1e-4
Z = W = 8
MAPPING = 2
# 16x16: channel_base 128, channel_max 16 -> 16, 16, 8 channels at 4, 8, 16.
SMALL = dict(resolution=16, channels=[16, 16, 8], z_dim=Z, w_dim=W, mapping_layers=MAPPING)
KWARGS = dict(resolution=16, channel_base=128, channel_max=16, z_dim=Z, w_dim=W,
              mapping_layers=MAPPING)


def nvidia_state(seed: int, resolution: int = 16) -> dict:
    channels = [min(128 // r, 16) for r in (4 * 2 ** i for i in range(int(math.log2(resolution)) - 1))]
    return random_state(resolution, channels, Z, W, MAPPING, seed)


def write(path: Path, content, protocol: int = 4, numpy_module: str = NUMPY_2,
          extra_names: dict | None = None) -> Path:
    path.write_bytes(dumps(content, protocol, numpy_module, extra_names))
    return path


def max_error_nvidia(generator: StyleGAN2Generator, state: dict,
                     conv_clamp: float | None = None) -> float:
    """Max |generator - reference| over z at psi 1 and 0.7, w+ codes, noise const and none."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, Z, generator=g)
    ws_plus = torch.randn(2, generator.num_ws, W, generator=g)
    errors = []
    with torch.no_grad():
        for psi in (1.0, 0.7):
            ref_ws = reference_mapping(state, z, psi)
            errors.append((generator.mapping(z, truncation_psi=psi).double() - ref_ws).abs().max())
            for noise in ("const", "none"):
                image = generator(z, truncation_psi=psi, noise_mode=noise).double()
                errors.append((image - reference_synthesis(state, ref_ws, noise, conv_clamp))
                              .abs().max())
        for noise in ("const", "none"):
            image = generator.synthesis(ws_plus, noise_mode=noise).double()
            errors.append((image - reference_synthesis(state, ws_plus, noise, conv_clamp))
                          .abs().max())
    return float(max(errors))


def refused(path: Path, *fragments: str) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_generator(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert message.startswith(f"cannot load a GAN prior from '{path}'")
    assert all(description in message for description in ACCEPTED_FORMATS)
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------------------------------------
# stylegan2-ada-pytorch / stylegan3-repository network pickles

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


# ---------------------------------------------------------------------------------------------
# NVlabs/stylegan2 TensorFlow pickles

@pytest.mark.parametrize("protocol", [3, 4])
def test_tf_pickle_matches_the_reference(tmp_path, protocol):
    gs_state = nvidia_state(5, resolution=32)
    path = tf_pickle(tmp_path / "stylegan2-tiny-config-f.pkl", tf_generator(gs_state, 32),
                     g=tf_generator(nvidia_state(6, resolution=32), 32), protocol=protocol)
    loaded = load_checkpoint(path)
    assert (loaded.family, loaded.source_format, loaded.source_network) == \
        ("stylegan2", NVIDIA_SG2_TF, "Gs")
    assert loaded.generator.config.resolution == 32 and loaded.generator.config.conv_clamp is None
    assert max_error_nvidia(loaded.generator, gs_state) <= TOLERANCE


# ---------------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch, against a forward pass written from rosinality's definitions

def ros_upfirdn(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]):
    """upfirdn2d_native with down=1: zeros after each pixel, pad, convolve (flipped kernel)."""
    n, c, h, w = x.shape
    out = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
    out[:, :, ::up, ::up] = x
    out = F.pad(out, (pad[0], pad[1], pad[0], pad[1]))
    k = torch.flip(kernel, [0, 1]).to(x.dtype)
    return F.conv2d(out, k.expand(c, 1, *k.shape).contiguous(), groups=c)


def ros_linear(x, weight, bias, lr_mul, activation):
    out = x @ (weight.double() * (lr_mul / math.sqrt(weight.shape[1]))).t()
    out = out + bias.double() * lr_mul
    return F.leaky_relu(out, 0.2) * math.sqrt(2) if activation else out


def ros_modconv(state, name, x, style, demodulate, upsample):
    weight = state[f"{name}.weight"].double()  # [1, out, in, k, k]
    k = weight.shape[-1]
    scale = 1 / math.sqrt(weight.shape[2] * k * k)
    s = ros_linear(style, state[f"{name}.modulation.weight"], state[f"{name}.modulation.bias"],
                   1, False)
    outs = []
    for n in range(x.shape[0]):
        wn = scale * weight[0] * s[n].view(1, -1, 1, 1)
        if demodulate:
            wn = wn * torch.rsqrt(wn.pow(2).sum([1, 2, 3]) + 1e-8).view(-1, 1, 1, 1)
        if upsample:
            out = F.conv_transpose2d(x[n:n + 1], wn.transpose(0, 1), padding=0, stride=2)
            outs.append(ros_upfirdn(out, state[f"{name}.blur.kernel"], 1, (1, 1)))
        else:
            outs.append(F.conv2d(x[n:n + 1], wn, padding=k // 2))
    return torch.cat(outs)


def ros_forward(state, latent, noises):
    """rosinality Generator.forward on an [N, n_latent, style_dim] latent (input_is_latent)."""
    def styled(name, x, w, noise, up):
        out = ros_modconv(state, f"{name}.conv", x, w, True, up)
        if noise is not None:
            out = out + state[f"{name}.noise.weight"].double() * noise
        return F.leaky_relu(out + state[f"{name}.activate.bias"].double().view(1, -1, 1, 1),
                            0.2) * math.sqrt(2)

    def to_rgb(name, x, w, skip):
        out = ros_modconv(state, f"{name}.conv", x, w, False, False)
        out = out + state[f"{name}.bias"].double()
        if skip is not None:
            out = out + ros_upfirdn(skip, state[f"{name}.upsample.kernel"], 2, (2, 1))
        return out

    latent = latent.double()
    out = state["input.input"].double().repeat(latent.shape[0], 1, 1, 1)
    out = styled("conv1", out, latent[:, 0], noises[0], False)
    skip = to_rgb("to_rgb1", out, latent[:, 1], None)
    i, k = 1, 0
    while f"to_rgbs.{k}.bias" in state:
        out = styled(f"convs.{2 * k}", out, latent[:, i], noises[2 * k + 1], True)
        out = styled(f"convs.{2 * k + 1}", out, latent[:, i + 1], noises[2 * k + 2], False)
        skip = to_rgb(f"to_rgbs.{k}", out, latent[:, i + 2], skip)
        i, k = i + 2, k + 1
    return skip


def ros_style(state, z):
    x = z.double()
    x = x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)  # PixelNorm
    i = 1
    while f"style.{i}.weight" in state:
        x = ros_linear(x, state[f"style.{i}.weight"], state[f"style.{i}.bias"], 0.01, True)
        i += 1
    return x


def max_error_rosinality(generator, state, latent_avg):
    n_latent = generator.num_ws
    layers = len([k for k in state if k.startswith("noises.")])
    const_noise = [state[f"noises.noise_{i}"].double() for i in range(layers)]
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, Z, generator=g)
    ws_plus = torch.randn(2, n_latent, W, generator=g)
    errors = []
    with torch.no_grad():
        for psi in (1.0, 0.7):
            style = ros_style(state, z)
            style = latent_avg.double() + psi * (style - latent_avg.double())
            latent = style.unsqueeze(1).repeat(1, n_latent, 1)
            errors.append((generator.mapping(z, truncation_psi=psi).double() - latent).abs().max())
            for mode, noises in (("const", const_noise), ("none", [None] * layers)):
                image = generator(z, truncation_psi=psi, noise_mode=mode).double()
                errors.append((image - ros_forward(state, latent, noises)).abs().max())
        for mode, noises in (("const", const_noise), ("none", [None] * layers)):
            image = generator.synthesis(ws_plus, noise_mode=mode).double()
            errors.append((image - ros_forward(state, ws_plus, noises)).abs().max())
    return float(max(errors))


def test_rosinality_converted_file_matches_rosinality_forward(tmp_path):
    state = rosinality_state(32, [16, 16, 8, 4], W, MAPPING, seed=7)
    latent_avg = torch.randn(W, generator=torch.Generator().manual_seed(8))
    path = rosinality_converted(tmp_path / "stylegan2-ffhq-config-f.pt", state, latent_avg)
    loaded = load_checkpoint(path)
    assert (loaded.family, loaded.source_format, loaded.source_network) == \
        ("stylegan2", ROSINALITY, "g_ema")
    assert loaded.generator.config.channels == (16, 16, 8, 4)
    assert max_error_rosinality(loaded.generator, state, latent_avg) <= TOLERANCE


def test_rosinality_train_checkpoint_estimates_w_avg(tmp_path):
    g_ema = rosinality_state(16, [16, 8, 8], W, MAPPING, seed=9)
    g = rosinality_state(16, [16, 8, 8], W, MAPPING, seed=10)
    path = rosinality_train_checkpoint(tmp_path / "100000.pt", g, g_ema, 16, MAPPING, W)
    loaded = load_checkpoint(path)
    assert loaded.source_network.startswith("g_ema") and "estimated" in loaded.source_network
    z = torch.randn(4096, Z, generator=torch.Generator().manual_seed(0))
    estimate = ros_style(g_ema, z).mean(0)  # rosinality's mean_latent, with seed 0
    assert (loaded.generator.mapping.w_avg.double() - estimate).abs().max() <= TOLERANCE
    assert max_error_rosinality(loaded.generator, g_ema, estimate) <= TOLERANCE


# ---------------------------------------------------------------------------------------------
# Hostile files

def test_module_source_in_a_pickle_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').write('pwned')\nimport os\nos.system('true')\n"
    g_ema = nvidia_state(11)
    path = write(tmp_path / "payload.pkl",
                 sg2ada_snapshot(g_ema, None, generator_kwargs(**KWARGS), module_src=payload))
    assert max_error_nvidia(load_generator(path), g_ema) <= TOLERANCE
    tf = tf_generator(nvidia_state(12, resolution=32), 32)
    tf._state["build_module_src"] = payload
    load_generator(tf_pickle(tmp_path / "payload_tf.pkl", tf))
    assert not marker.exists()


def test_a_pickle_asking_for_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    content = sg2ada_snapshot(nvidia_state(13), None, generator_kwargs(**KWARGS))
    content["G_ema"].meta["state"]["evil"] = Reduce(os.system, f"touch {marker}")
    message = refused(write(tmp_path / "system.pkl", content), f"{os.system.__module__}.system",
                      "nothing in it was run")
    assert not marker.exists() and len(message) < 2000


def _storage_stream(count: int, payload: bytes) -> bytes:
    """A legacy torch.save(storage) stream claiming `count` floats, holding `payload`."""
    marker = object()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", count, None) if obj is marker \
                else None

    stream = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, stream, protocol=2)
    Pickler(stream, protocol=2).dump(marker)
    pickle.dump(["0"], stream, protocol=2)
    stream.write(struct.pack("<q", count) + payload)
    return stream.getvalue()


def _hostile_snapshot(parameters: dict) -> dict:
    content = sg2ada_snapshot(nvidia_state(14), None, generator_kwargs(**KWARGS))
    content["G_ema"].meta["state"]["_parameters"].update(parameters)
    return content


def test_one_storage_stream_referenced_many_times_is_refused(tmp_path):
    elements = 2 ** 18  # 1 MiB of float32
    stream = _storage_stream(elements, bytes(4 * elements))
    storage = Reduce(torch.storage._load_from_bytes, stream)
    hooks = __import__("collections").OrderedDict()
    tensors = {f"t{i}": Reduce(torch._utils._rebuild_tensor_v2, storage, 0, (elements,), (1,),
                               False, hooks) for i in range(10_000)}
    path = write(tmp_path / "amplified.pkl", _hostile_snapshot(tensors))
    assert path.stat().st_size < 2 * 4 * elements
    start = time.perf_counter()
    refused(path, "more bytes than the file")
    # the same bytes given to _load_from_bytes again and again: parsed once, still refused
    streams = {f"t{i}": Reduce(torch._utils._rebuild_tensor_v2,
                               Reduce(torch.storage._load_from_bytes, stream), 0, (elements,),
                               (1,), False, hooks) for i in range(10_000)}
    refused(write(tmp_path / "amplified2.pkl", _hostile_snapshot(streams)), "more bytes")
    assert time.perf_counter() - start < 20


def test_a_flood_of_distinct_storage_streams_is_refused_quickly(tmp_path, monkeypatch):
    from ganprior_core.checkpoints import nvidia_stylegan2
    monkeypatch.setattr(nvidia_stylegan2, "MAX_NESTED_STORAGES", 200)
    hooks = __import__("collections").OrderedDict()
    flood = {f"t{i}": Reduce(torch._utils._rebuild_tensor_v2, Reduce(
        torch.storage._load_from_bytes, _storage_stream(1, struct.pack("<f", i))), 0, (1,), (1,),
        False, hooks) for i in range(201)}
    refused(write(tmp_path / "flood.pkl", _hostile_snapshot(flood)), "more than 200 tensor "
            "storages")


def test_nested_streams_claiming_huge_sizes_are_refused_without_allocating(tmp_path):
    start = time.perf_counter()
    huge = Reduce(torch.storage._load_from_bytes, _storage_stream(2 ** 40, bytes(64)))
    refused(write(tmp_path / "huge_storage.pkl", _hostile_snapshot({"w": huge})),
            "runs past the end")
    small = Reduce(torch.storage._load_from_bytes, _storage_stream(16, bytes(64)))
    hooks = __import__("collections").OrderedDict()
    wide = Reduce(torch._utils._rebuild_tensor_v2, small, 0, (2 ** 20, 2 ** 20), (1, 1),
                  False, hooks)
    refused(write(tmp_path / "huge_tensor.pkl", _hostile_snapshot({"w": wide})), "reaches element")
    assert time.perf_counter() - start < 10


# ---------------------------------------------------------------------------------------------
# One-line refusals

def test_stylegan3_conditional_resnet_v1_and_discriminator_only_files_are_refused(tmp_path):
    state = nvidia_state(15)
    sg3 = sg2ada_snapshot(state, None, generator_kwargs(**KWARGS))
    synthesis = sg3["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]
    synthesis["layer_names"] = ["L0_36_16", "L1_36_16"]
    synthesis["_modules"] = {"input": Persistent("SynthesisInput", module_state({}, {}, {})),
                             "L0_36_16": Persistent("SynthesisLayer", module_state({}, {}, {}))}
    refused(write(tmp_path / "stylegan3-t.pkl", sg3), "StyleGAN3")

    conditional_kwargs = {**generator_kwargs(**KWARGS), "c_dim": 4}
    refused(write(tmp_path / "conditional.pkl", sg2ada_snapshot(state, None, conditional_kwargs)),
            "conditional", "c_dim = 4")

    resnet = sg2ada_snapshot(state, None, generator_kwargs(**KWARGS, architecture="resnet"),
                             block_attributes={"architecture": "resnet"})
    refused(write(tmp_path / "resnet.pkl", resnet), "'resnet' architecture")
    # the blocks alone say so (init_kwargs silent)
    orig = sg2ada_snapshot(state, None, generator_kwargs(**KWARGS),
                           block_attributes={"architecture": "orig"})
    refused(write(tmp_path / "orig.pkl", orig), "'orig' architecture")

    v1 = tf_generator(nvidia_state(16, resolution=32), 32, g_function="G_style",
                      synthesis_function="G_synthesis")
    refused(tf_pickle(tmp_path / "stylegan1.pkl", v1), "StyleGAN (version 1)")
    tf_conditional = tf_generator(nvidia_state(16, resolution=32), 32, label_size=10)
    refused(tf_pickle(tmp_path / "tf_conditional.pkl", tf_conditional), "label_size = 10")
    tf_resnet = tf_generator(nvidia_state(16, resolution=32), 32, architecture="resnet")
    refused(tf_pickle(tmp_path / "tf_resnet.pkl", tf_resnet), "architecture=resnet")

    only_d = sg2ada_snapshot(None, None, generator_kwargs(**KWARGS))
    refused(write(tmp_path / "d_only.pkl", only_d), "no generator", "D")


# ---------------------------------------------------------------------------------------------
# This project's .safetensors

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


def test_convert_round_trip_gives_identical_outputs(tmp_path):
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


def test_safetensors_header_types_are_exact(tmp_path):
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


def test_claims_that_disagree_with_the_weights_and_bad_weights_are_refused(tmp_path):
    state = nvidia_state(30)
    wrong_plan = generator_kwargs(**{**KWARGS, "channel_base": 256})
    refused(write(tmp_path / "plan.pkl", sg2ada_snapshot(state, None, wrong_plan)),
            "plan channels", "channel_base 256")
    wrong_z = {**generator_kwargs(**KWARGS), "z_dim": 9}
    refused(write(tmp_path / "z.pkl", sg2ada_snapshot(state, None, wrong_z)), "z_dim = 9")
    refused(tf_pickle(tmp_path / "tf_resolution.pkl", tf_generator(state, 32)),
            "static_kwargs claim resolution = 32 but its weights have 16")
    refused(tf_pickle(tmp_path / "tf_plan.pkl", tf_generator(state, 16, fmap_base=256)),
            "plan channels [16, 16, 16] (fmap_base 256, fmap_max 16)", "have [16, 16, 8]")
    refused(tf_pickle(tmp_path / "tf_dlatent.pkl", tf_generator(state, 16, dlatent_size="8")),
            "dlatent_size = '8'")
    missing = dict(state)
    del missing["synthesis.b8.conv1.noise_const"]
    refused(write(tmp_path / "missing.pkl", sg2ada_snapshot(missing, None,
                                                            generator_kwargs(**KWARGS))),
            "synthesis.b8.conv1.noise_const", "missing")
    ros = rosinality_state(16, [16, 8, 8], W, MAPPING, seed=31)
    ros["convs.1.conv.weight"][0, 0, 0, 0, 0] = float("nan")
    refused(rosinality_converted(tmp_path / "nan.pt", ros, torch.zeros(W)), "NaN")
    ros = rosinality_state(16, [16, 8, 8], W, MAPPING, seed=31)
    ros["convs.0.conv.blur.kernel"] = torch.ones(4, 4) / 16
    refused(rosinality_converted(tmp_path / "blur.pt", ros, torch.zeros(W)), "blur kernel")
    refused(rosinality_converted(tmp_path / "avg.pt", rosinality_state(
        16, [16, 8, 8], W, MAPPING, seed=31), torch.zeros(W + 1)), "latent_avg")


@pytest.mark.parametrize("protocol, nhwc", [(3, False), (4, True)])
def test_real_torch_modules_reduced_as_persistence_does_load(tmp_path, protocol, nhwc):
    """The module state is torch's own Module __dict__ (all its hook dicts, the
    _non_persistent_buffers_set, Parameters pickled by torch), not a hand-written one."""
    from stylegan2_builders import real_module_snapshot

    from ganprior_core.networks.stylegan2 import StyleGAN2Config
    state = nvidia_state(40)
    generator = StyleGAN2Generator(StyleGAN2Config(**SMALL))
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


def test_pggan_files_still_load_as_the_pggan_family(tmp_path):
    from ganprior_core.checkpoints import GANPRIOR, save_generator
    from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
    path = tmp_path / "pggan.safetensors"
    save_generator(PGGANGenerator(PGGANConfig(8, (8, 8), 8)), path)
    loaded = load_checkpoint(path)
    assert (loaded.family, loaded.source_format) == ("pggan", GANPRIOR)
    assert isinstance(loaded.generator, PGGANGenerator)
