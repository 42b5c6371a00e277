import pytest
import torch

from ganprior_core.lab.baselines import diffusion_fill, mean_fill
from ganprior_core.lab.masks import strokes_mask


def centre_hole(size, hole_side):
    hole = torch.zeros(size, size)
    start = (size - hole_side) // 2
    hole[start:start + hole_side, start:start + hole_side] = 1
    return hole


def pixel_grid(size):
    return torch.meshgrid(torch.arange(size, dtype=torch.float32),
                          torch.arange(size, dtype=torch.float32), indexing="ij")


def test_mean_fill_uses_the_mean_colour_of_the_known_pixels():
    image = torch.zeros(3, 2, 3)
    image[:, 0, 0] = torch.tensor([0.1, 0.2, 0.3])
    image[:, 0, 1] = torch.tensor([0.3, 0.4, 0.5])
    image[:, 1, 0] = torch.tensor([0.5, 0.9, 0.1])
    image[:, :, 2] = 7.0  # under the hole: must not enter the mean
    hole = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    filled = mean_fill(image, hole)
    # known pixels: (0.1, 0.2, 0.3), (0.3, 0.4, 0.5), (0.5, 0.9, 0.1)
    expected_colour = torch.tensor([0.3, 0.5, 0.3])
    for row, col in ((0, 2), (1, 1), (1, 2)):
        assert torch.allclose(filled[:, row, col], expected_colour, atol=1e-6)


@pytest.mark.parametrize("fill", [mean_fill, diffusion_fill])
def test_known_pixels_are_unchanged_bit_for_bit(fill):
    image = torch.rand(3, 48, 40, generator=torch.Generator().manual_seed(0))
    hole = strokes_mask((48, 40), seed=1)
    filled = fill(image, hole)
    known = hole == 0
    assert torch.equal(filled[:, known], image[:, known])
    assert not torch.equal(filled[:, ~known], image[:, ~known])


def test_diffusion_fill_reproduces_a_linear_ramp_through_a_24_pixel_hole():
    rows, cols = pixel_grid(64)
    ramp = torch.stack([0.1 + 0.8 * cols / 63, 0.9 - 0.7 * rows / 63,
                        0.2 + 0.3 * cols / 63 + 0.4 * rows / 63])
    hole = centre_hole(64, 24)
    damaged = torch.where(hole.bool(), 0.0, ramp)
    assert (diffusion_fill(damaged, hole) - ramp).abs().max() < 1e-5


def test_diffusion_fill_reproduces_a_discrete_harmonic_saddle():
    # x^2 - y^2 has a zero discrete Laplacian, so it is its own harmonic fill.
    rows, cols = pixel_grid(40)
    saddle = 0.5 + ((cols - 20) ** 2 - (rows - 20) ** 2) / 900
    image = saddle.expand(3, 40, 40).clone()
    hole = centre_hole(40, 20)
    assert (diffusion_fill(image, hole) - image).abs().max() < 1e-5


def test_diffusion_fill_treats_the_image_border_as_a_mirror():
    # A ramp along x has zero derivative across the top border: a hole touching it keeps the ramp.
    _, cols = pixel_grid(32)
    ramp = (0.2 + 0.6 * cols / 31).expand(3, 32, 32).clone()
    hole = torch.zeros(32, 32)
    hole[:12, 8:24] = 1
    assert (diffusion_fill(ramp, hole) - ramp).abs().max() < 1e-5


def test_diffusion_fill_stays_within_the_known_range():
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(2))
    hole = strokes_mask(32, seed=5)
    filled = diffusion_fill(image, hole)
    known = image[:, hole == 0]
    inside = filled[:, hole == 1]
    assert (inside >= known.min(dim=1).values[:, None] - 1e-6).all()
    assert (inside <= known.max(dim=1).values[:, None] + 1e-6).all()


@pytest.mark.parametrize("fill", [mean_fill, diffusion_fill])
def test_an_empty_hole_returns_the_image(fill):
    image = torch.rand(3, 8, 8)
    assert torch.equal(fill(image, torch.zeros(8, 8)), image)


@pytest.mark.parametrize("fill", [mean_fill, diffusion_fill])
def test_fills_reject_masks_they_cannot_use(fill):
    image = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match="no known pixels"):
        fill(image, torch.ones(8, 8))
    with pytest.raises(ValueError, match=r"\[H, W\] = \(8, 8\)"):
        fill(image, torch.zeros(4, 4))
