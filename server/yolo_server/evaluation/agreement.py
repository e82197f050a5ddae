"""How far two detectors agree: the share of reference boxes that the other finds again.

Used where a faster path (bf16, FP16, TensorRT) is checked against fp32 eager on the same frames.

Example:
    >>> matched_share(detect_fp32(frames), detect_fp16(frames), iou_threshold=0.9)
    0.998
"""

from __future__ import annotations

from collections.abc import Sequence

from yolo_server.ops.boxes import box_iou
from yolo_server.ops.postprocess import Detections


def matched_share(
    reference: Sequence[Detections], candidate: Sequence[Detections], iou_threshold: float = 0.9
) -> float:
    """Share of ``reference`` boxes, over all images, with a same-class ``candidate`` box at IoU >= the threshold.

    Both are one :class:`Detections` per image, in the same image order; 1.0 when the reference found nothing.
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference images, {len(candidate)} candidate images")
    matched = total = 0
    for ref, other in zip(reference, candidate, strict=True):
        total += len(ref)
        if len(ref) and len(other):
            iou = box_iou(ref.boxes, other.boxes)  # numpy in, numpy out (the ops are array-API)
            same_class = ref.class_ids[:, None] == other.class_ids[None, :]
            matched += int(((iou >= iou_threshold) & same_class).any(1).sum())
    return matched / total if total else 1.0
