"""The paper's objective (eq. 8, 12): L = w_mse * ||m*(x_gt - x)||^2 + w_p * ||phi(m*x_gt) - phi(m*x)||_1.

m is the known-pixel mask (1 = known); reconstruction is m = 1 everywhere. Both terms are means
over elements so their weights do not depend on the resolution.
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

    def __init__(self, target: torch.Tensor, known_mask: torch.Tensor, weights: LossWeights,
                 perceptual: VGG16Features | None) -> None:
        # target: [1, 3, R, R] in [-1, 1]; known_mask: [1, 1, R, R] with 1 = known pixel.
        self.known_mask = known_mask
        self.masked_target = target * known_mask
        self.weights = weights
        self.perceptual = perceptual if weights.perceptual > 0 else None
        self.target_features = None
        if self.perceptual is not None:
            with torch.no_grad():
                self.target_features = self.perceptual(self.masked_target).float()

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        masked = image * self.known_mask
        loss = self.weights.mse * F.mse_loss(masked.float(), self.masked_target)
        if self.perceptual is not None:
            features = self.perceptual(masked).float()
            loss = loss + self.weights.perceptual * F.l1_loss(features, self.target_features)
        return loss
