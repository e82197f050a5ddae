"""Shared test helpers: the official cfgs and the demo model's files, cfg copies at other sizes, and calibrated weights written with the project's writer."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.paths import ROOT
from yolo_server.darknet import DarknetSpec, load_spec, write_weights
from yolo_server.darknet.random_weights import calibrated_random_weights

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
    text = cfg_path(name).read_text()
    text = re.sub(r"^width=\d+", f"width={width}", text, flags=re.M)
    text = re.sub(r"^height=\d+", f"height={height}", text, flags=re.M)
    if opencv_raw_yolo:
        text = text.replace("[yolo]", "[yolo]\nthresh=0\nnms_threshold=0")
    return text


def write_random_model(
    directory: Path, name: str, width: int, height: int, seed: int = 0
) -> tuple[Path, Path, DarknetSpec]:
    """Write ``<name>.cfg`` at the size and calibrated random ``<name>.weights``; returns (cfg, weights, spec)."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / f"{name}-{width}x{height}.cfg"
    cfg.write_text(cfg_text_at_size(name, width, height))
    spec = load_spec(cfg)
    weights = directory / f"{name}-{width}x{height}-seed{seed}.weights"
    write_weights(weights, spec, calibrated_random_weights(spec, seed))
    return cfg, weights, spec
