"""COCO annotations in, detections scored with ``pycocotools``' ``COCOeval`` (bbox).

Detections are COCO result rows: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.
Category ids follow the annotation file; a detector's class ``i`` maps to the
category whose name is its ``i``-th class name (or, without names, to the ``i``-th
category by id).

Example:
    >>> dataset = CocoDataset.load("data/val/annotations.json")
    >>> result = coco_evaluate(dataset, rows)
    >>> result.map50, result.map50_95
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAP_SCORE_THRESHOLD = 0.005  # darknet's `detector map`: keep nearly every box, let the ranking decide


@dataclass(frozen=True)
class CocoImage:
    """One image of the annotation file: COCO id and its path on disk."""

    id: int
    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class CocoDataset:
    """An annotation file and its images (paths resolved next to the file)."""

    path: Path
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, annotations: str | Path) -> CocoDataset:
        path = Path(annotations)
        return cls(path, json.loads(path.read_text()))

    @property
    def images(self) -> list[CocoImage]:
        root = self.path.parent
        return [
            CocoImage(int(i["id"]), root / i["file_name"], int(i["width"]), int(i["height"]))
            for i in self.data["images"]
        ]

    @property
    def categories(self) -> list[dict[str, Any]]:
        return sorted(self.data["categories"], key=lambda c: int(c["id"]))

    def category_ids(self, class_names: Sequence[str] | None) -> list[int]:
        """Category id for each detector class index."""
        by_name = {c["name"]: int(c["id"]) for c in self.categories}
        if class_names and all(name in by_name for name in class_names):
            return [by_name[name] for name in class_names]
        return [int(c["id"]) for c in self.categories]


@dataclass(frozen=True)
class CocoResult:
    """mAP figures: overall and per category (AP@0.5, AP@[.5:.95]), plus the image and detection counts."""

    map50: float
    map50_95: float
    per_class: dict[str, tuple[float, float]]
    images: int
    detections: int
    stats: tuple[float, ...]


def detection_rows(
    image_id: int, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """xyxy float ``[K, 4]``, scores ``[K]``, class indices ``[K]`` -> COCO result rows."""
    rows = []
    for box, score, cls in zip(
        np.asarray(boxes, np.float64), np.asarray(scores, np.float64), np.asarray(class_ids), strict=True
    ):
        x1, y1, x2, y2 = (float(v) for v in box)
        rows.append(
            {
                "image_id": image_id,
                "category_id": category_ids[int(cls)],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(score),
            }
        )
    return rows


def coco_evaluate(dataset: CocoDataset, rows: Sequence[dict[str, Any]], max_detections: int = 100) -> CocoResult:
    """Run ``COCOeval`` (bbox, all images, area range all, up to ``max_detections`` per image)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(dataset.data))
        gt.createIndex()
        dt = gt.loadRes(list(rows)) if rows else COCO()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.maxDets = [1, 10, max_detections]
        if rows:
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
    if not rows:
        return CocoResult(0.0, 0.0, {c["name"]: (0.0, 0.0) for c in dataset.categories}, len(dataset.images), 0, ())
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        name = gt.cats[cat_id]["name"]
        p = precision[:, :, k, 0, -1]
        ap = float(np.mean(p[p > -1])) if np.any(p > -1) else 0.0
        p50 = precision[0, :, k, 0, -1]
        ap50 = float(np.mean(p50[p50 > -1])) if np.any(p50 > -1) else 0.0
        per_class[name] = (ap50, ap)
    stats = tuple(float(s) for s in evaluator.stats)
    return CocoResult(stats[1], stats[0], per_class, len(dataset.images), len(rows), stats)


def format_table(result: CocoResult, title: str = "") -> str:
    """A plain-text table of per-class and overall AP."""
    lines = [title] if title else []
    lines.append(f"{'class':<14}{'AP@0.5':>10}{'AP@[.5:.95]':>14}")
    lines.append("-" * 38)
    for name, (ap50, ap) in result.per_class.items():
        lines.append(f"{name:<14}{ap50:>10.4f}{ap:>14.4f}")
    lines.append("-" * 38)
    lines.append(f"{'mAP':<14}{result.map50:>10.4f}{result.map50_95:>14.4f}")
    lines.append(f"{result.images} images, {result.detections} detections")
    return "\n".join(lines)
