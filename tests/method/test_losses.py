"""The masked reconstruction loss (ganprior_core/method/losses.py): MSE and VGG16 features, neither
with a gradient in the hole."""
from __future__ import annotations

import pytest
import torch

from ganprior_core.method.losses import LossWeights, MaskedReconstructionLoss


def test_masked_loss_has_no_gradient_in_the_hole(tiny_generator):
    from ganprior_core.method.perceptual import VGG16Features
    torch.manual_seed(0)
    target = torch.rand(1, 3, 16, 16) * 2 - 1
    known = torch.ones(1, 1, 16, 16)
    known[..., 4:10, 5:12] = 0
    vgg = VGG16Features(depth=9)  # random weights are fine for a gradient-support check
    loss_fn = MaskedReconstructionLoss(target, known, LossWeights(mse=1.0, perceptual=0.5), vgg)
    image = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_(True)
    loss_fn(image).backward()
    hole = known[0, 0] == 0
    assert torch.all(image.grad[0][:, hole] == 0)
    assert torch.all(image.grad[0][:, ~hole].abs().sum(0) > 0)
    # Changing only hole pixels leaves the loss unchanged.
    with torch.no_grad():
        altered = image.clone()
        altered[..., hole] = torch.rand(3, int(hole.sum())) * 2 - 1
        assert loss_fn(altered).item() == pytest.approx(loss_fn(image).item(), abs=1e-7)
