"""The post-process (decode + threshold + DIoU-NMS + map back) on numpy vs on torch, same heads, one run.

    .venv/bin/python bench/bench_postprocess.py [--seconds 2] [--batches 1 8] [--namespaces numpy torch]

The ops are written once against the array API: the cpu stubs run them on numpy, the in-process ``Detector`` and a
GPU instance on torch. Both run on one thread, as a served postprocess does (``postprocess_threads`` 1). Two sets of
heads of the default model (``model_repository/``, 416x416):

* ``demo``: its detector IR (OpenVINO) on generated shape scenes: the candidates a trained model gives;
* ``dense``: random logits with high objectness: thousands of candidates per image, so NMS dominates.

Prints ms per batch for each namespace and the ratio numpy / torch (above 1: numpy is slower).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from yolo_client.contract import DEFAULT_MODEL
from yolo_client.geometry import ResizeParams, letterbox
from yolo_client.scenes import draw_scene
from yolo_server.darknet.cfg import parse_cfg_file
from yolo_server.ops.config import postprocess_config_for
from yolo_server.ops.postprocess import postprocess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from isa import isa_line

ROOT = Path(__file__).resolve().parents[1]
VERSION_DIR = ROOT / "model_repository" / DEFAULT_MODEL / "1"  # the fused model: the cfg and the IR side by side


def demo_heads(batch: int, width: int, height: int) -> tuple[list[np.ndarray], list[ResizeParams]]:
    """The served IR's heads for ``batch`` generated 640x480 scenes."""
    from yolo_server.triton.runtime import OpenVINORunner

    rng = np.random.default_rng(0)
    prepared = [letterbox(draw_scene(rng, 640, 480).image, width, height, False) for _ in range(batch)]
    runner = OpenVINORunner(VERSION_DIR / "model.xml", num_threads=1)
    heads = runner(np.stack([tensor for tensor, _ in prepared]))
    return [np.ascontiguousarray(head, dtype=np.float32) for head in heads], [params for _, params in prepared]


def dense_heads(
    shapes: Sequence[tuple[int, ...]], placements: Sequence[ResizeParams], classes: int
) -> list[np.ndarray]:
    """Random logits shaped like the demo's heads, objectness and class logits raised: many candidates."""
    rng = np.random.default_rng(1)
    heads = []
    for shape in shapes:
        x = rng.standard_normal(shape, dtype=np.float32).reshape(shape[0], -1, 5 + classes, *shape[2:])
        x[:, :, 2:4] *= 0.5  # sizes near the anchors: plenty of overlap
        x[:, :, 4:] += 1.5
        heads.append(x.reshape(shape))
    return heads


def ms_per_call(run: Callable[[], object], seconds: float) -> float:
    run()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        run()
        count += 1
    return (time.perf_counter() - start) * 1000 / count


def converter(namespace: str) -> Callable[[np.ndarray], Any]:
    if namespace == "numpy":
        return lambda a: a
    import torch

    torch.set_num_threads(1)
    return torch.from_numpy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--namespaces", nargs="+", default=["numpy", "torch"], choices=["numpy", "torch"])
    args = parser.parse_args()

    spec = parse_cfg_file(VERSION_DIR / "model.cfg")
    width, height, classes = spec.net.width, spec.net.height, spec.num_classes
    config = postprocess_config_for(spec)
    print(isa_line())
    print(
        f"{'heads':6} {'batch':>5} {'dets/img':>8} {'cands/img':>9}  " + "  ".join(f"{n:>9}" for n in args.namespaces)
    )
    for batch in args.batches:
        demo, placements = demo_heads(batch, width, height)
        sets = {"demo": demo, "dense": dense_heads([h.shape for h in demo], placements, classes)}
        for label, heads in sets.items():
            times = {}
            for namespace in args.namespaces:
                arrays = [converter(namespace)(head) for head in heads]

                found = postprocess(arrays, spec.yolo_layers, width, height, placements, config)
                times[namespace] = ms_per_call(
                    partial(postprocess, arrays, spec.yolo_layers, width, height, placements, config), args.seconds
                )
            dets = sum(len(d) for d in found) / batch
            cands = sum(d.candidates for d in found) / batch
            cells = "  ".join(f"{times[n]:7.2f}ms" for n in args.namespaces)
            ratio = f"  numpy/torch {times['numpy'] / times['torch']:.2f}" if len(times) == 2 else ""
            print(f"{label:6} {batch:>5} {dets:8.1f} {cands:9.1f}  {cells}{ratio}")


if __name__ == "__main__":
    main()
