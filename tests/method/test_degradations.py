"""Degradations (ganprior_core/method/degradations.py): what each observes, that its consistency
projection gives back the observation (exactly for holes, area super-resolution and colorization,
to half a grey level for bilinear / bicubic), that chains compose, that gradients reach the image,
that nothing is changed in place, and the refusals."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganprior_core import imaging
from ganprior_core.method.degradations import (
    DOWNSAMPLERS,
    HALF_GREY_LEVEL,
    Compose,
    Downsample,
    Gray,
    Hole,
    luma,
    restoration_chain,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# float32 rounding of a mean of up to 64 values in [0, 1], and of a sum of three weighted channels.
ROUNDING = 2e-6
PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rand(*shape, seed: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    noise = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(*shape, generator=noise)


def smooth(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    """An image with structure but no 8-bit edges: coarse noise upsampled, in (0, 1)."""
    coarse = rand(batch, 3, max(2, height // 8), max(2, width // 8), seed=seed, low=0.1, high=0.9)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


# --- super-resolution, area --------------------------------------------------------------------

@PROPERTY
@given(factor=st.sampled_from([2, 3, 4, 8]), h=st.integers(1, 5), w=st.integers(1, 5),
       batch=st.integers(1, 2), seed=st.integers(0, 2 ** 31))
def test_area_projection_is_exact_and_the_nearest_image_in_range(factor, h, w, batch, seed):
    d = Downsample(factor, "area")
    x = rand(batch, 3, h * factor, w * factor, seed=seed, low=-0.1, high=1.1)
    y = rand(batch, 3, h, w, seed=seed + 1)
    result, report = d.project(x, y)
    assert result.shape == x.shape
    # Consistent everywhere, clamping included: the block means are the observation.
    assert torch.allclose(F.avg_pool2d(result, factor), y, rtol=0, atol=ROUNDING)
    assert report.consistent and report.max_error <= ROUNDING and report.inconsistent_entries == 0
    assert 0 <= float(result.min()) and float(result.max()) <= 1
    # Before clamping it is x + U(y - D x), U nearest-neighbour upsampling...
    plain = x + (y - F.avg_pool2d(x, factor)).repeat_interleave(factor, 2).repeat_interleave(factor, 3)
    assert torch.allclose(F.avg_pool2d(plain, factor), y, rtol=0, atol=ROUNDING)
    outside = (plain < 0) | (plain > 1)
    assert report.clamped_pixels == int(outside.any(1).sum())
    # ...which every block that stayed in [0, 1] returns bit for bit;
    touched = F.max_pool2d(outside.float(), factor).bool()  # [B, 3, h, w]
    untouched = ~touched.repeat_interleave(factor, 2).repeat_interleave(factor, 3)
    assert torch.equal(result[untouched], plain[untouched])
    # a block that did not is shifted as a whole and clipped (the nearest point of {mean = y} in
    # [0, 1]): its unclipped pixels all moved by the same amount.
    moved = result - plain
    free = touched.repeat_interleave(factor, 2).repeat_interleave(factor, 3) & (result > 0) & (result < 1)
    blocks = lambda t: t.unfold(2, factor, factor).unfold(3, factor, factor)  # noqa: E731
    for shift, keep in zip(blocks(moved).flatten(0, 3), blocks(free).flatten(0, 3)):
        if keep.any():
            assert float(shift[keep].max() - shift[keep].min()) <= 1e-5


def test_area_projection_of_a_consistent_image_changes_nothing_and_reports_nothing():
    x = smooth(1, 32, 48, seed=3)
    result, report = Downsample(4, "area").project(x, F.avg_pool2d(x, 4))
    assert torch.allclose(result, x, atol=ROUNDING)
    assert report.clamped_pixels == 0 and report.notes == () and report.iterations == 0


def test_area_keeps_a_saturated_observation_exact():
    """White sky: a block whose mean is 1 can only be all ones; plain clamping would lose it."""
    y = torch.ones(1, 3, 4, 4)
    y[..., :2] = 0
    x = rand(1, 3, 16, 16, seed=5)
    result, report = Downsample(4, "area").project(x, y)
    assert torch.equal(F.avg_pool2d(result, 4), y)
    assert report.clamped_pixels > 0 and "outside [0, 1]" in report.notes[0]


# --- super-resolution, bilinear / bicubic -----------------------------------------------------

@pytest.mark.parametrize("kernel", ["bilinear", "bicubic"])
@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_resampling_projection_is_within_half_a_grey_level(kernel, factor):
    d = Downsample(factor, kernel)
    truth = smooth(2, 8 * factor, 6 * factor, seed=factor)
    y = F.interpolate(truth, size=(8, 6), mode=kernel, antialias=True, align_corners=False)
    x = rand(2, 3, 8 * factor, 6 * factor, seed=10 + factor)  # the generator's image: far off
    result, report = d.project(x, y)
    down = F.interpolate(result, size=(8, 6), mode=kernel, antialias=True, align_corners=False)
    assert float((down - y).abs().max()) <= HALF_GREY_LEVEL
    assert report.consistent and report.max_error == pytest.approx(float((down - y).abs().max()))
    assert report.iterations > 0 and report.inconsistent_entries == 0
    assert 0 <= float(result.min()) and float(result.max()) <= 1
    # Where the projection moved nothing the image is kept: projecting the truth returns it.
    again, again_report = d.project(truth, y)
    assert again_report.iterations == 0 and torch.equal(again, truth)


def test_resampling_projection_is_the_least_squares_correction():
    """Without clamping the result is x + D^T r: its change from x is orthogonal to everything D
    cannot see (the null space of D), so no content D does not observe was added."""
    d = Downsample(2, "bicubic", tolerance=1e-5)
    x = smooth(1, 16, 16, seed=1)
    y = F.interpolate(smooth(1, 16, 16, seed=2), size=(8, 8), mode="bicubic", antialias=True)
    result, report = d.project(x, y)
    assert report.clamped_pixels == 0 and report.consistent
    change = (result - x).double().flatten()
    # Null-space directions of D: v - D^T (D D^T)^-1 D v for random v, from D's matrix.
    eye = torch.eye(16 * 16, dtype=torch.float64).reshape(-1, 1, 16, 16)
    matrix = F.interpolate(eye, size=(8, 8), mode="bicubic", antialias=True).reshape(256, 64).T
    null = torch.linalg.svd(matrix).Vh[64:]  # [192, 256]
    per_channel = change.reshape(3, 256)
    assert float((per_channel @ null.T).abs().max()) <= 1e-4 * float(per_channel.abs().max())


def test_resampling_cap_is_reported_with_a_message():
    d = Downsample(4, "bicubic", max_iterations=1)
    y = F.interpolate(smooth(1, 32, 32, seed=4), size=(8, 8), mode="bicubic", antialias=True)
    result, report = d.project(rand(1, 3, 32, 32, seed=6), y)
    assert not report.consistent and report.iterations == 1 and report.inconsistent_entries > 0
    note = report.notes[-1]
    assert "cap of 1 iterations" in note and "more than" in note
    assert f"up to {report.max_error:.3g}" in note


def test_unreachable_observation_stops_when_it_stops_improving():
    """A hard 0 | 1 edge in a bicubic low-resolution image: no image within [0, 1] downsamples
    to it (bicubic rings), so the rounds stop when the error no longer falls, and say so."""
    y = torch.ones(1, 3, 8, 8)
    y[..., :4] = 0
    result, report = Downsample(4, "bicubic").project(rand(1, 3, 32, 32, seed=7), y)
    assert not report.consistent and report.iterations < 300
    assert "stopped improving" in report.notes[-1] and "8-bit rounding" in report.notes[-1]
    assert 0 <= float(result.min()) and float(result.max()) <= 1


def test_factor_one_is_the_identity():
    x, y = rand(1, 3, 8, 8, seed=1), rand(1, 3, 8, 8, seed=2)
    for kernel in DOWNSAMPLERS:
        d = Downsample(1, kernel)
        assert torch.equal(d.observe(x), x)
        assert torch.equal(d.project(x, y)[0], y)


def test_low_precision_images_are_observed():
    """bf16 generator images (autocast) reach every kernel; CPU antialiasing has no bf16 kernel,
    so bilinear / bicubic answer in float32."""
    x = rand(1, 3, 16, 16, seed=1).bfloat16()
    for kernel in DOWNSAMPLERS:
        y = Downsample(2, kernel).observe(x)
        assert y.shape == (1, 3, 8, 8) and torch.isfinite(y).all()


# --- colorization ------------------------------------------------------------------------------

@PROPERTY
@given(h=st.integers(1, 12), w=st.integers(1, 12), batch=st.integers(1, 2),
       seed=st.integers(0, 2 ** 31))
def test_gray_projection_keeps_the_luma(h, w, batch, seed):
    x = rand(batch, 3, h, w, seed=seed)
    y = rand(batch, 1, h, w, seed=seed + 1)
    result, report = Gray().project(x, y)
    assert torch.allclose(luma(result), y, rtol=0, atol=ROUNDING)  # everywhere, gamut included
    assert report.consistent and 0 <= float(result.min()) and float(result.max()) <= 1
    plain = x + (y - luma(x))
    outside = ((plain < 0) | (plain > 1)).any(1, keepdim=True)
    assert report.clamped_pixels == int(outside.sum())
    # In the gamut the chroma is x's: the result is x moved equally in R, G and B.
    inside = (~outside).expand_as(x)
    assert torch.allclose(result[inside], plain[inside], atol=ROUNDING)
    # With clipping instead, the luma is kept where nothing was clipped.
    clipped, clip_report = Gray(gamut="clip").project(x, y)
    assert clip_report.clamped_pixels == report.clamped_pixels
    keep = ~outside
    assert torch.allclose(luma(clipped)[keep], y[keep], rtol=0, atol=ROUNDING)


def test_gray_gamut_on_a_hand_made_case():
    # Pixel 1: pure red given luma 0.9 -> (1.601, 0.601, 0.601): outside.
    # Pixel 2: mid gray given 0.6 -> (0.6, 0.6, 0.6): inside.
    # Pixel 3: blue given 0.05 -> (0.05 - 0.114 + 1, 0.05 - 0.114, ...) : outside (G, R < 0).
    # Pixel 4: a pale colour given its own luma: inside, unchanged.
    x = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 1.0], [0.6, 0.5, 0.4]]).T
    x = x.reshape(1, 3, 1, 4)
    y = torch.tensor([0.9, 0.6, 0.05, float(luma(x)[0, 0, 0, 3])]).reshape(1, 1, 1, 4)
    result, report = Gray().project(x, y)
    assert report.clamped_pixels == 2 and "2 pixel(s)" in report.notes[0]
    assert torch.allclose(luma(result), y, atol=ROUNDING)
    red = result[0, :, 0, 0]
    # Desaturated towards gray 0.9 until red reaches 1: hue kept, G = B.
    assert float(red[0]) == pytest.approx(1.0) and float(red[1]) == pytest.approx(float(red[2]))
    assert float(red[1]) == pytest.approx((0.9 - 0.299) / 0.701, abs=1e-6)
    assert torch.allclose(result[0, :, 0, 1], torch.full((3,), 0.6), atol=ROUNDING)
    assert torch.allclose(result[0, :, 0, 3], x[0, :, 0, 3], atol=ROUNDING)
    clipped, clip_report = Gray(gamut="clip").project(x, y)
    assert clip_report.clamped_pixels == 2 and not clip_report.consistent
    assert clip_report.inconsistent_entries == 2
    assert torch.allclose(clipped[0, :, 0, 0], torch.tensor([1.0, 0.601, 0.601]), atol=1e-6)


def test_gray_observes_bt601_luma_in_one_channel():
    x = rand(2, 3, 5, 7, seed=1)
    y = Gray().observe(x)
    assert y.shape == (2, 1, 5, 7)
    assert torch.allclose(y[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    gray_image = x[:, :1].expand(-1, 3, -1, -1)  # a gray picture read as RGB
    assert torch.allclose(Gray().observe(gray_image), x[:, :1], atol=ROUNDING)


# --- holes -------------------------------------------------------------------------------------

@PROPERTY
@given(h=st.integers(1, 10), w=st.integers(1, 10), seed=st.integers(0, 2 ** 31))
def test_hole_projection_keeps_known_pixels_bit_for_bit(h, w, seed):
    mask = rand(h, w, seed=seed) > 0.5
    d = Hole(mask)
    x = rand(2, 3, h, w, seed=seed + 1, low=-0.2, high=1.2)
    y = rand(2, 3, h, w, seed=seed + 2)
    result, report = d.project(x, y)
    assert torch.equal(result[..., ~mask], y[..., ~mask])
    assert torch.equal(result[..., mask], x.clamp(0, 1)[..., mask])
    assert report.max_error == 0 and report.consistent
    assert report.clamped_pixels == int((((x < 0) | (x > 1)).any(1) & mask).sum())
    assert torch.equal(d.observed_mask((h, w)), (~mask).float())


def test_hole_projection_is_imagings_composite_for_soft_masks():
    mask = rand(12, 9, seed=1)
    mask[:4] = 0
    x, y = rand(1, 3, 12, 9, seed=2), rand(1, 3, 12, 9, seed=3)
    result, _ = Hole(mask).project(x, y)
    assert torch.equal(result[0], imaging.composite(y[0], x[0], mask))
    assert torch.equal(Hole(mask).observed_mask((12, 9)), 1 - mask)


# --- chains ------------------------------------------------------------------------------------

def gray_area_hole(seed: int = 0) -> tuple[Compose, torch.Tensor]:
    low_res_hole = torch.zeros(8, 12)
    low_res_hole[2:5, 3:9] = 1
    return Compose((Gray(), Downsample(2, "area"), Hole(low_res_hole))), low_res_hole


def test_chain_observes_in_order_and_sizes_the_grids():
    chain, hole = gray_area_hole()
    x = rand(1, 3, 16, 24, seed=1)
    assert torch.equal(chain.observe(x), F.avg_pool2d(luma(x), 2))
    assert chain.observation_size((16, 24)) == (8, 12) and chain.input_size((8, 12)) == (16, 24)
    assert torch.equal(chain.observed_mask((8, 12)), 1 - hole)
    # Gray and area downsampling commute: the other order observes the same.
    other = Compose((Downsample(2, "area"), Gray(), Hole(hole)))
    assert torch.allclose(other.observe(x), chain.observe(x), atol=ROUNDING)
    # Nested chains are flattened.
    assert Compose((Compose((Gray(),)), Downsample(2, "area"))).steps[0] == Gray()


def test_chain_projection_is_consistent_on_observed_entries_and_never_reads_the_rest():
    chain, hole = gray_area_hole()
    known = (hole == 0)
    x = rand(1, 3, 16, 24, seed=1)
    y = rand(1, 1, 8, 12, seed=2)
    result, report = chain.project(x, y)
    observed = chain.observe(result)
    assert torch.allclose(observed[..., known], y[..., known], rtol=0, atol=ROUNDING)
    assert report.consistent and len(report.parts) == 3
    assert report.clamped_pixels == sum(part.clamped_pixels for part in report.parts)
    # The observation's values in the hole are never read.
    other_y = y.clone()
    other_y[..., ~known] = rand(int((~known).sum()), seed=3)
    other, _ = chain.project(x, other_y)
    assert torch.equal(other, result)
    # A low-resolution hole pixel's block is the generator's own image (to rounding): the hole
    # is left free; x here is inside the gamut with room to spare.
    x_mid = rand(1, 3, 16, 24, seed=4, low=0.4, high=0.6)
    y_mid = rand(1, 1, 8, 12, seed=5, low=0.45, high=0.55)
    mid, mid_report = chain.project(x_mid, y_mid)
    in_hole = hole.bool().repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert mid_report.clamped_pixels == 0
    assert torch.allclose(mid[..., in_hole], x_mid[..., in_hole], atol=ROUNDING)
    assert not torch.allclose(mid[..., ~in_hole], x_mid[..., ~in_hole], atol=1e-3)


@pytest.mark.parametrize("kernel", ["bilinear", "bicubic"])
def test_chain_with_resampling_is_within_half_a_grey_level(kernel):
    hole = torch.zeros(8, 8)
    hole[2:5, 2:6] = 1
    chain = Compose((Gray(), Downsample(4, kernel), Hole(hole)))
    y = chain.observe(smooth(1, 32, 32, seed=1))
    result, report = chain.project(rand(1, 3, 32, 32, seed=2), y)
    known = hole == 0
    assert float((chain.observe(result) - y)[..., known].abs().max()) <= HALF_GREY_LEVEL
    assert report.consistent and report.iterations > 0


def test_restoration_chain_builds_the_usual_order():
    hole = torch.zeros(8, 8)
    chain = restoration_chain(gray=True, scale=4, downsampler="bicubic", hole_mask=hole)
    assert [type(step) for step in chain.steps] == [Gray, Downsample, Hole]
    assert chain.steps[1] == Downsample(4, "bicubic")
    assert restoration_chain(scale=2, downsampler="area") == Downsample(2, "area")
    assert restoration_chain(gray=True) == Gray()
    assert isinstance(restoration_chain(hole_mask=hole), Hole)


# --- gradients and inputs ----------------------------------------------------------------------

@pytest.mark.parametrize("degradation", [
    Hole(torch.zeros(16, 16)), Downsample(2, "area"), Downsample(4, "bilinear"),
    Downsample(4, "bicubic"), Gray(), Compose((Gray(), Downsample(2, "bicubic")))],
    ids=["hole", "area", "bilinear", "bicubic", "gray", "gray+bicubic"])
def test_observe_is_differentiable(degradation):
    x = rand(1, 3, 16, 16, seed=1).requires_grad_(True)
    y = rand(*degradation.observation_shape(x.shape), seed=2)
    ((degradation.observe(x) - y) ** 2).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert float(x.grad.abs().min()) > 0  # every pixel is seen by some observed entry


def test_masked_entries_send_no_gradient_to_their_blocks():
    """The loss weighs the observation with observed_mask: a low-resolution hole pixel's block
    gets no gradient, so nothing there is fitted (what auto-stop's holdout relies on)."""
    chain, hole = gray_area_hole()
    x = rand(1, 3, 16, 24, seed=1).requires_grad_(True)
    y = rand(1, 1, 8, 12, seed=2)
    weight = chain.observed_mask((8, 12))
    (((chain.observe(x) - y) ** 2) * weight).sum().backward()
    in_hole = hole.bool().repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.all(x.grad[..., in_hole] == 0) and torch.all(x.grad[..., ~in_hole] != 0)


def test_nothing_is_changed_in_place():
    mask = torch.zeros(4, 6)
    mask[1:3, 2:4] = 1
    chains = [Hole(torch.zeros(16, 24)), Downsample(4, "area"), Downsample(4, "bicubic"), Gray(),
              Compose((Gray(), Downsample(4, "bilinear"), Hole(mask)))]
    for degradation in chains:
        x = rand(1, 3, 16, 24, seed=1, low=-0.1, high=1.1)
        y = degradation.observe(rand(1, 3, 16, 24, seed=2)).clamp(0, 1)
        x_before, y_before = x.clone(), y.clone()
        degradation.observe(x)
        result, _ = degradation.project(x, y)
        assert torch.equal(x, x_before) and torch.equal(y, y_before)
        assert result.data_ptr() not in (x.data_ptr(), y.data_ptr())
    hole = Hole(mask)
    mask[0, 0] = 1  # the caller's tensor changes later: the Hole kept its own copy
    assert float(hole.mask[0, 0]) == 0


def test_observation_overshoot_is_clamped_with_a_note():
    y = rand(1, 3, 4, 4, seed=1)
    y[0, 0, 0, 0] = 1.1  # bicubic resampling overshoot, within imaging.RANGE_TOLERANCE
    result, report = Downsample(2, "area").project(rand(1, 3, 8, 8, seed=2), y)
    assert "1 observation value(s)" in report.notes[0]
    assert float(F.avg_pool2d(result, 2)[0, 0, 0, 0]) == pytest.approx(1.0)


# --- refusals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("factor, words", [
    (0, "positive integer"), (-2, "positive integer"), (2.5, "positive integer"),
    (True, "positive integer"), ("2", "positive integer")])
def test_bad_factors_are_refused(factor, words):
    with pytest.raises(ValueError, match=words) as error:
        Downsample(factor, "area")
    assert repr(factor) in str(error.value) or str(factor) in str(error.value)


def test_refusals_name_the_problem_and_what_is_accepted():
    with pytest.raises(ValueError, match="unknown downsampler 'lanczos'; accepted: area, bilinear, bicubic"):
        Downsample(2, "lanczos")
    with pytest.raises(ValueError, match=r"factor 3 does not divide the image size 16x16"):
        Downsample(3, "area").observation_size(16)
    with pytest.raises(ValueError, match=r"factor 3 does not divide the image size 24x16"):
        Downsample(3, "bicubic").observe(torch.rand(1, 3, 16, 24))
    with pytest.raises(ValueError, match="at least 8 pixels on a side"):
        Downsample(4, "bilinear").observation_size((16, 4))
    with pytest.raises(ValueError, match=r"pass image\[None\]"):
        Downsample(2, "area").observe(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="observed as"):
        Downsample(2, "area").project(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="NaN or infinite"):
        Gray().project(torch.full((1, 3, 4, 4), float("nan")), torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        Gray().project(torch.rand(1, 3, 4, 4), torch.rand(1, 1, 4, 4) * 255)
    with pytest.raises(ValueError, match="RGB images"):
        Gray().observe(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="unknown gamut mode 'hsv'; accepted: desaturate, clip"):
        Gray(gamut="hsv")
    with pytest.raises(ValueError, match=r"hole mask is 6x4 .* the image is 8x8"):
        Hole(torch.zeros(4, 6)).observe(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="hole mask must be a tensor"):
        Hole(torch.zeros(1, 4, 6))
    with pytest.raises(ValueError, match="must be the last step"):
        Compose((Hole(torch.zeros(8, 8)), Downsample(2, "area")))
    with pytest.raises(ValueError, match="Gray only once"):
        Compose((Gray(), Gray()))
    with pytest.raises(ValueError, match="at least one"):
        Compose(())
    with pytest.raises(ValueError, match="max iterations"):
        Downsample(2, "bicubic", max_iterations=0)
    with pytest.raises(ValueError, match="tolerance must be positive"):
        Downsample(2, "bicubic", tolerance=0)
    with pytest.raises(ValueError, match="needs the downsampler .* accepted: area, bilinear, bicubic"):
        restoration_chain(scale=4)
    with pytest.raises(ValueError, match="nothing to restore"):
        restoration_chain()
