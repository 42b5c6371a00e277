"""GAN-Prior Inpaint and GAN-Prior Metrics (nodes/inpaint_nodes.py) run as ComfyUI runs them: the
mask filled at the input size, batches, refusals that leave the cached prior alone, the progress
bar, cancel and room on a GPU."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from tests.nodes.node_runs import (
    RESOLUTION,
    STEPS,
    assert_batch_is_its_single_runs,
    box_mask,
    build,
    fast_optimizer,
    inpaint,
    nan_at,
    photo,
)
from tests.pack_under_test import pack_module, run_node

pytestmark = pytest.mark.usefixtures("one_thread")


def test_inpaint_fills_only_the_mask_at_the_input_size(unchanged_prior):
    image = photo(1, 24, 40)
    alpha = 1.0 - box_mask(1, 12, 20, 3, 9, 5, 12)  # an RGBA file's alpha at half size
    mask = 1.0 - alpha  # what LoadImage gives: 1 = transparent = inpaint
    filled, generated, used_mask, info = inpaint(build(unchanged_prior), image, mask)

    assert filled.shape == generated.shape == image.shape
    expected_mask = torch.nn.functional.interpolate(mask[:, None], size=(24, 40), mode="bilinear")[:, 0]
    assert torch.equal(used_mask, expected_mask)
    known, hole = used_mask == 0, used_mask == 1
    assert torch.equal(filled[known], image[known])  # bit-exact
    assert torch.equal(filled[hole], generated[hole])
    assert not torch.equal(filled[hole], image[hole])
    soft = (used_mask > 0) & (used_mask < 1)
    blend = image * (1 - used_mask[..., None]) + generated * used_mask[..., None]
    assert torch.allclose(filled[soft], blend[soft])
    assert info.startswith("image 1:") and "final loss" in info


def test_pad_mode_keeps_the_aspect_and_the_known_pixels(unchanged_prior):
    image = photo(1, 12, 30)
    mask = box_mask(1, 12, 30, 2, 8, 20, 28)
    filled, generated, used_mask, _ = inpaint(build(unchanged_prior), image, mask, fit="pad")
    assert filled.shape == generated.shape == image.shape
    assert torch.equal(filled[used_mask == 0], image[used_mask == 0])
    assert not torch.equal(filled[used_mask == 1], image[used_mask == 1])


def test_one_mask_serves_a_batch_and_each_image_gets_its_own_seed(unchanged_prior):
    image = photo(1, RESOLUTION, RESOLUTION).expand(2, -1, -1, -1)
    mask = box_mask(1, RESOLUTION, RESOLUTION, 4, 12, 4, 12)
    filled, generated, used_mask, info = inpaint(build(unchanged_prior), image, mask)
    assert filled.shape == (2, RESOLUTION, RESOLUTION, 3) and used_mask.shape == (2, RESOLUTION, RESOLUTION)
    assert torch.equal(filled[used_mask == 0], image[used_mask == 0])
    assert not torch.equal(generated[0], generated[1])  # seed, seed + 1
    assert info.count("\n") == 1


def test_many_masks_for_one_image_and_mismatched_batches(unchanged_prior):
    image = photo(1, RESOLUTION, RESOLUTION)
    masks = torch.cat([box_mask(1, RESOLUTION, RESOLUTION, 0, 8, 0, 16),
                       box_mask(1, RESOLUTION, RESOLUTION, 8, 16, 0, 16)])
    filled, _, used_mask, _ = inpaint(build(unchanged_prior), image, masks)
    assert filled.shape[0] == 2
    assert torch.equal(filled[0, 8:], image[0, 8:]) and torch.equal(filled[1, :8], image[0, :8])
    with pytest.raises(ValueError, match="do not match"):
        inpaint(build(unchanged_prior), photo(2, 16, 16), masks.repeat(2, 1, 1)[:3])


def test_empty_mask_reconstructs_and_returns_the_input_untouched(unchanged_prior):
    image = photo(1, RESOLUTION, RESOLUTION)
    empty = torch.zeros(1, 64, 64)  # LoadImage's mask for a file without alpha
    filled, generated, used_mask, _ = inpaint(build(unchanged_prior), image, empty)
    assert torch.equal(filled, image) and not used_mask.any()
    assert not torch.equal(generated, image)


def test_full_mask_warns_and_returns_a_sample_from_the_prior(unchanged_prior):
    image = photo(1, RESOLUTION, RESOLUTION)
    full = torch.ones(1, RESOLUTION, RESOLUTION)
    filled, generated, _, info = inpaint(build(unchanged_prior), image, full, seed=5)
    sample = pack_module("ganprior_core.sampling").sample_images(unchanged_prior, 1, 5)
    assert torch.equal(generated[0], sample[0].permute(1, 2, 0))
    assert torch.equal(filled, generated)
    assert "unconditional sample" in info


@pytest.mark.parametrize("preset", ["mganprior", "single-z"])
def test_inpaint_node_fills_the_mask_with_a_stylegan2_prior(unchanged_stylegan2_prior, preset):
    spec, _ = run_node("GANPriorPreset", prior=unchanged_stylegan2_prior, preset=preset, steps=STEPS, stop="fixed")
    image, mask = photo(1, 20, 12), box_mask(1, 20, 12, 5, 15, 3, 9)
    filled, generated, used_mask, info = run_node("GANPriorInpaint", image=image, mask=mask,
                                             generator=spec, seed=0, fit="resize",
                                             optimizer=fast_optimizer())
    assert filled.shape == generated.shape == image.shape and used_mask.shape == mask.shape
    known = mask[0] == 0
    assert torch.equal(filled[0][known], image[0][known])
    assert "fixed 4 steps" in info


@pytest.mark.parametrize("image, message", [
    (photo(1, 20, 24).permute(0, 3, 1, 2), "channels-first"),
    (torch.rand(1, 20, 24, 2), "C = 1, 3 or 4"),
    (photo(1, 20, 24)[0], r"\[B, H, W, C\]"),
    (torch.rand(0, 20, 24, 3), "empty"),
    (torch.rand(1, 1, 1, 3), "too small"),
    (nan_at(photo(1, 20, 24), (0, 5, 5, 0)), "NaN"),
    (photo(1, 20, 24) * 255, r"\[0, 255\]"),
    ((photo(1, 20, 24) * 255).to(torch.uint8), "floating-point"),
], ids=["channels-first", "two-channels", "no-batch", "empty-batch", "1x1", "nan", "0-255", "uint8"])
def test_inpaint_refuses_bad_images_and_keeps_the_cached_prior(unchanged_prior, image, message):
    with pytest.raises(ValueError, match=message):
        inpaint(build(unchanged_prior), image, box_mask(1, 20, 24, 4, 10, 4, 10))


@pytest.mark.parametrize("mask, message", [
    (nan_at(box_mask(1, 20, 24, 4, 10, 4, 10), (0, 0, 0)), "NaN"),
    (box_mask(1, 20, 24, 4, 10, 4, 10) * 255, r"\[0, 1\]"),
    (torch.zeros(0, 20, 24), "empty"),
    (torch.zeros(1, 1, 20, 24), r"\[B, H, W\]"),
], ids=["nan", "0-255", "empty-batch", "rank-4"])
def test_inpaint_refuses_bad_masks_and_keeps_the_cached_prior(unchanged_prior, mask, message):
    with pytest.raises(ValueError, match=message):
        inpaint(build(unchanged_prior), photo(1, 20, 24), mask)


def test_inpaint_refuses_a_seed_beyond_the_widget_range(unchanged_prior):
    with pytest.raises(ValueError, match="seed"):
        inpaint(build(unchanged_prior), photo(1, 20, 24), box_mask(1, 20, 24, 4, 10, 4, 10), seed=2 ** 64)


def test_rgba_image_is_inpainted_as_its_rgb(unchanged_prior):
    rgb, mask = photo(1, 20, 24), box_mask(1, 20, 24, 4, 10, 4, 10)
    rgba = torch.cat([rgb, torch.rand(1, 20, 24, 1)], dim=-1)
    generator = build(unchanged_prior)
    assert torch.equal(inpaint(generator, rgba, mask)[0], inpaint(generator, rgb, mask)[0])


def test_progress_bar_counts_every_step_of_the_batch_with_previews(unchanged_prior, fake_comfy):
    comfy = fake_comfy()
    inpaint(build(unchanged_prior), photo(2, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15))
    total = 2 * STEPS
    # The batch is optimised together: each step of each image in turn, then each image's result
    # and all results at the end, the bar full: every step has been made
    # (tests/nodes/test_progress_display.py).
    assert [value for value, _, _ in comfy.updates] == list(range(1, total + 1)) + [total, total, total]
    assert {bar_total for _, bar_total, _ in comfy.updates} == {total}
    previews = [preview for _, _, preview in comfy.updates]
    # preview_every 2: both images' second and fourth steps
    assert [preview is not None for preview in previews[:total]] == [False, False, True, True] * 2
    assert [preview[0] for preview in previews if preview is not None][-3:] == ["PNG", "PNG", "PNG"]
    kind, picture, max_size = previews[2]
    assert (kind, picture.size, picture.mode, max_size) == ("JPEG", (RESOLUTION, RESOLUTION), "RGB", 512)
    assert comfy.devices == 1 and comfy.checks == total


def test_a_batch_optimised_together_returns_what_one_by_one_runs_return(unchanged_prior):
    images, mask = photo(3, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15)
    generator = build(unchanged_prior)
    together = inpaint(generator, images, mask)
    alone = [inpaint(generator, images[index:index + 1], mask, seed=index) for index in range(3)]
    assert_batch_is_its_single_runs(together, alone, images=3)


def test_progress_is_throttled_to_ten_updates_a_second_keeping_previews_and_the_end(
        unchanged_prior, fake_comfy):
    # 40 steps of 2 images 0.01 s apart (the clock is read once per update): 0.8 s, about 8
    # throttled updates.
    comfy = fake_comfy(tick=0.01)
    steps = 40
    optimizer = fast_optimizer(steps=steps, preview_every=15)
    inpaint(build(unchanged_prior), photo(2, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15),
            optimizer=optimizer)
    values = [value for value, _, _ in comfy.updates]
    with_preview = [value for value, _, preview in comfy.updates if preview is not None]
    during = values[:values.index(2 * steps) + 1]
    assert during == sorted(during) and during[0] == 1 and values[-1] == 2 * steps  # exact end
    # No preview lost: every preview_every steps and the last step of each image (stepped in
    # turn), then each image's returned image and, at the end, the batch's, the bar full.
    assert with_preview == [29, 30, 59, 60, 79, 80, 2 * steps, 2 * steps, 2 * steps]
    plain = [value for value, _, preview in comfy.updates if preview is None]
    assert len(plain) <= 2 * (2 * steps * 0.01 / 0.1 + 2)  # <= 10/s (+ the ends), not 80
    assert comfy.checks == 2 * steps  # cancel is still checked every step


def test_auto_stop_completes_each_images_share_of_the_bar_and_says_why(unchanged_prior, fake_comfy):
    comfy = fake_comfy()
    auto_stop = pack_module("ganprior_core.method.auto_stop")
    # Checked every step with little patience, a generator this eager overfits and stops early.
    optimizer = replace(fast_optimizer(steps=60, lr_generator=0.05, lr_latent=0.3, stop="auto"),
                        auto_stop=auto_stop.AutoStopConfig(check_every=1, patience=3,
                                                            smoothing=0.0, holdout_fraction=0.1))
    *_, info = inpaint(build(unchanged_prior), photo(2, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15),
                       optimizer=optimizer)
    lines = info.splitlines()
    assert len(lines) == 2 and all("stopped early" in line and "image of step" in line for line in lines)
    # The bar counts the steps each image ran: it ends full at their sum, not at 2 x 60
    # (the arithmetic: tests/nodes/test_progress_display.py).
    ran = [int(line.split(" steps (")[0].rsplit(" ", 1)[1]) for line in lines]
    values = [value for value, _, _ in comfy.updates]
    assert values[-1] == sum(ran) < 2 * 60 and ran[0] in values
    assert len(values) < 2 * 60


def test_cancel_stops_within_a_step_and_leaves_the_cached_prior_alone(unchanged_family_prior, fake_comfy):
    comfy = fake_comfy(cancel_after_checks=2)
    generator = build(unchanged_family_prior, num_codes=2, split_layer=2)
    with pytest.raises(InterruptedError):
        inpaint(generator, photo(1, RESOLUTION, RESOLUTION), box_mask(1, 16, 16, 4, 12, 4, 12),
                optimizer=fast_optimizer(steps=50))
    assert comfy.checks == 3 and len(comfy.updates) == 2
    assert generator.prior is unchanged_family_prior
    assert comfy.cache_emptied == 1  # the cache is emptied after a cancelled run too


def test_cancel_stops_a_batch_optimised_together_within_a_step(unchanged_family_prior, fake_comfy):
    comfy = fake_comfy(cancel_after_checks=3)
    generator = build(unchanged_family_prior, num_codes=2, split_layer=2)
    with pytest.raises(InterruptedError):
        inpaint(generator, photo(2, RESOLUTION, RESOLUTION), box_mask(1, 16, 16, 4, 12, 4, 12),
                optimizer=fast_optimizer(steps=50))
    # image 1's and image 2's first steps, then image 1's second: cancelled there
    assert comfy.checks == 4 and [value for value, _, _ in comfy.updates] == [1, 2, 3]
    assert generator.prior is unchanged_family_prior
    assert comfy.cache_emptied == 1


def test_inpaint_asks_comfyui_to_make_room_on_a_gpu_and_empties_the_cache_after(
        unchanged_prior, fake_comfy, models_dir):
    host = pack_module("nodes.host")
    comfy = fake_comfy(device="cuda")
    generator = build(unchanged_prior)
    vgg = pack_module("ganprior_core.method.perceptual").VGG16Features()
    needed = pack_module("nodes.inpaint_nodes").working_memory(generator, fast_optimizer(
        perceptual_weight=0.1), vgg)
    # At least the prior, its gradients and Adam's moments, and a VGG16 copy.
    assert needed >= 4 * host.module_bytes(unchanged_prior) + host.module_bytes(vgg)
    host.make_room(needed, host.torch_device())
    assert comfy.freed == [(needed, torch.device("cuda"))]

    comfy = fake_comfy(device="cpu")  # --cpu: nothing to unload, RAM is not freed by unloading
    inpaint(generator, photo(1, 16, 16), box_mask(1, 16, 16, 4, 12, 4, 12))
    assert comfy.freed == [] and comfy.cache_emptied == 1
    with pytest.raises(ValueError):  # a refused input unloads nothing, yet the cache is tidied
        inpaint(generator, photo(1, 16, 16) * 255, box_mask(1, 16, 16, 4, 12, 4, 12))
    assert comfy.freed == [] and comfy.cache_emptied == 2


def test_inpaint_on_a_gpu_makes_room_before_it_runs(unchanged_prior, fake_comfy, monkeypatch):
    """The call order the node makes on a GPU: free_memory (with the estimate), the run, then
    soft_empty_cache, also when the run fails."""
    comfy = fake_comfy(device="cuda")
    nodes = pack_module("nodes.inpaint_nodes")
    calls = []

    def fake_run(*args, **kwargs):
        calls.append(("run", list(comfy.freed), comfy.cache_emptied))
        raise RuntimeError("CUDA out of memory (pretend)")

    monkeypatch.setattr(nodes, "inpaint_any_size", fake_run)
    generator = build(unchanged_prior)
    with pytest.raises(RuntimeError, match="pretend"):
        inpaint(generator, photo(1, 16, 16), box_mask(1, 16, 16, 4, 12, 4, 12))
    expected = nodes.working_memory(generator, fast_optimizer(), None)
    assert calls == [("run", [(expected, torch.device("cuda"))], 0)]
    assert comfy.cache_emptied == 1


def test_metrics_node_scores_whole_image_and_masked_area():
    reference = photo(1, 20, 20).clamp(0.2, 0.8)
    psnr, ssim, report = run_node("GANPriorMetrics", image=reference, reference=reference)
    assert math.isinf(psnr) and ssim == pytest.approx(1.0) and "hole only" not in report

    shifted = reference.clone()
    shifted[:, :10] += 0.1  # error 0.1 on half of the pixels: MSE 0.005
    mask = box_mask(1, 10, 10, 0, 5, 0, 10)  # the top half, at half size
    psnr, _, report = run_node("GANPriorMetrics", image=shifted, reference=reference, mask=mask)
    assert psnr == pytest.approx(10 * math.log10(1 / 0.005), abs=1e-3)
    assert "hole only:   PSNR 20.00 dB" in report

    batch_psnr, _, report = run_node("GANPriorMetrics", image=torch.cat([reference, shifted]), reference=reference)
    assert math.isinf(batch_psnr) and report.count("image ") == 2


@pytest.mark.parametrize("image, message", [
    (torch.rand(1, 3, 24, 24), "channels-first"),
    (torch.rand(0, 24, 24, 3), "empty"),
    (nan_at(torch.rand(1, 24, 24, 3), (0, 1, 1, 1)), "NaN"),
])
def test_metrics_node_refuses_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        run_node("GANPriorMetrics", image=image, reference=torch.rand(1, 24, 24, 3))


def test_metrics_node_scores_the_smallest_image_inpaint_accepts(unchanged_prior):
    side = pack_module("ganprior_core.imaging").MIN_IMAGE_SIDE
    image, mask = photo(1, side, side), box_mask(1, side, side, 2, 6, 2, 6)
    filled, *_ = inpaint(build(unchanged_prior), image, mask)
    psnr, ssim, report = run_node("GANPriorMetrics", image=filled, reference=image, mask=mask)
    assert math.isfinite(psnr) and -1 <= ssim <= 1 and "hole only" in report
    assert "SSIM window 7x7" in report  # says it is not the standard 11x11 window
    with pytest.raises(ValueError, match=r"image 8x9 and reference 9x8 \(width x height\)"):
        run_node("GANPriorMetrics", image=photo(1, 9, 8), reference=photo(1, 8, 9))


def test_candidates_come_per_image_best_first_with_seed_and_agreement(unchanged_prior, fake_comfy):
    comfy = fake_comfy()
    image, mask = photo(2, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15)
    optimizer = fast_optimizer(steps=12, preview_every=4)
    filled, generated, used_mask, info = inpaint(build(unchanged_prior), image, mask,
                                                 optimizer=optimizer, starts=3, candidates=2)
    assert filled.shape == generated.shape == (4, 20, 20, 3) and used_mask.shape == (4, 20, 20)
    for row, source in enumerate([0, 0, 1, 1]):  # image 1's two candidates, then image 2's
        known = used_mask[row] == 0
        assert torch.equal(filled[row][known], image[source][known])
    assert not torch.equal(filled[0], filled[1])
    lines = info.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "image 1, candidate 1", "image 1, candidate 2", "image 2, candidate 1", "image 2, candidate 2"]
    scores = [float(line.split("agreement ")[1].split(" dB")[0]) for line in lines]
    assert scores[0] >= scores[1] and scores[2] >= scores[3]
    assert all("(of 3 starts)" in line for line in lines)
    # The bar ends at every step every start ran: 3 starts x 12 fixed steps per image.
    assert [value for value, _, _ in comfy.updates][-1] == 2 * 3 * 12


def test_one_start_keeps_todays_outputs(unchanged_prior):
    image, mask = photo(1, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15)
    default = inpaint(build(unchanged_prior), image, mask)
    explicit = inpaint(build(unchanged_prior), image, mask, starts=1, candidates=1)
    assert all(torch.equal(a, b) for a, b in zip(default[:3], explicit[:3]))
    assert "starts" not in default[3]


def test_more_candidates_than_starts_is_refused_before_any_work(unchanged_prior):
    with pytest.raises(ValueError, match="cannot exceed starts"):
        inpaint(build(unchanged_prior), photo(1, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15),
                starts=2, candidates=3)
