"""The accuracy gate an INT8 IR passes before a build keeps it: judged as users judge a detector.

With annotations (COCO), INT8 must keep mAP@0.5 within :data:`MAX_MAP50_DROP` and mAP@[.5:.95] within
:data:`MAX_MAP_DROP` of fp32, at darknet's mAP score threshold. Without them, at least
:data:`MIN_AGREEMENT` of fp32's boxes must be found again at IoU >= :data:`AGREEMENT_IOU` with the same
label, at the repository's thresholds. A per-box IoU >= 0.9 test (the bf16 one) would refuse a quantized
detector for boxes moved by two pixels, which no mAP notices.

Example:
    >>> report = coco_gate(fp32_detector, int8_detector, CocoDataset.load("val/annotations.json"), "scaled")
    >>> report.passed, report.text
    (True, 'passed: mAP@0.5 0.9507 (fp32 0.9508, -0.0001, limit -0.0050); ...')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from yolo_server.evaluation.agreement import matched_share
from yolo_server.evaluation.coco import MAP_SCORE_THRESHOLD, CocoDataset, coco_evaluate
from yolo_server.evaluation.runners import detect_inprocess

MAX_MAP50_DROP = 0.005
MAX_MAP_DROP = 0.01
MIN_AGREEMENT = 0.97
AGREEMENT_IOU = 0.5


@dataclass(frozen=True)
class Figure:
    """One measured figure against its limit: INT8's value, fp32's, and the largest drop allowed."""

    name: str
    int8: float
    fp32: float
    max_drop: float

    @property
    def drop(self) -> float:
        return self.fp32 - self.int8

    @property
    def passed(self) -> bool:
        return self.drop <= self.max_drop + 1e-12

    def describe(self) -> str:
        return f"{self.name} {self.int8:.4f} (fp32 {self.fp32:.4f}, {-self.drop:+.4f}, limit {-self.max_drop:+.4f})"


@dataclass(frozen=True)
class GateReport:
    """What was checked, on what, and whether INT8 passed."""

    figures: tuple[Figure, ...]
    checked_on: str

    @property
    def passed(self) -> bool:
        return all(figure.passed for figure in self.figures)

    @property
    def shortfall(self) -> str:
        """By how much each failed figure missed its limit; "" when INT8 passed."""
        return "; ".join(
            f"{f.name} dropped {f.drop:.4f}, {f.drop - f.max_drop:.4f} more than the {f.max_drop:g} allowed"
            for f in self.figures
            if not f.passed
        )

    @property
    def text(self) -> str:
        """One line for the model config's parameters and the build log."""
        verdict = "passed" if self.passed else "FAILED"
        return f"{verdict}: {'; '.join(f.describe() for f in self.figures)}; on {self.checked_on}"


def coco_gate(fp32: Any, int8: Any, dataset: CocoDataset, jpeg_decode: str) -> GateReport:
    """mAP of two :class:`yolo_server.pipeline.Detector` (same thresholds, set here to darknet's) on ``dataset``,
    its JPEGs decoded as the server will (``jpeg_decode``)."""
    results = {}
    for name, detector in (("fp32", fp32), ("int8", int8)):
        detector.config = dataclasses.replace(detector.config, score_threshold=MAP_SCORE_THRESHOLD)
        rows = detect_inprocess(detector, dataset, progress=False, jpeg_decode=jpeg_decode)
        results[name] = coco_evaluate(dataset, rows)
    figures = (
        Figure("mAP@0.5", results["int8"].map50, results["fp32"].map50, MAX_MAP50_DROP),
        Figure("mAP@[.5:.95]", results["int8"].map50_95, results["fp32"].map50_95, MAX_MAP_DROP),
    )
    return GateReport(figures, f"{len(dataset.images)} annotated images ({dataset.path.name})")


def agreement_gate(fp32: Any, int8: Any, inputs: Sequence[Any], batch: int = 8) -> GateReport:
    """Share of fp32's boxes INT8 finds again, on prepared inputs (:class:`~yolo_server.export.calibration.CalibrationInput`)."""
    found: dict[str, list[Any]] = {"fp32": [], "int8": []}
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        tensor = np.concatenate([item.tensor for item in chunk])
        for name, detector in (("fp32", fp32), ("int8", int8)):
            found[name] += detector.detect_tensor(tensor, [item.placement for item in chunk])
    share = matched_share(found["fp32"], found["int8"], AGREEMENT_IOU)
    boxes = sum(len(detections) for detections in found["fp32"])
    figure = Figure(f"fp32 boxes found again at IoU>={AGREEMENT_IOU:g}", share, 1.0, 1.0 - MIN_AGREEMENT)
    return GateReport((figure,), f"{len(inputs)} unannotated images, {boxes} fp32 boxes")
