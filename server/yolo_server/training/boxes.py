"""Box overlaps for training: CIoU (the YOLOv4 box loss) and width/height IoU (anchor matching, k-means).

Example:
    >>> ciou(torch.tensor([[0., 0., 2., 2.]]), torch.tensor([[1., 0., 3., 2.]]))   # IoU 1/3, centres 1 apart
    tensor([0.2879])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def ciou(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU (Zheng et al. 2020) of paired xyxy boxes.

    ``CIoU = IoU - d^2/c^2 - alpha*v`` with ``d`` the centre distance, ``c`` the
    diagonal of the enclosing box, ``v = 4/pi^2 (atan(wt/ht) - atan(wp/hp))^2``
    and ``alpha = v / (1 - IoU + v)`` (treated as a constant in the gradient).

    Args:
        pred: ``Tensor[N, 4]`` xyxy.
        target: ``Tensor[N, 4]`` xyxy.
    Returns:
        ``Tensor[N]`` in ``(-1.5, 1]``; 1 for identical boxes.
    """
    pw, ph = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]
    tw, th = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
    iw = (torch.minimum(pred[:, 2], target[:, 2]) - torch.maximum(pred[:, 0], target[:, 0])).clamp(min=0)
    ih = (torch.minimum(pred[:, 3], target[:, 3]) - torch.maximum(pred[:, 1], target[:, 1])).clamp(min=0)
    inter = iw * ih
    union = pw * ph + tw * th - inter + eps
    iou = inter / union
    cw = torch.maximum(pred[:, 2], target[:, 2]) - torch.minimum(pred[:, 0], target[:, 0])
    ch = torch.maximum(pred[:, 3], target[:, 3]) - torch.minimum(pred[:, 1], target[:, 1])
    c2 = cw**2 + ch**2 + eps
    d2 = ((pred[:, 0] + pred[:, 2] - target[:, 0] - target[:, 2]) ** 2 + (pred[:, 1] + pred[:, 3] - target[:, 1] - target[:, 3]) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(tw / (th + eps)) - torch.atan(pw / (ph + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - d2 / c2 - alpha * v


def box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise IoU of xyxy boxes, batched: ``Tensor[..., N, 4]``, ``Tensor[..., M, 4]`` -> ``Tensor[..., N, M]``."""
    lt = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rb = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).prod(-1)
    return inter / (area1[..., :, None] + area2[..., None, :] - inter + eps)


def wh_iou(wh1: Tensor, wh2: Tensor) -> Tensor:
    """IoU of boxes sharing a centre, from sizes: ``Tensor[N, 2]``, ``Tensor[M, 2]`` -> ``Tensor[N, M]``."""
    inter = torch.minimum(wh1[:, None, 0], wh2[None, :, 0]) * torch.minimum(wh1[:, None, 1], wh2[None, :, 1])
    return inter / (wh1[:, None].prod(-1) + wh2[None, :].prod(-1) - inter)
