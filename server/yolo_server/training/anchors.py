"""Anchors by k-means on IoU (distance ``1 - IoU`` of boxes sharing a centre), as darknet's ``calc_anchors``.

Example:
    >>> anchors = kmeans_anchors(box_sizes, k=6, seed=0)        # float32 [6, 2] (w, h), sorted by area
    >>> set_cfg_anchors("models/shapes/yolov4-tiny-shapes.cfg", anchors)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from yolo_server.ops.boxes import size_iou


def _size_iou(sizes: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """:func:`yolo_server.ops.boxes.size_iou` on float64 arrays: ``[N, 2]`` x ``[K, 2]`` -> ``[N, K]``."""
    return size_iou(
        torch.from_numpy(np.asarray(sizes, np.float64)), torch.from_numpy(np.asarray(centres, np.float64))
    ).numpy()


def kmeans_anchors(wh: np.ndarray, k: int = 6, seed: int = 0, iterations: int = 300) -> np.ndarray:
    """k-means with ``1 - IoU`` distance and median centres (k-means++ style seeding).

    Args:
        wh: ``[N, 2]`` box widths and heights (network pixels), N >= k.
    Returns:
        float32 ``[k, 2]`` anchors sorted by area, ascending.
    """
    wh = np.asarray(wh, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centres = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        distance = (1 - _size_iou(wh, np.stack(centres))).min(1) ** 2
        centres.append(wh[rng.choice(len(wh), p=distance / distance.sum())])
    centres_arr = np.stack(centres)
    assignment = np.full(len(wh), -1)
    for _ in range(iterations):
        new = _size_iou(wh, centres_arr).argmax(1)
        if np.array_equal(new, assignment):
            break
        assignment = new
        for j in range(k):
            if np.any(assignment == j):
                centres_arr[j] = np.median(wh[assignment == j], axis=0)
    order = np.argsort(centres_arr.prod(1))
    return centres_arr[order].astype(np.float32)


def mean_best_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """Average over boxes of the best anchor IoU (darknet prints it as ``avg IoU``)."""
    return float(_size_iou(np.asarray(wh, np.float64), np.asarray(anchors, np.float64)).max(1).mean())


def format_anchors(anchors: np.ndarray) -> str:
    """``[k, 2]`` -> darknet's ``w,h, w,h, ...`` with whole pixels."""
    return ", ".join(f"{int(round(w))},{int(round(h))}" for w, h in anchors)


def set_cfg_anchors(cfg_path: str | Path, anchors: np.ndarray) -> None:
    """Rewrite every ``anchors=`` line of a cfg in place."""
    path = Path(cfg_path)
    text = re.sub(r"(?m)^anchors\s*=.*$", "anchors=" + format_anchors(anchors), path.read_text())
    path.write_text(text)
