"""In-process pipeline vs OpenCV DNN on the same weights and images, measured side by side in one run.

    .venv/bin/python bench/bench_inprocess.py [--seconds 3] [--models yolov4-tiny,yolov4]

For each model at 416 and batch 1 and 8 it prints images/s of our Detector (fp32
and bf16) and of OpenCV DNN (blobFromImages + forward + NMSBoxesBatched), the
ratios, and how many bf16 boxes match an fp32 box of the same class at IoU >= 0.9.
Both sides run the whole image -> detections path on the same 2 threads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.darknet_files import cfg_text_at_size, write_random_model  # noqa: E402
from yolo_server.export.precision import cpu_has_native_bf16  # noqa: E402
from yolo_server.ops.boxes import box_iou  # noqa: E402
from yolo_server.pipeline import Detector  # noqa: E402

THREADS = 2
SIZE = 416


def images(count: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth synthetic RGB frames of mixed sizes (calibrated random weights respond to them like to photos)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        height, width = [(480, 640), (720, 1280), (375, 500)][i % 3]
        coarse = rng.integers(0, 256, (height // 40, width // 40, 3), dtype=np.uint8)
        out.append(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC))
    return out


def rate(run: Callable[[], object], batch: int, seconds: float) -> float:
    run()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += batch
    return count / (time.perf_counter() - start)


class OpenCVDetector:
    """OpenCV DNN's darknet path with the same thresholds: its [yolo] layer decodes and thresholds."""

    def __init__(self, cfg: Path, weights: Path, score: float = 0.25, nms: float = 0.45) -> None:
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.outputs = self.net.getUnconnectedOutLayersNames()
        self.score, self.nms = score, nms

    def detect(self, frames: list[np.ndarray]) -> None:
        blob = cv2.dnn.blobFromImages(frames, 1 / 255.0, (SIZE, SIZE), swapRB=False, crop=False)
        self.net.setInput(blob)
        rows = np.concatenate([out.reshape(-1, out.shape[-1]) for out in self.net.forward(self.outputs)])
        scores = rows[:, 5:]
        keep = scores.max(1) > self.score
        boxes = rows[keep, :4] * SIZE
        xywh = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, 2:]], 1)
        cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores[keep].max(1).tolist(), scores[keep].argmax(1).tolist(), self.score, self.nms)


def matched_share(fp32: Detector, bf16: Detector, frames: list[np.ndarray]) -> float:
    """Share of fp32 boxes with a same-class bf16 box at IoU >= 0.9."""
    matched = total = 0
    for a, b in zip(fp32.detect(frames), bf16.detect(frames)):
        total += len(a)
        if len(a) and len(b):
            iou = box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes)).numpy()
            same = a.class_ids[:, None] == b.class_ids[None, :]
            matched += int(((iou >= 0.9) & same).any(1).sum())
    return matched / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--models", default="yolov4-tiny,yolov4")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)
    print(f"threads={THREADS} native_bf16={cpu_has_native_bf16()} torch={torch.__version__} opencv={cv2.__version__}")
    frames = images(8)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            cfg, weights, _ = write_random_model(Path(tmp), name, SIZE, SIZE)
            opencv_cfg = Path(tmp) / f"{name}-opencv.cfg"
            opencv_cfg.write_text(cfg_text_at_size(name, SIZE, SIZE))
            fp32 = Detector(cfg, weights, precision="fp32")
            bf16 = Detector(cfg, weights, precision="bf16")
            opencv = OpenCVDetector(opencv_cfg, weights)
            for batch in (1, 8):
                chunk = frames[:batch]
                ours32 = rate(lambda: fp32.detect(chunk), batch, args.seconds)
                ours16 = rate(lambda: bf16.detect(chunk), batch, args.seconds)
                theirs = rate(lambda: opencv.detect(chunk), batch, args.seconds)
                print(
                    f"{name}@{SIZE} batch={batch}: opencv {theirs:6.1f} img/s | ours fp32 {ours32:6.1f} img/s "
                    f"({ours32 / theirs:.2f}x) | ours bf16 {ours16:6.1f} img/s ({ours16 / theirs:.2f}x)"
                )
            print(f"{name}: bf16 boxes matching fp32 at IoU>=0.9: {matched_share(fp32, bf16, frames):.1%}")


if __name__ == "__main__":
    main()
