"""Shared test helpers: the official cfgs and the demo model's files, and official cfg text at other sizes."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.paths import ROOT
from yolo_server.darknet.cfg import resize_cfg_text

CFG_DIR = ROOT / "models" / "darknet"
COCO_NAMES = CFG_DIR / "coco.names"
# the shipped demo detector (models/shapes), trained by yolo_server.training
DEMO_DIR = ROOT / "models" / "shapes"
DEMO_CFG, DEMO_WEIGHTS, DEMO_NAMES = (
    DEMO_DIR / name for name in ("yolov4-tiny-shapes.cfg", "yolov4-tiny-shapes.weights", "shapes.names")
)


def cfg_path(name: str) -> Path:
    return CFG_DIR / f"{name}.cfg"


def cfg_text_at_size(name: str, width: int, height: int, opencv_raw_yolo: bool = False) -> str:
    """The official cfg text with [net] width/height replaced.

    ``opencv_raw_yolo`` adds ``thresh=0`` and ``nms_threshold=0`` to each [yolo]
    so OpenCV DNN returns every candidate, undecimated: its importer otherwise zeroes the class scores
    under ``thresh`` (default 0.2) and runs NMS at ``nms_threshold`` (default 0.4).
    """
    text = resize_cfg_text(cfg_path(name).read_text(), width, height)
    if opencv_raw_yolo:
        text = text.replace("[yolo]", "[yolo]\nthresh=0\nnms_threshold=0")
    return text
