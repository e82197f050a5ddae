"""matched_share: the share of reference boxes found again (same class, IoU at or over the threshold)."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_server.evaluation.agreement import matched_share
from yolo_server.ops.postprocess import Detections


def detections(boxes: list[list[float]], classes: list[int]) -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4), np.linspace(0.9, 0.5, len(classes), dtype=np.float32),
        np.array(classes, np.int32),
    )  # fmt: skip


def test_on_the_threshold_counts_and_below_does_not() -> None:
    reference = [detections([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1])]
    exactly = [detections([[0, 0, 10, 9], [20, 20, 30, 30]], [0, 1])]  # IoU 0.9 exactly, and 1.0
    below = [detections([[0, 0, 10, 8.9], [20, 20, 30, 30]], [0, 1])]  # IoU 0.89
    assert matched_share(reference, exactly, 0.9) == 1.0
    assert matched_share(reference, below, 0.9) == 0.5


def test_class_must_agree_and_images_are_not_mixed() -> None:
    reference = [detections([[0, 0, 10, 10]], [0]), detections([[50, 50, 60, 60]], [2])]
    assert matched_share(reference, [detections([[0, 0, 10, 10]], [1]), detections([], [])]) == 0.0
    swapped = [detections([[50, 50, 60, 60]], [2]), detections([[0, 0, 10, 10]], [0])]
    assert matched_share(reference, swapped) == 0.0
    assert matched_share(reference, reference) == 1.0


def test_nothing_to_find_is_full_agreement_and_lengths_must_match() -> None:
    assert matched_share([detections([], [])], [detections([[0, 0, 1, 1]], [0])]) == 1.0
    with pytest.raises(ValueError, match="1 reference images, 2 candidate images"):
        matched_share([detections([], [])], [detections([], [])] * 2)
