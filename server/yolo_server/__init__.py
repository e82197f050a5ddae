"""Darknet YOLOv4 -> PyTorch -> Triton Inference Server.

Heavy modules (torch) load lazily so that ``import yolo_server`` stays cheap:

    >>> from yolo_server import Detector
    >>> detector = Detector("models/darknet/yolov4-tiny.cfg", "yolov4-tiny.weights", names="models/darknet/coco.names")
    >>> detections = detector.detect([image_rgb])[0]
"""

from __future__ import annotations

from typing import Any

__all__ = ["Detector", "load_darknet"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Detector":
        from yolo_server.pipeline import Detector

        return Detector
    if name == "load_darknet":
        from yolo_server.darknet import load_darknet

        return load_darknet
    raise AttributeError(name)
