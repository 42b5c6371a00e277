"""rosinality/stylegan2-pytorch files (ganprior_core/checkpoints/rosinality.py), against the float64
rosinality forward pass below, written from rosinality's model.py definitions (EqualLinear,
ModulatedConv2d, NoiseInjection, FusedLeakyReLU, ToRGB, upfirdn2d_native), on the rosinality state
dict itself."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ganprior_core.checkpoints import (
    ROSINALITY,
    load_checkpoint,
)
from tests.stylegan2_builders import (
    MAPPING,
    TOLERANCE,
    W,
    Z,
    rosinality_converted,
    rosinality_state,
    rosinality_train_checkpoint,
)


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
