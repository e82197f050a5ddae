"""The COCO evaluator wrapper: perfect detections score 1, misses and misplaced boxes score less, the CLI prints a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yolo_server.evaluation.coco import CocoDataset, coco_evaluate, detection_rows, format_table
from yolo_server.training.scenes import write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> CocoDataset:
    return CocoDataset.load(write_dataset(tmp_path_factory.mktemp("coco"), count=4, seed=11, progress=False))


def _rows(dataset: CocoDataset, shift: float = 0.0, drop_every: int = 0) -> list[dict]:
    rows = []
    for i, ann in enumerate(dataset.data["annotations"]):
        if drop_every and i % drop_every == 0:
            continue
        x, y, w, h = ann["bbox"]
        rows += detection_rows(
            ann["image_id"],
            np.array([[x + shift * w, y, x + w + shift * w, y + h]]),
            np.array([0.9]),
            np.array([ann["category_id"] - 1]),
            [1, 2, 3],
        )
    return rows


def test_perfect_detections_score_one(dataset: CocoDataset) -> None:
    result = coco_evaluate(dataset, _rows(dataset))
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(1.0)
    assert set(result.per_class) == {"circle", "rectangle", "triangle"}


def test_shifted_and_missing_detections_score_less(dataset: CocoDataset) -> None:
    shifted = coco_evaluate(dataset, _rows(dataset, shift=0.2))  # IoU 0.8/1.2 = 0.67: counts at 0.5, not above 0.65
    assert shifted.map50 == pytest.approx(1.0) and shifted.map50_95 < 0.5
    missing = coco_evaluate(dataset, _rows(dataset, drop_every=2))
    assert missing.map50 < 0.8
    assert coco_evaluate(dataset, []).map50 == 0.0


def test_category_mapping_by_name(dataset: CocoDataset) -> None:
    assert dataset.category_ids(("circle", "rectangle", "triangle")) == [1, 2, 3]
    assert dataset.category_ids(("triangle", "circle", "rectangle")) == [3, 1, 2]
    assert dataset.category_ids(None) == [1, 2, 3]


def test_table_lists_every_class(dataset: CocoDataset) -> None:
    table = format_table(coco_evaluate(dataset, _rows(dataset)), "title")
    assert table.splitlines()[0] == "title" and "triangle" in table and "1.0000" in table
    assert Path(dataset.path).is_file()
