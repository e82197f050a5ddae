"""Detections for every image of a :class:`CocoDataset`: in process (:class:`~yolo_server.Detector`) or through a server (SDK).

Both read the image files' bytes: the server decodes them itself, the in-process
path with the server's own preprocess (:meth:`yolo_server.pipeline.Detector.detect_encoded`), by default
decoding every pixel (the darknet-parity oracle).

Example:
    >>> rows = detect_inprocess(detector, dataset)                         # COCO result rows
    >>> rows = detect_server(YoloClient("127.0.0.1:8001", model="yolov4_tiny_shapes"), dataset)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from yolo_server.evaluation.coco import CocoDataset, detection_rows


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="img", dynamic_ncols=True)


def detect_inprocess(
    detector: Any, dataset: CocoDataset, batch: int = 8, progress: bool = True, jpeg_decode: str = "full"
) -> list[dict[str, Any]]:
    """Run a :class:`yolo_server.pipeline.Detector` (its own thresholds) over the dataset; COCO result rows.

    ``jpeg_decode``: how its preprocess decodes JPEGs (``yolo_server.triton.imaging.JPEG_DECODES``).
    """
    category_ids = dataset.category_ids(detector.class_names)
    images = dataset.images
    rows: list[dict[str, Any]] = []
    with _progress(len(images), "in-process", progress) as bar:
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            encoded = [item.path.read_bytes() for item in chunk]
            for item, found in zip(chunk, detector.detect_encoded(encoded, jpeg_decode), strict=True):
                rows += detection_rows(item.id, found.boxes, found.scores, found.class_ids, category_ids)
            bar.update(len(chunk))
    return rows


def detect_server(
    client: Any, dataset: CocoDataset, progress: bool = True, max_detections: int | None = None
) -> list[dict[str, Any]]:
    """Send every image file through a :class:`yolo_client.YoloClient` (bytes transport); COCO result rows.

    The server's own score threshold applies (a client may only raise it): build the
    repository with ``--score-threshold 0.005`` for darknet-style mAP.
    """
    category_ids = dataset.category_ids(client.model_info().class_names)
    images = dataset.images
    rows: list[dict[str, Any]] = []
    with _progress(len(images), "server", progress) as bar:
        step = 16
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            results = client.detect_batch([item.path.read_bytes() for item in chunk], max_detections=max_detections)
            for item, found in zip(chunk, results, strict=True):
                boxes = np.array([d.box for d in found], np.float64).reshape(-1, 4)
                scores = np.array([d.score for d in found], np.float64)
                classes = np.array([d.class_id for d in found], np.int64)
                rows += detection_rows(item.id, boxes, scores, classes, category_ids)
            bar.update(len(chunk))
    return rows
