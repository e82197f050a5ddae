"""In-process pipeline vs OpenCV DNN on the same weights and images, measured side by side in one run.

    .venv/bin/python bench/bench_inprocess.py [--seconds 3] [--models demo,yolov4-tiny,yolov4]

For each model at 416 and batch 1 and 8 it prints images/s of our Detector (fp32
and bf16) and of OpenCV DNN on the same weights and frames, as ratios, twice:
``network`` (the forward pass alone: OpenCV's ``net.forward`` vs our module) and
``pipeline`` (frames -> detections: resize, forward, decode, threshold, NMS; OpenCV
with blobFromImages + NMSBoxesBatched). It also prints detections per image and
how many bf16 boxes match an fp32 box of the same class at IoU >= 0.9.

``demo`` is the shipped, trained demo detector on generated scenes: a realistic
number of candidates. ``yolov4-tiny`` and ``yolov4`` run calibrated random
weights, which fire everywhere (every image hits the 300-detection cap), so
their pipeline rows mostly time NMS over thousands of candidates, on both sides.
Both sides use the same 2 threads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from yolo_client.contract import DEFAULT_NMS_THRESHOLD, DEFAULT_SCORE_THRESHOLD
from yolo_client.scenes import draw_scene, generate_scene
from yolo_server.darknet.random_weights import write_random_model
from yolo_server.evaluation.agreement import matched_share
from yolo_server.pipeline import Detector
from yolo_server.precision import cpu_has_native_bf16

THREADS = 2
SIZE = 416
MODELS = Path(__file__).resolve().parents[1] / "models"
DEMO_CFG = MODELS / "shapes" / "yolov4-tiny-shapes.cfg"
DEMO_WEIGHTS = DEMO_CFG.with_suffix(".weights")


def images(count: int, seed: int = 0) -> list[np.ndarray]:
    """Synthetic RGB scenes (yolo_client.scenes) of mixed sizes: 640x480, 1280x720, 500x375 in turn."""
    rng = np.random.default_rng(seed)
    sizes = [(640, 480), (1280, 720), (500, 375)]
    return [draw_scene(rng, *sizes[i % len(sizes)]).image for i in range(count)]


def rate(run: Callable[[], object], batch: int, seconds: float) -> float:
    run()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += batch
    return count / (time.perf_counter() - start)


class OpenCVDetector:
    """OpenCV DNN's darknet path with the same thresholds: its [yolo] layer decodes and thresholds."""

    def __init__(
        self, cfg: Path, weights: Path, score: float = DEFAULT_SCORE_THRESHOLD, nms: float = DEFAULT_NMS_THRESHOLD
    ) -> None:
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.outputs = self.net.getUnconnectedOutLayersNames()
        self.score, self.nms = score, nms

    def forward(self, blob: np.ndarray) -> list[np.ndarray]:
        self.net.setInput(blob)
        return self.net.forward(self.outputs)

    def detect(self, frames: list[np.ndarray]) -> None:
        blob = cv2.dnn.blobFromImages(frames, 1 / 255.0, (SIZE, SIZE), swapRB=False, crop=False)
        rows = np.concatenate([out.reshape(-1, out.shape[-1]) for out in self.forward(blob)])
        scores = rows[:, 5:]
        keep = scores.max(1) > self.score
        boxes = rows[keep, :4] * SIZE
        xywh = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, 2:]], 1)
        cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores[keep].max(1).tolist(), scores[keep].argmax(1).tolist(), self.score, self.nms
        )


@dataclass(frozen=True)
class Workload:
    cfg: Path
    weights: Path
    frames: list[np.ndarray]


def workload(name: str, tmp: Path) -> Workload:
    """The shipped demo model on generated scenes, or an official cfg on calibrated random weights."""
    if name == "demo":
        frames = [generate_scene(99, index).image for index in range(8)]
        return Workload(DEMO_CFG, DEMO_WEIGHTS, frames)
    cfg, weights, _ = write_random_model(MODELS / "darknet" / f"{name}.cfg", tmp, SIZE, SIZE)
    return Workload(cfg, weights, images(8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--models", default="demo,yolov4-tiny,yolov4")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)
    print(f"threads={THREADS} native_bf16={cpu_has_native_bf16()} torch={torch.__version__} opencv={cv2.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            work = workload(name, Path(tmp))
            fp32 = Detector(work.cfg, work.weights, precision="fp32", input_size=SIZE)
            bf16 = Detector(work.cfg, work.weights, precision="bf16", input_size=SIZE)
            opencv = OpenCVDetector(work.cfg, work.weights)
            for batch in (1, 8):
                chunk = work.frames[:batch]
                blob = cv2.dnn.blobFromImages(chunk, 1 / 255.0, (SIZE, SIZE), swapRB=False, crop=False)
                tensor = np.stack([fp32.preprocess(frame)[0] for frame in chunk])
                # partial binds this batch's inputs now (a lambda would read the loop's variables when called)
                rows = {
                    "network": [rate(partial(opencv.forward, blob), batch, args.seconds),
                                rate(partial(fp32.forward, tensor), batch, args.seconds),
                                rate(partial(bf16.forward, tensor), batch, args.seconds)],
                    "pipeline": [rate(partial(d.detect, chunk), batch, args.seconds) for d in (opencv, fp32, bf16)],
                }  # fmt: skip
                for what, (theirs, ours32, ours16) in rows.items():
                    print(
                        f"{name}@{SIZE} batch={batch} {what:8}: opencv {theirs:6.1f} img/s | ours fp32 {ours32:6.1f} "
                        f"img/s ({ours32 / theirs:.2f}x) | ours bf16 {ours16:6.1f} img/s ({ours16 / theirs:.2f}x)"
                    )
            per_image = sum(len(found) for found in fp32.detect(work.frames)) / len(work.frames)
            print(
                f"{name}: {per_image:.1f} detections per image; bf16 boxes matching fp32 at IoU>=0.9: "
                f"{matched_share(fp32.detect(work.frames), bf16.detect(work.frames)):.1%}"
            )


if __name__ == "__main__":
    main()
