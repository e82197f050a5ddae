"""``yolo-train``: scenes, anchors, train.

Example:
    yolo-train scenes data/val --count 500 --seed 1000         # JPEGs + annotations.json (COCO)
    yolo-train anchors --cfg models/shapes/yolov4-tiny-shapes.cfg --seed 0 --write
    yolo-train train --cfg models/shapes/yolov4-tiny-shapes.cfg --output models/shapes/yolov4-tiny-shapes.weights --seed 0
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yolo_server.extras import MissingExtra, import_extra


def _parser() -> argparse.ArgumentParser:
    from yolo_server.training.train import TrainConfig

    parser = argparse.ArgumentParser(
        prog="yolo-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    scenes = sub.add_parser("scenes", help="write generated scenes as JPEGs + COCO annotations.json")
    scenes.add_argument("output", type=Path)
    scenes.add_argument("--count", type=int, default=500)
    scenes.add_argument("--seed", type=int, default=1000)
    scenes.add_argument("--video", type=Path, help="also write the scenes as the frames of this video (.mp4, .avi)")
    anchors = sub.add_parser("anchors", help="k-means (1-IoU) anchors on training scenes stretched to the cfg size")
    anchors.add_argument("--cfg", type=Path, required=True)
    anchors.add_argument("--seed", type=int, default=0)
    anchors.add_argument("--count", type=int, default=2000)
    anchors.add_argument("--write", action="store_true", help="rewrite the cfg's anchors= lines")
    defaults = TrainConfig(cfg="", output="")
    train = sub.add_parser("train", help="train a cfg on generated scenes, write darknet .weights")
    train.add_argument("--cfg", required=True)
    train.add_argument("--output", required=True, help=".weights path (rewritten at every checkpoint)")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--iterations", type=int, default=defaults.iterations)
    train.add_argument("--batch", type=int, default=defaults.batch)
    train.add_argument("--pool-size", type=int, default=defaults.pool_size)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--warmup", type=int, default=defaults.warmup, help="warm-up iterations")
    train.add_argument(
        "--sizes",
        type=lambda t: tuple(int(v) for v in t.split(",")),
        default=defaults.sizes,
        help="training shapes, comma separated multiples of 32 (one drawn per batch)",
    )
    train.add_argument("--threads", type=int, default=defaults.threads)
    train.add_argument("--no-bf16", action="store_true", help="train in float32")
    train.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:  # the trainer runs torch, which a serving install lacks (server[serve]): say which extra, not a traceback
        import_extra("torch", "build", "yolo-train trains with torch")
    except MissingExtra as exc:
        print(f"yolo-train: error: {exc}", file=sys.stderr)
        return 2
    from yolo_server.training.train import TrainConfig

    args = _parser().parse_args(argv)
    if args.command == "scenes":
        from yolo_server.training.scenes import write_dataset, write_video

        print(write_dataset(args.output, args.count, args.seed))
        if args.video is not None:
            print(write_video(args.video, args.count, args.seed))
    elif args.command == "anchors":
        from yolo_server.darknet import load_spec
        from yolo_server.training.anchors import format_anchors, kmeans_anchors, mean_best_iou, set_cfg_anchors
        from yolo_server.training.augment import build_pool

        spec = load_spec(args.cfg)
        pool = build_pool(args.seed, args.count, spec.net.width)
        wh = np.concatenate([b[:, 2:] - b[:, :2] for b in pool.boxes])
        k = sum(head.num_anchors for head in spec.yolo_layers)
        anchors = kmeans_anchors(wh, k=k, seed=args.seed)
        print(
            f"anchors={format_anchors(anchors)}  (avg best IoU {mean_best_iou(wh, anchors):.3f} over {len(wh)} boxes)"
        )
        if args.write:
            set_cfg_anchors(args.cfg, anchors)
    else:
        from yolo_server.training.train import train

        config = dataclasses.replace(
            TrainConfig(cfg=args.cfg, output=args.output),
            seed=args.seed,
            iterations=args.iterations,
            batch=args.batch,
            pool_size=args.pool_size,
            lr=args.lr,
            warmup=args.warmup,
            sizes=args.sizes,
            threads=args.threads,
            bf16=not args.no_bf16,
            progress=not args.no_progress,
        )
        start = time.time()
        path = train(config)
        print(f"wrote {path} in {time.time() - start:.0f}s")
    return 0
