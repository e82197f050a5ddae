"""The YOLOv4 training loss: CIoU boxes, BCE objectness (with ``ignore_thresh``), BCE classes with label smoothing.

Predicted boxes come from the served ``[yolo]`` decode itself
(:func:`yolo_server.ops.decode.yolo_boxes`, ``new_coords=0``), only with the
training clamp :data:`~yolo_server.ops.decode.TRAINING_MAX_LOG_SIZE` on ``tw``/``th``.

Example:
    >>> criterion = YoloLoss(spec)
    >>> total, parts = criterion(model(images), gt, net_size=(320, 320))   # parts: box, obj, cls
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from yolo_server.darknet import DarknetSpec
from yolo_server.ops.boxes import box_iou, paired_box_ciou
from yolo_server.ops.decode import TRAINING_MAX_LOG_SIZE, yolo_boxes
from yolo_server.training.targets import IOU_THRESHOLD, assign_targets


@dataclass(frozen=True)
class LossWeights:
    """Relative weights and knobs of :class:`YoloLoss`."""

    box: float = 0.075
    obj: float = 1.0
    cls: float = 0.15
    label_smoothing: float = 0.1
    ignore_threshold: float = 0.7
    iou_threshold: float = IOU_THRESHOLD


def smooth_labels(classes: Tensor, num_classes: int, eps: float) -> Tensor:
    """One-hot targets with darknet/YOLOv4 label smoothing.

    Args:
        classes: ``Tensor[P]`` int64 class indices.
    Returns:
        ``Tensor[P, C]``: ``1 - eps/2`` for the class, ``eps/2`` elsewhere.
    """
    target = torch.full((classes.shape[0], num_classes), eps / 2, dtype=torch.float32, device=classes.device)
    target[torch.arange(classes.shape[0], device=classes.device), classes] = 1.0 - eps / 2
    return target


class YoloLoss:
    """Loss of all ``[yolo]`` heads of a cfg (``new_coords=0`` heads only).

    ``__call__(outputs, gt, net_size)``: ``outputs`` per head ``Tensor[B, A*(5+C), h, w]``
    (any float dtype; computed in float32), ``gt`` ``Tensor[M, 6]`` (image, class,
    x1, y1, x2, y2 in network pixels). Returns ``(total * B, {"box", "obj", "cls"})``.
    """

    def __init__(self, spec: DarknetSpec, weights: LossWeights = LossWeights()) -> None:
        heads = spec.yolo_layers
        if any(head.new_coords for head in heads):
            raise ValueError("training supports new_coords=0 heads only")
        self.heads = heads
        self.weights = weights
        self.num_classes = spec.num_classes
        self.anchors, self.masks = anchors_and_masks(spec)

    def __call__(self, outputs: list[Tensor], gt: Tensor, net_size: tuple[int, int]) -> tuple[Tensor, dict[str, float]]:
        net_w, net_h = net_size
        batch = outputs[0].shape[0]
        grids = [(o.shape[2], o.shape[3]) for o in outputs]
        positives = assign_targets(gt, self.anchors, self.masks, grids, net_size, self.weights.iou_threshold)
        gt_boxes, _ = _padded_boxes(gt, batch)  # [B, G, 4]
        device = outputs[0].device
        loss_box = torch.zeros((), device=device)
        loss_obj = torch.zeros((), device=device)
        loss_cls = torch.zeros((), device=device)
        n_pos = 0
        for out, head, mask, pos in zip(outputs, self.heads, self.masks, positives, strict=True):
            b, _, grid_h, grid_w = out.shape
            a = len(mask)
            x = out.float().view(b, a, 5 + self.num_classes, grid_h, grid_w).permute(0, 1, 3, 4, 2)  # [B, A, h, w, 5+C]
            boxes = yolo_boxes(out, head, net_w, net_h, max_log_size=TRAINING_MAX_LOG_SIZE)  # [B, A, h, w, 4]
            obj_target = torch.zeros(x.shape[:4], device=device)
            obj_weight = torch.ones_like(obj_target)
            with torch.no_grad():  # darknet's ignore_thresh: good-enough negatives are not pushed down
                if gt_boxes.shape[1]:
                    best = box_iou(boxes.detach().view(b, -1, 4), gt_boxes).amax(-1).view_as(obj_target)
                    obj_weight[best > self.weights.ignore_threshold] = 0.0
            if len(pos):
                chosen = x[pos.image, pos.anchor, pos.row, pos.col]  # [P, 5+C]
                pred_boxes = boxes[pos.image, pos.anchor, pos.row, pos.col]
                target_boxes = gt[pos.gt, 2:6]
                overlap = paired_box_ciou(pred_boxes, target_boxes)
                loss_box = loss_box + (1.0 - overlap).sum()
                obj_target[pos.image, pos.anchor, pos.row, pos.col] = overlap.detach().clamp(min=0).to(obj_target.dtype)
                obj_weight[pos.image, pos.anchor, pos.row, pos.col] = 1.0
                cls_target = smooth_labels(gt[pos.gt, 1].long(), self.num_classes, self.weights.label_smoothing)
                loss_cls = loss_cls + F.binary_cross_entropy_with_logits(chosen[:, 5:], cls_target, reduction="sum")
                n_pos += len(pos)
            bce = F.binary_cross_entropy_with_logits(x[..., 4], obj_target, reduction="none")
            loss_obj = loss_obj + (bce * obj_weight).sum() / obj_weight.sum().clamp(min=1.0)
        n = max(n_pos, 1)
        w = self.weights
        parts = {
            "box": float(loss_box.detach()) / n,
            "obj": float(loss_obj.detach()),
            "cls": float(loss_cls.detach()) / (n * self.num_classes),
        }
        total = w.box * loss_box / n + w.obj * loss_obj + w.cls * loss_cls / (n * self.num_classes)
        return total * batch, parts


def anchors_and_masks(spec: DarknetSpec) -> tuple[Tensor, list[tuple[int, ...]]]:
    """The cfg's used anchors ``Tensor[K, 2]`` and each head's mask into them (parsed heads hold masked anchors)."""
    anchors: list[tuple[float, float]] = []
    masks: list[tuple[int, ...]] = []
    for head in spec.yolo_layers:
        mask = []
        for anchor in head.anchors:
            if anchor not in anchors:
                anchors.append(anchor)
            mask.append(anchors.index(anchor))
        masks.append(tuple(mask))
    return torch.tensor(anchors, dtype=torch.float32), masks


def _padded_boxes(gt: Tensor, batch: int) -> tuple[Tensor, Tensor]:
    """``Tensor[M, 6]`` -> xyxy ``Tensor[B, G, 4]`` padded with empty boxes, and counts ``Tensor[B]``."""
    counts = torch.bincount(gt[:, 0].long(), minlength=batch)
    size = int(counts.max()) if gt.shape[0] else 0
    padded = torch.zeros(batch, size, 4, device=gt.device)
    if size:
        order = torch.argsort(gt[:, 0], stable=True)
        image = gt[order, 0].long()
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(gt.shape[0], device=gt.device) - start[image]
        padded[image, slot] = gt[order, 2:6].float()
    return padded, counts
