"""What a run refuses before any optimisation, with a ValueError saying what is accepted: images in
the wrong dtype, range or layout, masks out of range or NaN, settings that are not finite or absurd,
seeds outside 0 ... 2^64 - 1 (ganprior_core/imaging/checks.py, validation.py, method/config.py)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ganprior_core import optimize
from ganprior_core.sampling import sample_latents

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def problem(tiny_generator):
    model_config, optimizer_config = optimize.preset("mganprior", tiny_generator.config)
    hole = torch.zeros(16, 16)
    hole[4:10, 4:10] = 1
    return (tiny_generator, torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)), hole,
            replace(model_config, num_codes=2), replace(optimizer_config, steps=2, precision="fp32"))


def nan_at_hole(image):
    image = image.clone()
    image[:, 5, 5] = float("nan")  # inside the hole: still refused, it would poison the loss
    return image


BAD_IMAGES = {
    "uint8": (lambda image: (image * 255).to(torch.uint8), "floating-point"),
    "0..255": (lambda image: image * 255, "[0, 255]"),
    "-1..1": (lambda image: image * 2 - 1, "[-1, 1]"),
    "channels-last": (lambda image: image.permute(1, 2, 0).contiguous(), "[3, 16, 16]"),
    "batch": (lambda image: image[None], "[3, 16, 16]"),
    "nan": (nan_at_hole, "NaN"),
}


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_library_refuses_images_in_the_wrong_dtype_range_or_layout(problem, kind):
    prior, image, hole, model_config, optimizer_config = problem
    spoil, message = BAD_IMAGES[kind]
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        optimize.inpaint(prior, spoil(image), hole, model_config, optimizer_config, 0)
    with pytest.raises(ValueError):
        optimize.inpaint_any_size(prior, spoil(image), hole, model_config, optimizer_config, 0)


@pytest.mark.parametrize("spoil, message", [
    (lambda hole: hole * 255, r"\[0, 1\]"),
    (lambda hole: hole - 1, r"\[0, 1\]"),
    (lambda hole: hole.index_put((torch.tensor(0), torch.tensor(0)), torch.tensor(float("nan"))), "NaN"),
])
def test_library_refuses_masks_out_of_range_or_nan(problem, spoil, message):
    prior, image, hole, model_config, optimizer_config = problem
    with pytest.raises(ValueError, match=message):
        optimize.inpaint(prior, image, spoil(hole), model_config, optimizer_config, 0)
    with pytest.raises(ValueError, match=message):
        optimize.inpaint_any_size(prior, image, spoil(hole), model_config, optimizer_config, 0)


def test_bool_masks_and_slight_overshoot_are_accepted(problem):
    prior, image, hole, model_config, optimizer_config = problem
    overshoot = image * 1.1 - 0.05  # bicubic resampling rings like this at hard edges
    result = optimize.inpaint_any_size(prior, overshoot, hole > 0.5, model_config, optimizer_config, 0)
    assert result.composite.min() >= 0 and result.composite.max() <= 1


@pytest.mark.parametrize("changes, message", [
    ({"lr_latent": float("nan")}, "lr_latent"),
    ({"lr_alpha": float("inf")}, "lr_alpha"),
    ({"mse_weight": float("nan")}, "mse_weight"),
    ({"perceptual_weight": float("inf")}, "perceptual_weight"),
    ({"steps": 2.5}, "integer"),
    ({"steps": 10 ** 12}, "steps"),
])
def test_optimizer_config_refuses_non_finite_and_absurd_values(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(optimize.OptimizerConfig(), **changes).validate()


@pytest.mark.parametrize("seed", [-1, 2 ** 64, 1.5, True])
def test_seeds_outside_the_64_bit_range_are_refused(problem, seed):
    prior, image, hole, model_config, optimizer_config = problem
    with pytest.raises(ValueError, match="seed"):
        optimize.inpaint(prior, image, hole, model_config, optimizer_config, seed)
    with pytest.raises(ValueError, match="seed"):
        sample_latents(2, 8, seed)
