"""Slow oracles of the box math, one box pair at a time in plain float64 (torchvision's test style).

Example:
    >>> reference_iou([0, 0, 2, 2], [1, 1, 3, 3])
    0.14285714285714285
    >>> reference_diou([0, 0, 2, 2], [1, 1, 3, 3], beta=0.6) < reference_iou([0, 0, 2, 2], [1, 1, 3, 3])
    True
"""

from __future__ import annotations

from collections.abc import Sequence


def reference_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes; 0 when the union is empty."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_diou(a: Sequence[float], b: Sequence[float], beta: float = 0.6) -> float:
    """darknet's ``box_diou_nms``, written out: IoU - (d^2 / c^2)^beta (plain IoU when the enclosing box is a point)."""
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    c = cw * cw + ch * ch
    iou = reference_iou(a, b)
    if c == 0:
        return iou
    dx = (a[0] + a[2]) / 2 - (b[0] + b[2]) / 2
    dy = (a[1] + a[3]) / 2 - (b[1] + b[3]) / 2
    return iou - ((dx * dx + dy * dy) / c) ** beta
