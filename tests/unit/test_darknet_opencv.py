"""Our port against OpenCV DNN's darknet importer, an independent implementation, on the same weights.

Tolerances, and why:
- OpenCV's importer uses BN eps 1e-6 (``setBatchNorm`` in its modules/dnn/src/darknet/darknet_io.cpp), darknet
  1e-5 (``DARKNET_BN_EPS``, yolo_server/darknet/model.py). On calibrated weights that alone moves yolov4's
  heads by several percent, so the parity runs build our model with OpenCV's eps: what remains is float32
  accumulation order (different conv kernels), measured here at ~1e-5 on yolov4-tiny and up to ~1e-3 at
  yolov4's heads after 110 layers, where our own float32 model is as far from its float64 run (seed 0 at
  416: w/h up to 8.5e-4 relative, scores up to 2.2e-4).
- w and h go through exp (or a square for new_coords=1), which turns a logit difference into a relative one,
  so they are compared relatively; x, y, objectness and class scores absolutely.
- With darknet's own eps the shallow yolov4-tiny still agrees within 2e-3, which pins that the eps is the only
  difference.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers.darknet_files import cfg_text_at_size
from yolo_server.darknet import DarknetModel, parse_cfg, write_weights
from yolo_server.darknet.random_weights import calibrated_random_weights, calibration_images
from yolo_server.ops.decode import decode_yolo

OPENCV_BN_EPS = 1e-6

# (cfg, width, height, abs tolerance for x/y/objectness/class scores, relative tolerance for w/h)
CASES = [
    ("yolov4-tiny", 416, 416, 1e-4, 1e-3),
    ("yolov4-tiny", 416, 256, 1e-4, 1e-3),  # non-square
    ("yolov4", 416, 416, 3e-3, 1e-2),
    ("yolov4", 608, 608, 3e-3, 1e-2),
    ("yolov4-csp", 512, 512, 3e-3, 1e-2),  # new_coords=1, letter_box=1
]


def _opencv_rows(cfg: Path, weights: Path, image: torch.Tensor) -> list[np.ndarray]:
    cv2.setNumThreads(2)
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setInput(image.numpy())
    return list(net.forward(net.getUnconnectedOutLayersNames()))


def _our_rows(model: DarknetModel, image: torch.Tensor) -> list[np.ndarray]:
    """Our decode, laid out like OpenCV: rows (row, col, anchor); x, y, w, h relative; obj; obj*prob."""
    spec = model.spec
    width, height = spec.net.width, spec.net.height
    with torch.no_grad():
        heads = model(image)
    boxes, objectness, probs = decode_yolo(heads, spec.yolo_layers, width, height)
    rows, start = [], 0
    for raw, head in zip(heads, spec.yolo_layers, strict=True):
        grid_h, grid_w = raw.shape[2:]
        count = head.num_anchors * grid_h * grid_w
        box, obj, prob = (
            boxes[0, start : start + count],
            objectness[0, start : start + count],
            probs[0, start : start + count],
        )
        start += count
        centre, size = (box[:, :2] + box[:, 2:]) / 2, box[:, 2:] - box[:, :2]
        scale = torch.tensor([width, height], dtype=box.dtype)
        table = torch.cat([centre / scale, size / scale, obj[:, None], obj[:, None] * prob], dim=1)
        table = table.reshape(head.num_anchors, grid_h, grid_w, -1).permute(1, 2, 0, 3).reshape(count, -1)
        rows.append(table.numpy())
    return rows


def _compare(ours: list[np.ndarray], theirs: list[np.ndarray], atol: float, wh_rtol: float) -> None:
    assert len(ours) == len(theirs)
    for head, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.shape == b.shape, f"head {head}: {a.shape} vs {b.shape}"
        xy = np.abs(a[:, :2] - b[:, :2]).max()
        wh = (np.abs(a[:, 2:4] - b[:, 2:4]) / np.maximum(np.abs(b[:, 2:4]), 1e-3)).max()
        scores = np.abs(a[:, 4:] - b[:, 4:]).max()
        assert xy <= atol, f"head {head}: x/y differ by {xy:.2e}"
        assert wh <= wh_rtol, f"head {head}: w/h differ by {wh:.2e} relative"
        assert scores <= atol, f"head {head}: objectness/class scores differ by {scores:.2e}"
        # the comparison is not vacuous: scores spread over (0, 1)
        assert b[:, 4].min() < 0.2 and b[:, 4].max() > 0.8


@pytest.mark.parametrize(("name", "width", "height", "atol", "wh_rtol"), CASES, ids=lambda v: str(v))
def test_decoded_candidates_match_opencv(
    tmp_path: Path, name: str, width: int, height: int, atol: float, wh_rtol: float
) -> None:
    cfg = tmp_path / "opencv.cfg"  # OpenCV-only [yolo] options, which our parser rightly rejects
    cfg.write_text(cfg_text_at_size(name, width, height, opencv_raw_yolo=True))
    spec = parse_cfg(cfg_text_at_size(name, width, height))
    weights = calibrated_random_weights(spec, seed=0)
    weights_file = tmp_path / "net.weights"
    write_weights(weights_file, spec, weights)
    image = F.interpolate(calibration_images(spec, seed=5, count=1), size=(height, width), mode="bilinear")

    theirs = _opencv_rows(cfg, weights_file, image)
    ours = _our_rows(DarknetModel(spec, weights, bn_eps=OPENCV_BN_EPS).eval(), image)
    _compare(ours, theirs, atol, wh_rtol)
    if name == "yolov4-tiny":
        _compare(_our_rows(DarknetModel(spec, weights).eval(), image), theirs, 2e-3, 1e-2)
