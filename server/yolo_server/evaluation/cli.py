"""``yolo-eval``: COCO mAP of a detector on an annotation set, in process or through a running server.

Example:
    yolo-train scenes build/eval/val --count 500 --seed 1000
    yolo-eval build/eval/val/annotations.json --cfg models/shapes/yolov4-tiny-shapes.cfg \\
        --weights models/shapes/yolov4-tiny-shapes.weights --names models/shapes/shapes.names
    yolo-eval build/eval/val/annotations.json --server 127.0.0.1:8001 --model yolov4_tiny_shapes

In process the score threshold defaults to darknet's mAP threshold, 0.005. Through
a server, its own threshold applies (a client may only raise it): build the
repository with ``yolo-server build ... --score-threshold 0.005`` to compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from yolo_client.contract import DEFAULT_MODEL, DEFAULT_NMS_THRESHOLD
from yolo_server.evaluation.coco import MAP_SCORE_THRESHOLD, CocoDataset, coco_evaluate, format_table
from yolo_server.extras import MissingExtra, import_extra
from yolo_server.precision import EAGER_PRECISIONS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolo-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("annotations", type=Path, help="COCO annotations json (image paths relative to it)")
    local = parser.add_argument_group("in process")
    local.add_argument("--cfg", type=Path, help="darknet cfg")
    local.add_argument("--weights", type=Path, help="darknet .weights")
    local.add_argument("--names", type=Path, help="class names")
    local.add_argument("--size", type=int, help="network input size (default: the cfg's)")
    local.add_argument("--precision", default="fp32", choices=EAGER_PRECISIONS)
    local.add_argument("--score-threshold", type=float, default=MAP_SCORE_THRESHOLD)
    local.add_argument("--nms-threshold", type=float, default=DEFAULT_NMS_THRESHOLD)
    local.add_argument("--batch", type=int, default=8)
    remote = parser.add_argument_group("through the server")
    remote.add_argument("--server", metavar="HOST:PORT", help="gRPC endpoint of a running yolo-server")
    remote.add_argument("--model", default=DEFAULT_MODEL, help="detector base name on the server")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:  # mAP and the in-process detector are the build extra's, which a serving install lacks (server[serve])
        import_extra("pycocotools", "build", "yolo-eval scores COCO mAP with pycocotools")
        if not args.server:
            import_extra("torch", "build", "yolo-eval runs the detector in process with torch")
    except MissingExtra as exc:
        print(f"yolo-eval: error: {exc}", file=sys.stderr)
        return 2
    dataset = CocoDataset.load(args.annotations)
    start = time.time()
    if args.server:
        from yolo_client.client import YoloClient
        from yolo_server.evaluation.runners import detect_server

        with YoloClient(args.server, model=args.model) as client:
            threshold = client.model_info().score_threshold
            rows = detect_server(client, dataset, progress=not args.no_progress)
        title = f"{args.model} @ {args.server} (server score threshold {threshold:g})"
    else:
        if args.cfg is None:
            raise SystemExit("yolo-eval: give --cfg (and --weights) for in-process evaluation, or --server")
        from yolo_server.evaluation.runners import detect_inprocess
        from yolo_server.ops.config import postprocess_config_for
        from yolo_server.pipeline import Detector

        detector = Detector(args.cfg, args.weights, args.names, input_size=args.size, precision=args.precision)
        detector.config = postprocess_config_for(
            detector.spec, score_threshold=args.score_threshold, nms_threshold=args.nms_threshold
        )
        rows = detect_inprocess(detector, dataset, batch=args.batch, progress=not args.no_progress)
        title = f"{args.cfg.name} in process, {args.precision}, score threshold {args.score_threshold:g}"
    result = coco_evaluate(dataset, rows)
    print(format_table(result, title))
    print(f"({time.time() - start:.1f}s)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "map50": result.map50,
                    "map50_95": result.map50_95,
                    "per_class": result.per_class,
                    "images": result.images,
                    "detections": result.detections,
                    "title": title,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
