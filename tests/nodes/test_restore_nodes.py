"""GAN-Prior Restore (nodes/restore_nodes.py) run as ComfyUI runs it: super-resolution and
colorization consistent with the input, a batch, a combination with a mask, refusals before any
work, and the cached prior left alone."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.nodes.node_runs import (
    RESOLUTION,
    STEPS,
    assert_batch_is_its_single_runs,
    box_mask,
    build,
    fast_optimizer,
    photo,
)
from tests.pack_under_test import run_node

pytestmark = pytest.mark.usefixtures("one_thread")


def restore(generator, image, seed=0, fit="resize", **optional):
    optional.setdefault("optimizer", fast_optimizer())
    return run_node("GANPriorRestore", image=image, generator=generator, seed=seed, fit=fit, **optional)


def luma(images):  # [B, H, W, 3] -> [B, H, W]
    return 0.299 * images[..., 0] + 0.587 * images[..., 1] + 0.114 * images[..., 2]


def test_super_resolution_is_scale_times_larger_and_area_downsamples_to_the_input(unchanged_prior):
    image = photo(1, 8, 12)
    restored, generated, info = restore(build(unchanged_prior), image, scale=2, downsampler="area")
    assert restored.shape == generated.shape == (1, 16, 24, 3)
    down = F.avg_pool2d(restored.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert (down - image).abs().max() < 1e-5
    assert not torch.allclose(restored, generated)
    assert info.startswith("image 1:") and "consistent with the input" in info


def test_gray_keeps_the_luma_of_each_image_of_a_batch(unchanged_prior):
    image = photo(2, RESOLUTION, RESOLUTION, seed=3)
    restored, _, info = restore(build(unchanged_prior), image, gray=True)
    assert restored.shape == image.shape
    assert (luma(restored) - luma(image)).abs().max() < 1e-5
    assert info.count("image ") == 2 and "image 2:" in info
    assert "the input has colour" in info  # a colour input read as its luma, and said so


def test_gray_super_resolution_with_a_hole_in_one_run(unchanged_prior):
    image = photo(1, 8, 8, seed=5)
    mask = box_mask(1, 8, 8, 2, 5, 2, 6)
    restored, _, info = restore(build(unchanged_prior), image, mask=mask, scale=2, gray=True)
    assert restored.shape == (1, 16, 16, 3)
    down = F.avg_pool2d(luma(restored)[:, None], 2)[:, 0]
    known = mask == 0
    assert (down[known] - luma(image)[known]).abs().max() < 1e-4


def test_nothing_to_restore_and_bad_widgets_are_refused(unchanged_prior):
    generator = build(unchanged_prior)
    image = photo(1, 8, 8)
    with pytest.raises(ValueError, match="nothing to restore"):
        restore(generator, image)
    with pytest.raises(ValueError, match="scale"):
        restore(generator, image, scale=0)
    with pytest.raises(ValueError, match="downsampler"):
        restore(generator, image, scale=2, downsampler="lanczos")


def test_progress_previews_and_cancel_work_as_inpaints(unchanged_prior, fake_comfy):
    comfy = fake_comfy()
    restore(build(unchanged_prior), photo(2, 8, 8), scale=2)
    assert comfy.checks == 2 * STEPS and comfy.devices == 1
    assert [value for value, _, _ in comfy.updates][-1] == 2 * STEPS
    assert any(preview is not None and preview[0] == "JPEG" for _, _, preview in comfy.updates)
    assert comfy.cache_emptied == 1

    comfy = fake_comfy(cancel_after_checks=2)
    with pytest.raises(InterruptedError):
        restore(build(unchanged_prior), photo(1, 8, 8), gray=True, optimizer=fast_optimizer(steps=50))
    assert comfy.checks == 3 and comfy.cache_emptied == 1


def test_a_batch_restored_together_returns_what_one_by_one_runs_return(unchanged_prior):
    images = photo(3, 8, 8, seed=7)
    mask = torch.cat([box_mask(1, 8, 8, 2, 5, 2, 6), torch.zeros(2, 8, 8)])  # a hole in image 1
    generator = build(unchanged_prior)
    together = restore(generator, images, mask=mask, scale=2)
    alone = [restore(generator, images[index:index + 1], mask=mask[index:index + 1], scale=2,
                     seed=index) for index in range(3)]
    assert_batch_is_its_single_runs(together, alone, images=2)
