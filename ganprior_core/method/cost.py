"""The convolution and matmul work of a run, estimated from its configuration alone.

The compile decision ("auto", compilation.wants_compile) weighs this work against the cost of a
compilation. An estimate from shapes, never a timing, keeps that decision, and so the result, the
same for the same seed on the same machine. The generator's share is its family's
(`forward_flop`); the perceptual network's is VGG16's convolutions up to the loss's depth.
"""
from __future__ import annotations

from .perceptual import VGG16_PLAN

# Forward + backward of a convolution is about three forward passes (input and weight gradients).
FORWARD_AND_BACKWARD = 3


def estimated_step_tflop(model, perceptual_depth: int | None, include_g1: bool = True) -> float:
    """TFLOP of one step of `model` (a MultiLatentModel), forward + backward, with a perceptual
    loss of `perceptual_depth` VGG16 layers (None: none); without G1 for a step after the codes
    and G1 were frozen."""
    config = model.generator.config
    flops = model.family.forward_flop(config, model.config.split_layer, model.config.num_codes,
                                      include_g1)
    if perceptual_depth:
        flops += _perceptual_flop(config.resolution, perceptual_depth)
    return FORWARD_AND_BACKWARD * flops / 1e12


def estimated_run_tflop(model, perceptual_depth: int | None, steps: int,
                        freeze_at: int | None = None) -> float:
    """TFLOP of `steps` steps whose codes and G1 are frozen after `freeze_at` steps (None: never)."""
    full = steps if freeze_at is None else min(steps, freeze_at)
    return (full * estimated_step_tflop(model, perceptual_depth)
            + (steps - full) * estimated_step_tflop(model, perceptual_depth, include_g1=False))


def _perceptual_flop(resolution: int, depth: int) -> float:
    """Forward FLOP of VGG16's first `depth` layers (a conv and its ReLU count as two, as in
    `features[:depth]`) on one image of `resolution` pixels a side."""
    flops, size, in_channels, seen = 0.0, resolution, 3, 0
    for item in VGG16_PLAN:
        seen += 1 if item == "M" else 2
        if seen > depth:
            break
        if item == "M":
            size //= 2
        else:
            flops += 2.0 * in_channels * item * 9 * size * size
            in_channels = item
    return flops
