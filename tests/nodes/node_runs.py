"""Running the nodes in tests as ComfyUI runs them (tests.pack_under_test.run_node), with fast
settings, ComfyUI-shaped tensors (IMAGE [B, H, W, C], MASK [B, H, W], 1 = inpaint) and stand-ins
for ComfyUI's services (device, progress bar, cancel)."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from tests.pack_under_test import pack_module, run_node

RESOLUTION = 16
STEPS = 4


def fast_optimizer(**changes):
    settings = dict(steps=STEPS, lr_latent=0.05, lr_alpha=0.01, lr_beta=0.01, lr_generator=1e-3,
                    schedule="constant", mse_weight=1.0, perceptual_weight=0.0, precision="fp32",
                    preview_every=2, compile="off", stop="fixed")
    (optimizer,) = run_node("GANPriorOptimizer", **{**settings, **changes})
    return optimizer


def build(prior, **changes):
    settings = dict(num_codes=3, split_layer=4, use_alpha=True, use_beta=True, finetune="all")
    (generator,) = run_node("BuildMultiLatentGenerator", prior=prior, **{**settings, **changes})
    return generator


def inpaint(generator, image, mask, seed=0, fit="resize", **optional):
    optional.setdefault("optimizer", fast_optimizer())
    return run_node("GANPriorInpaint", image=image, mask=mask, generator=generator, seed=seed, fit=fit,
               **optional)


def photo(batch, height, width, seed=0):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def box_mask(batch, height, width, top, bottom, left, right):
    mask = torch.zeros(batch, height, width)
    mask[:, top:bottom, left:right] = 1.0
    return mask


def assert_batch_is_its_single_runs(together, alone, images: int) -> None:
    """A node's outputs for a batch against its runs of each image alone (`alone[i]`: image i's
    outputs, with its seed): the first `images` outputs equal, stacked; the info line of each
    image the same but for its own seconds (the last output)."""
    for output, single in zip(together[:images], zip(*[run[:images] for run in alone])):
        assert torch.equal(output, torch.cat(single))
    lines = together[images].splitlines()
    assert [line.split(":")[0] for line in lines] == [f"image {i + 1}" for i in range(len(alone))]
    assert all(line.split(", ", 1)[1] == run[images].split(", ", 1)[1]
               for line, run in zip(lines, alone))  # the same steps, loss and notes


def nan_at(tensor, index):
    spoiled = tensor.clone()
    spoiled[index] = float("nan")
    return spoiled


class FakeComfy:
    """Stand-ins for comfy.model_management and comfy.utils that record what the node does."""

    def __init__(self, cancel_after_checks=None, device="cpu"):
        self.updates, self.checks, self.devices = [], 0, 0
        self.freed, self.cache_emptied = [], 0
        self.cancel_after_checks = cancel_after_checks
        self.device = torch.device(device)
        fake = self

        class ProgressBar:
            def __init__(self, total):
                self.total = total

            def update_absolute(self, value, total=None, preview=None):
                fake.updates.append((value, self.total, preview))

        self.utils = SimpleNamespace(ProgressBar=ProgressBar)
        self.model_management = SimpleNamespace(get_torch_device=self.get_torch_device,
                                                throw_exception_if_processing_interrupted=self.check,
                                                free_memory=self.free_memory,
                                                soft_empty_cache=self.soft_empty_cache)

    def get_torch_device(self):
        self.devices += 1
        return self.device

    def free_memory(self, memory_required, device, keep_loaded=()):
        self.freed.append((memory_required, device))
        return []

    def soft_empty_cache(self, force=False):
        self.cache_emptied += 1

    def check(self):
        self.checks += 1
        if self.cancel_after_checks is not None and self.checks > self.cancel_after_checks:
            raise InterruptedError("cancelled by the user")


class FakeClock:
    """host.now: every reading moves time on by `tick` seconds."""

    def __init__(self, tick):
        self.tick, self.time = tick, 1000.0

    def __call__(self):
        self.time += self.tick
        return self.time


def save_tiny_prior(path, seed):
    network = pack_module("ganprior_core.networks.pggan")
    torch.manual_seed(seed)
    generator = network.PGGANGenerator(network.PGGANConfig(RESOLUTION, (16, 16, 8), latent_dim=16))
    pack_module("ganprior_core.checkpoints").save_generator(generator, path)
    return generator
