"""Independent forward passes of PGGAN generators, written from each format's own definition.

The references work on the file's own arrays and layouts (TF: NHWC with [kh, kw, in, out] kernels;
Theano/Lasagne: true convolutions with the stored scale; genforce: its pre-normalising blocks) and
never use ganprior_core.networks.pggan, so a wrong transpose, flip or scale in a loader shows up as
a different image (tests/checkpoints/).
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from tests.checkpoint_builders import Arch

# float32 against a float64 reference, relative to the output's scale: the network's outputs reach
# ~6 and the last rounding bits depend on the CPU's convolution kernels (AVX2 vs AVX-512).
TOLERANCE = 1e-5
SQRT2 = math.sqrt(2)


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
