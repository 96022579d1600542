"""Loss and segmentation metrics on logits of shape N x 1 x H x W."""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice loss: BCE keeps gradients early, Dice fights class imbalance."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probs = torch.sigmoid(logits)
    inter = (probs * target).sum(dim=(1, 2, 3))
    total = probs.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    soft_dice = (2 * inter + 1.0) / (total + 1.0)
    return bce + (1 - soft_dice).mean()


def per_image_scores(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(Dice, IoU) per image of the thresholded prediction; an empty prediction of an empty mask scores 1."""
    pred = (torch.sigmoid(logits) >= threshold).float()
    inter = (pred * target).sum(dim=(1, 2, 3))
    total = pred.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    union = total - inter
    empty = total == 0
    dice = torch.where(empty, torch.ones_like(inter), 2 * inter / (total + EPS))
    iou = torch.where(empty, torch.ones_like(inter), inter / (union + EPS))
    return dice, iou
