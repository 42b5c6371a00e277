"""cuDNN's repeatable algorithms for the span of a run, and of overlapping runs
(ganprior_core/method/cudnn_settings.py); the host's flags come back after the last one."""
from __future__ import annotations

import pytest
import torch

from ganprior_core.method.multi_latent import MultiLatentConfig
from ganprior_core.optimize import (
    OptimizerConfig,
    inpaint,
)
from tests.tiny_priors import inpainting_problem

FAST = OptimizerConfig(steps=6, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                       schedule="constant", perceptual_weight=0.0, precision="fp32", preview_every=3,
                       stop="fixed")


def test_the_run_asks_cudnn_for_repeatable_kernels_and_restores_the_hosts_flags(tiny_generator):
    cudnn = torch.backends.cudnn
    image, hole = inpainting_problem(tiny_generator, seed=0)
    config = MultiLatentConfig(num_codes=2, split_layer=3)
    seen = []

    def watch(progress):
        seen.append((cudnn.deterministic, cudnn.benchmark))
        if progress.step == 2 and cancel:
            raise InterruptedError("cancelled")

    saved = cudnn.deterministic, cudnn.benchmark
    try:
        cudnn.deterministic, cudnn.benchmark = False, True  # a host that times its kernels
        cancel = False
        inpaint(tiny_generator, image, hole, config, FAST, seed=0, callback=watch)
        assert seen and set(seen) == {(True, False)}
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
        cancel = True
        with pytest.raises(InterruptedError):
            inpaint(tiny_generator, image, hole, config, FAST, seed=0, callback=watch)
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def test_overlapping_runs_keep_repeatable_kernels_and_give_the_host_its_flags_back(tiny_generator):
    """Run A begins, run B begins, A ends while B is still stepping, then B ends: B keeps the
    run's flags to its end, and the host's come back only after B."""
    import threading
    cudnn = torch.backends.cudnn
    image, hole = inpainting_problem(tiny_generator, seed=0)
    config = MultiLatentConfig(num_codes=2, split_layer=3)
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()
    seen_by_b_after_a, errors = [], []

    def wait(event):
        if not event.wait(timeout=120):
            raise TimeoutError("the other run never got there")

    def watch_a(progress):
        if progress.step == 1:
            a_inside.set()
            wait(b_inside)

    def watch_b(progress):
        if progress.step == 1:
            b_inside.set()
            wait(a_done)
        else:
            seen_by_b_after_a.append((cudnn.deterministic, cudnn.benchmark))

    def run(callback):
        try:
            inpaint(tiny_generator, image, hole, config, FAST, seed=0, callback=callback)
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            errors.append(error)
            a_inside.set(), b_inside.set(), a_done.set()

    saved = cudnn.deterministic, cudnn.benchmark
    try:
        cudnn.deterministic, cudnn.benchmark = False, True
        first = threading.Thread(target=run, args=(watch_a,))
        first.start()
        wait(a_inside)
        second = threading.Thread(target=run, args=(watch_b,))
        second.start()
        first.join()
        a_done.set()
        second.join()
        assert not errors, errors
        assert seen_by_b_after_a and set(seen_by_b_after_a) == {(True, False)}
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = saved
