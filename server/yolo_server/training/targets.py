"""YOLOv4 target assignment: which (head, anchor, cell) predicts which ground-truth box.

A ground truth is assigned to its best anchor over *all* anchors of the cfg
(the head holding that anchor in its ``mask`` gets it) and, as in YOLOv4
(``iou_thresh=0.213``), also to every other anchor whose width/height IoU with
it exceeds ``iou_threshold``, in whichever head holds that anchor. The cell is
the one containing the box centre.

Example:
    >>> pos = assign_targets(gt, anchors=all_anchors, masks=[(3, 4, 5), (0, 1, 2)],
    ...                      grids=[(13, 13), (26, 26)], net_size=(416, 416))
    >>> pos[0].image, pos[0].anchor, pos[0].row, pos[0].col, pos[0].gt   # each Tensor[P] int64
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from yolo_server.ops.boxes import size_iou

IOU_THRESHOLD = 0.213


@dataclass(frozen=True)
class Positives:
    """Positive predictions of one head, ``Tensor[P]`` int64 each.

    ``anchor`` indexes the head's own anchors (0..len(mask)-1); ``gt`` indexes the
    rows of the ground-truth tensor given to :func:`assign_targets`.
    """

    image: Tensor
    anchor: Tensor
    row: Tensor
    col: Tensor
    gt: Tensor

    def __len__(self) -> int:
        return int(self.gt.shape[0])


def assign_targets(
    gt: Tensor,
    anchors: Tensor,
    masks: Sequence[Sequence[int]],
    grids: Sequence[tuple[int, int]],
    net_size: tuple[int, int],
    iou_threshold: float = IOU_THRESHOLD,
) -> list[Positives]:
    """Assign ground truths to (head, anchor, cell).

    Args:
        gt: ``Tensor[M, 6]``: image index, class, x1, y1, x2, y2 (network pixels).
        anchors: ``Tensor[K, 2]`` all anchors of the cfg, (w, h) network pixels.
        masks: per head, the anchor indices it predicts.
        grids: per head, (grid_h, grid_w).
        net_size: (width, height) of the network input.
        iou_threshold: extra anchors above this width/height IoU also predict the box.
    Returns:
        One :class:`Positives` per head.
    """
    net_w, net_h = net_size
    wh = (gt[:, 4:6] - gt[:, 2:4]).clamp(min=1e-3)
    centre = (gt[:, 2:4] + gt[:, 4:6]) / 2
    ious = size_iou(wh, anchors)  # [M, K]
    best = ious.argmax(1)
    chosen = ious > iou_threshold
    chosen[torch.arange(gt.shape[0]), best] = True
    out = []
    for mask, (grid_h, grid_w) in zip(masks, grids, strict=True):
        gt_idx, anchor_idx = chosen[:, list(mask)].nonzero(as_tuple=True)
        col = (centre[gt_idx, 0] * grid_w / net_w).long().clamp(0, grid_w - 1)
        row = (centre[gt_idx, 1] * grid_h / net_h).long().clamp(0, grid_h - 1)
        out.append(Positives(gt[gt_idx, 0].long(), anchor_idx, row, col, gt_idx))
    return out
