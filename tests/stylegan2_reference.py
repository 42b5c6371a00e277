"""An independent float64 forward pass of NVIDIA's StyleGAN2 generator, for testing.

It follows the published definition in stylegan2-ada-pytorch (`training/networks.py` with the
reference paths of `torch_utils/ops/upfirdn2d.py`, `bias_act.py` and `conv2d_resample.py`),
written from those definitions and not from the project's network: it imports nothing from
`ganprior_core`, works on a plain `{NVIDIA tensor name: tensor}` dict and reads the architecture
off the names and shapes. Every step is the naive formulation, different from the network's:

- modulated conv: a Python loop over samples, each with its own weight w * s, demodulated
  (divided by its norm) before the convolution, one F.conv2d per sample (the network scales
  activations instead and runs one conv for the batch);
- upsampling: upfirdn2d spelled out: explicit zero insertion, zero padding (before, after),
  then a full 2-D convolution with the 4x4 filter outer([1,3,3,1]) / 64 at gain 4, i.e.
  outer([1,3,3,1]) / 16 (the network uses stride-2 transposed convs and crops);
- the up-sampling conv in NVIDIA's generic order (conv2d_resample's fallback): upfirdn2d with
  padding (3, 2), then a valid 3x3 true convolution (flipped kernel, since NVIDIA runs conv0
  with flip_weight=False);
- leaky ReLU written with torch.where, gains and clamps written out.

The padding constants live at module level so a test can break them and see the check fail.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

DTYPE = torch.float64
TAPS = [1.0, 3.0, 3.0, 1.0]
# upfirdn2d padding (before, after) per axis, in the 2x zero-inserted grid.
SKIP_UP_PADDING = (2, 1)  # upsample2d: ((fw + up - 1) // 2, (fw - up) // 2) with fw=4, up=2
CONV_UP_PADDING = (3, 2)  # conv2d_resample, up=2, 3x3: kernel_size // 2 plus the above
CONV_UP_FLIP = True  # conv0 is a true convolution (flip_weight=False in NVIDIA's terms)


def fir_filter() -> torch.Tensor:
    """setup_filter([1,3,3,1]) (outer product / sum) times the up=2 gain 2 * 2."""
    taps = torch.tensor(TAPS, dtype=DTYPE)
    return torch.outer(taps, taps) / torch.outer(taps, taps).sum() * 4


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, 0.2 * x)


def upfirdn_up2(x: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """Zero insertion (each pixel followed by a zero), pad, then convolve with fir_filter()."""
    n, c, h, w = x.shape
    up = torch.zeros(n, c, 2 * h, 2 * w, dtype=x.dtype)
    up[:, :, ::2, ::2] = x
    before, after = padding
    up = F.pad(up, (before, after, before, after))
    kernel = fir_filter().flip(0, 1)  # convolution = correlation with the flipped filter
    return F.conv2d(up, kernel.expand(c, 1, 4, 4).contiguous(), groups=c)


def fully_connected(state: dict, name: str, x: torch.Tensor, lr_mul: float,
                    activation: bool) -> torch.Tensor:
    weight = state[f"{name}.weight"].to(DTYPE)
    bias = state[f"{name}.bias"].to(DTYPE)
    y = x @ (weight * (lr_mul / math.sqrt(weight.shape[1]))).t() + bias * lr_mul
    return lrelu(y) * math.sqrt(2) if activation else y


def reference_mapping(state: dict, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None,
                      lr_multiplier: float = 0.01) -> torch.Tensor:
    """z [N, z_dim] -> ws [N, num_ws, w_dim] as NVIDIA's MappingNetwork (c_dim = 0)."""
    num_fc = len([k for k in state if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    x = z.to(DTYPE)
    x = x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-8)
    for i in range(num_fc):
        x = fully_connected(state, f"mapping.fc{i}", x, lr_multiplier, activation=True)
    ws = x[:, None, :].repeat(1, num_ws(state), 1)
    if psi != 1:
        avg = state["mapping.w_avg"].to(DTYPE)
        stop = ws.shape[1] if cutoff is None else cutoff
        for slot in range(stop):
            ws[:, slot] = avg + psi * (ws[:, slot] - avg)
    return ws


def block_resolutions(state: dict) -> list[int]:
    return sorted(int(m.group(1)) for k in state
                  if (m := re.fullmatch(r"synthesis\.b(\d+)\.torgb\.weight", k)))


def num_ws(state: dict) -> int:
    # b4: conv1 + torgb; every other block: conv0 + conv1; the last block's torgb is the +1.
    return 1 + 2 * (len(block_resolutions(state)) - 1) + 1


def modulated_conv(state: dict, name: str, x: torch.Tensor, w: torch.Tensor, noise_mode: str,
                   conv_clamp: float | None, up: bool) -> torch.Tensor:
    weight = state[f"{name}.weight"].to(DTYPE)  # [O, I, 3, 3], no runtime gain
    styles = fully_connected(state, f"{name}.affine", w, 1.0, activation=False)  # [N, I]
    outputs = []
    for n in range(x.shape[0]):
        wn = weight * styles[n][None, :, None, None]
        wn = wn / torch.sqrt((wn * wn).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        xn = x[n:n + 1]
        if up:
            xn = upfirdn_up2(xn, CONV_UP_PADDING)
            outputs.append(F.conv2d(xn, wn.flip(2, 3) if CONV_UP_FLIP else wn))
        else:
            outputs.append(F.conv2d(xn, wn, padding=1))
    y = torch.cat(outputs)
    if noise_mode == "const":
        y = y + state[f"{name}.noise_const"].to(DTYPE) * state[f"{name}.noise_strength"].to(DTYPE)
    y = y + state[f"{name}.bias"].to(DTYPE)[None, :, None, None]
    y = lrelu(y) * math.sqrt(2)
    if conv_clamp is not None:
        y = torch.clamp(y, -conv_clamp, conv_clamp)  # conv_clamp * gain, gain = 1
    return y


def torgb(state: dict, name: str, x: torch.Tensor, w: torch.Tensor,
          conv_clamp: float | None) -> torch.Tensor:
    weight = state[f"{name}.weight"].to(DTYPE)  # [3, I, 1, 1]
    styles = fully_connected(state, f"{name}.affine", w, 1.0, activation=False)
    styles = styles / math.sqrt(weight.shape[1])
    y = torch.cat([F.conv2d(x[n:n + 1], weight * styles[n][None, :, None, None])
                   for n in range(x.shape[0])])
    y = y + state[f"{name}.bias"].to(DTYPE)[None, :, None, None]
    return y if conv_clamp is None else torch.clamp(y, -conv_clamp, conv_clamp)


def reference_features(state: dict, ws: torch.Tensor, split: int, noise_mode: str = "const",
                       conv_clamp: float | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run NVIDIA's block loop, stopping after `split` conv layers.

    NVIDIA splits ws per block as ws.narrow(1, w_idx, num_conv + num_torgb) and advances w_idx by
    num_conv. Returns (x, img): the activations after the last conv layer run and the skip image
    after the last ToRGB run (a block's ToRGB runs once its conv1 has).
    """
    ws = ws.to(DTYPE)
    x = img = None
    w_idx = 0
    layers_run = 0
    for res in block_resolutions(state):
        num_conv = 1 if res == 4 else 2
        block_ws = ws[:, w_idx:w_idx + num_conv + 1]
        w_idx += num_conv
        prefix = f"synthesis.b{res}"
        if res == 4:
            x = state[f"{prefix}.const"].to(DTYPE)[None].repeat(ws.shape[0], 1, 1, 1)
            convs = [("conv1", False)]
        else:
            convs = [("conv0", True), ("conv1", False)]
        for i, (conv, up) in enumerate(convs):
            if layers_run == split:
                return x, img
            x = modulated_conv(state, f"{prefix}.{conv}", x, block_ws[:, i], noise_mode,
                               conv_clamp, up)
            layers_run += 1
        if img is not None:
            img = upfirdn_up2(img, SKIP_UP_PADDING)
        y = torgb(state, f"{prefix}.torgb", x, block_ws[:, num_conv], conv_clamp)
        img = y if img is None else img + y
    return x, img


def reference_synthesis(state: dict, ws: torch.Tensor, noise_mode: str = "const",
                        conv_clamp: float | None = None) -> torch.Tensor:
    return reference_features(state, ws, 10 ** 9, noise_mode, conv_clamp)[1]


def random_state(resolution: int, channels: list[int], z_dim: int, w_dim: int,
                 mapping_layers: int, seed: int, img_channels: int = 3) -> dict:
    """A random G state dict with NVIDIA's names, nothing left at a trivial value.

    Names and shapes written out from NVIDIA's modules: SynthesisBlock (const on b4,
    resample_filter buffer), SynthesisLayer (weight, noise_strength, bias, resample_filter,
    noise_const, affine), ToRGBLayer (weight, bias, affine), MappingNetwork (fc{i}, w_avg).
    """
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale + shift

    taps = torch.tensor(TAPS)
    resample = torch.outer(taps, taps) / 64
    state: dict[str, torch.Tensor] = {}
    res_list = [4 * 2 ** i for i in range(int(math.log2(resolution)) - 1)]
    previous = 0
    for res, c in zip(res_list, channels):
        b = f"synthesis.b{res}"
        if res == 4:
            state[f"{b}.const"] = randn(c, 4, 4)
        state[f"{b}.resample_filter"] = resample.clone()
        convs = [("conv1", c)] if res == 4 else [("conv0", previous), ("conv1", c)]
        for conv, c_in in convs:
            state[f"{b}.{conv}.weight"] = randn(c, c_in, 3, 3)
            state[f"{b}.{conv}.noise_strength"] = randn(1, scale=0.3).reshape(())
            state[f"{b}.{conv}.bias"] = randn(c, scale=0.2)
            state[f"{b}.{conv}.resample_filter"] = resample.clone()
            state[f"{b}.{conv}.noise_const"] = randn(res, res)
            state[f"{b}.{conv}.affine.weight"] = randn(c_in, w_dim)
            state[f"{b}.{conv}.affine.bias"] = randn(c_in, scale=0.2, shift=1.0)
        state[f"{b}.torgb.weight"] = randn(img_channels, c, 1, 1)
        state[f"{b}.torgb.bias"] = randn(img_channels, scale=0.2)
        state[f"{b}.torgb.affine.weight"] = randn(c, w_dim)
        state[f"{b}.torgb.affine.bias"] = randn(c, scale=0.2, shift=1.0)
        previous = c
    state["mapping.w_avg"] = randn(w_dim, scale=0.5)
    for i in range(mapping_layers):
        state[f"mapping.fc{i}.weight"] = randn(w_dim, z_dim if i == 0 else w_dim, scale=100.0)
        state[f"mapping.fc{i}.bias"] = randn(w_dim, scale=10.0)  # times lr_mul 0.01 at run time
    return state
