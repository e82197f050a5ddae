"""Scenes, mosaic box bookkeeping, k-means anchors and the .weights export of the trainable network."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.darknet_files import DEMO_CFG
from tests.helpers.reference_boxes import reference_iou
from yolo_client.scenes import CLASS_NAMES, MAX_IOU, generate_scene
from yolo_server.darknet import load_darknet, load_spec, write_weights
from yolo_server.training.anchors import format_anchors, kmeans_anchors, mean_best_iou
from yolo_server.training.augment import Pool, flip, mosaic, paste, place_boxes, sample_batch
from yolo_server.training.network import build_trainable, export_weights
from yolo_server.training.scenes import write_dataset

CFG = DEMO_CFG


def test_scenes_are_deterministic_and_follow_the_rules() -> None:
    for index in range(12):
        scene = generate_scene(3, index)
        again = generate_scene(3, index)
        assert np.array_equal(scene.image, again.image) and np.array_equal(scene.boxes, again.boxes)
        height, width = scene.image.shape[:2]
        assert 240 <= width <= 1000 and 240 <= height <= 1000
        assert 1 <= len(scene.boxes) <= 12 and 70 <= scene.quality <= 95
        sides = (scene.boxes[:, 2:] - scene.boxes[:, :2]).max(1)
        assert np.all(sides >= 12 - 1e-3) and np.all(sides <= 180 + 1e-3)
        assert (
            np.all(scene.boxes[:, :2] >= 0)
            and np.all(scene.boxes[:, 2] <= width)
            and np.all(scene.boxes[:, 3] <= height)
        )
        for i, j in itertools.combinations(range(len(scene.boxes)), 2):
            assert reference_iou(scene.boxes[i].tolist(), scene.boxes[j].tolist()) <= MAX_IOU + 1e-6
        assert set(scene.classes.tolist()) <= set(range(len(CLASS_NAMES)))
    assert not np.array_equal(generate_scene(3, 0).image[:50, :50], generate_scene(4, 0).image[:50, :50])


def test_write_dataset_is_coco(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, count=3, seed=5, progress=False)
    data = json.loads(path.read_text())
    assert [c["name"] for c in data["categories"]] == list(CLASS_NAMES)
    assert len(data["images"]) == 3 and all((tmp_path / i["file_name"]).is_file() for i in data["images"])
    scene = generate_scene(5, 1)
    rows = [a for a in data["annotations"] if a["image_id"] == 2]
    assert len(rows) == len(scene.boxes)
    x1, y1, x2, y2 = scene.boxes[0]
    assert rows[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.01)
    assert rows[0]["category_id"] == int(scene.classes[0]) + 1


def test_place_boxes_scales_shifts_and_clips() -> None:
    boxes = np.array([[10, 10, 30, 30], [80, 80, 100, 100], [0, 40, 20, 60]], np.float32)
    classes = np.array([0, 1, 2])
    out, kept = place_boxes(boxes, classes, 2.0, (5.0, -10.0), (0.0, 0.0, 100.0, 100.0))
    # box 0 -> (25, 10, 65, 50); box 1 -> (165, 150, ...) leaves the region; box 2 -> (5, 70, 45, 110) keeps 30/40
    assert kept.tolist() == [0, 2]
    assert out.tolist() == [[25.0, 10.0, 65.0, 50.0], [5.0, 70.0, 45.0, 100.0]]
    _, kept = place_boxes(boxes, classes, 2.0, (5.0, -10.0), (0.0, 0.0, 100.0, 100.0), min_visible=0.8)
    assert kept.tolist() == [0]


def test_paste_writes_only_inside_the_region() -> None:
    canvas = np.zeros((10, 10, 3), np.uint8)
    paste(canvas, np.full((4, 4, 3), 200, np.uint8), 1.0, (3, 3), (0, 0, 5, 5))
    assert (
        canvas[3:5, 3:5].min() == 200 and canvas[5:].max() == 0 and canvas[:, 5:].max() == 0 and canvas[:3].max() == 0
    )


def _marked_pool() -> Pool:
    """Four 100x100 scenes, each with one box painted white on black: boxes are checkable on the pixels."""
    images, boxes, classes = [], [], []
    for k in range(4):
        image = np.zeros((100, 100, 3), np.uint8)
        x1, y1 = 20 + 5 * k, 30 + 3 * k
        image[y1 : y1 + 30, x1 : x1 + 40] = 255
        images.append(image)
        boxes.append(np.array([[x1, y1, x1 + 40, y1 + 30]], np.float32))
        classes.append(np.array([k % 3]))
    return Pool(np.stack(images), tuple(boxes), tuple(classes))


def test_mosaic_boxes_sit_on_the_pasted_shapes() -> None:
    pool = _marked_pool()
    rng = np.random.default_rng(0)
    for _ in range(20):
        image, boxes, classes = mosaic(rng, pool, 96)
        assert len(boxes) == len(classes)
        white = image.min(-1) > 200
        for x1, y1, x2, y2 in boxes:
            inner = white[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1]
            assert inner.size and inner.mean() > 0.95  # the box covers paint
        # every painted blob larger than a few pixels is covered by some box
        covered = np.zeros_like(white)
        for x1, y1, x2, y2 in boxes:
            covered[int(y1) : int(np.ceil(y2)) + 1, int(x1) : int(np.ceil(x2)) + 1] = True
        assert (white & ~covered).sum() <= 0.5 * white.sum() + 4


def test_flip_mirrors_boxes() -> None:
    image = np.zeros((10, 20, 3), np.uint8)
    image[2:4, 1:5] = 255
    flipped, boxes = flip(image, np.array([[1.0, 2.0, 5.0, 4.0]], np.float32), True, True)
    assert boxes.tolist() == [[15.0, 6.0, 19.0, 8.0]]
    assert flipped[6:8, 15:19].min() == 255


def test_sample_batch_shapes_and_image_indices() -> None:
    pool = _marked_pool()
    images, gt = sample_batch(np.random.default_rng(1), pool, batch=6, size=64, mosaic_prob=0.5)
    assert images.shape == (6, 3, 64, 64) and images.dtype == np.float32 and 0 <= images.min() and images.max() <= 1
    assert gt.shape[1] == 6 and set(gt[:, 0].astype(int).tolist()) <= set(range(6))
    assert (
        np.all(gt[:, 4] > gt[:, 2])
        and np.all(gt[:, 5] > gt[:, 3])
        and np.all(gt[:, 2:] >= 0)
        and np.all(gt[:, 2:] <= 64)
    )


def test_kmeans_recovers_clustered_sizes() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[10, 10], [30, 60], [120, 100]], np.float64)
    wh = np.concatenate([c * rng.uniform(0.95, 1.05, size=(200, 2)) for c in centres])
    anchors = kmeans_anchors(wh, k=3, seed=0)
    assert np.allclose(anchors, centres, rtol=0.05)
    assert mean_best_iou(wh, anchors) > 0.9
    assert format_anchors(anchors[:1]) == "10,10"


def test_export_writes_darknet_weights_that_load_through_the_user_path(tmp_path: Path) -> None:
    spec = load_spec(CFG)
    model = build_trainable(spec, seed=1).train()
    with torch.no_grad():
        model(torch.rand(2, 3, 128, 128))  # move the BN running statistics
    model.eval()
    path = tmp_path / "m.weights"
    write_weights(path, spec, export_weights(model, seen=64))
    served, _ = load_darknet(CFG, path)
    x = torch.rand(1, 3, 160, 224)
    with torch.no_grad():
        for a, b in zip(model(x), served(x), strict=True):
            assert torch.allclose(a, b, atol=1e-4)
    assert path.stat().st_size < 25_000_000
