"""The paper's objective (eq. 8, 12): L = w_mse * ||m*(x_gt - x)||^2 + w_p * ||phi(m*x_gt) - phi(m*x)||_1.

m is the known-pixel mask (1 = known); reconstruction is m = 1 everywhere. Both terms are means
over elements so their weights do not depend on the resolution.

Restoration (method/restore.py) is the same objective on the observation's grid (paper eq. 2):
x is first mapped there by the degradation (`ObservationLoss`), m is the degradation's observed
mask there, and a one-channel (gray) observation is seen by VGG16 as three equal channels.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .perceptual import VGG16Features


@dataclass(frozen=True)
class LossWeights:
    mse: float = 1.0
    perceptual: float = 0.1


class MaskedReconstructionLoss:
    """Loss against one target image; the target side (m * x_gt and its features) is computed once."""

    # The generator's image [1, 3, R, R] to the target's grid; None: the identity (inpainting).
    observe = None

    def __init__(self, target: torch.Tensor, known_mask: torch.Tensor, weights: LossWeights,
                 perceptual: VGG16Features | None) -> None:
        # target: [1, 3, R, R] in [-1, 1] (ObservationLoss: [1, C, h, w] on the observation's
        # grid, C = 3 or 1); known_mask: [1, 1, R, R] (or [1, 1, h, w]) with 1 = known pixel.
        self.known_mask = known_mask
        self.masked_target = target * known_mask
        self.weights = weights
        self.perceptual = perceptual if weights.perceptual > 0 else None
        self.target_features = None
        if self.perceptual is not None:
            with torch.no_grad():
                self.target_features = self.perceptual(_rgb(self.masked_target)).float()

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        observed = image if self.observe is None else self.observe(image)
        return masked_loss(observed, self.known_mask, self.masked_target, self.weights,
                           self.perceptual, self.target_features)


class ObservationLoss(MaskedReconstructionLoss):
    """The objective on the observation's grid: `observe` maps the generator's image [1, 3, R, R]
    in [-1, 1] to [1, C, h, w] in [-1, 1] (the degradation, which for the operators here commutes
    with the map [0, 1] -> [-1, 1]: their weights sum to 1), compared with `target` [1, C, h, w]
    in [-1, 1] where `observed_mask` [1, 1, h, w] is 1. A class of its own, so that torch.compile
    keeps its graphs apart from inpainting's (compilation._key)."""

    def __init__(self, observe, target: torch.Tensor, observed_mask: torch.Tensor,
                 weights: LossWeights, perceptual: VGG16Features | None) -> None:
        self.observe = observe
        super().__init__(target, observed_mask, weights, perceptual)


def masked_loss(observed: torch.Tensor, known_mask: torch.Tensor, masked_target: torch.Tensor,
                weights: LossWeights, perceptual: VGG16Features | None,
                target_features: torch.Tensor | None) -> torch.Tensor:
    """The objective of an image already on the target's grid, against the target side computed
    once (MaskedReconstructionLoss; vectorized.py calls it for each member of a batch)."""
    masked = observed * known_mask
    loss = weights.mse * F.mse_loss(masked.float(), masked_target)
    if perceptual is not None:
        features = perceptual(_rgb(masked)).float()
        loss = loss + weights.perceptual * F.l1_loss(features, target_features)
    return loss


def _rgb(image: torch.Tensor) -> torch.Tensor:
    """A one-channel (gray) image as three equal channels for VGG16; three channels as they are."""
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
