"""``yolo-client``: detect, health, models and bench from the command line.

Examples::

    yolo-client detect dog.jpg street.png --json
    yolo-client detect dog.jpg --draw dog.out.jpg --url triton-a:8001 --url triton-b:8001
    yolo-client detect street.mp4 --json --draw street.out.mp4     # a video, a stream URL or a camera index
    yolo-client health --url grpcs://triton:8001 --tls-ca ca.pem
    yolo-client models                                    # the served model: classes, thresholds, batching
    yolo-client models --admin-key-file admin.key         # and every model of the server's repository
    yolo-client bench --concurrency 16 --duration 30 --transport tensor
    yolo-client bench --video street.mp4 --streams 4 --duration 30 --live   # 4 camera-paced streams

Exit status: 0 success, 1 a request failed (or ``health`` found an endpoint not ready), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import video_cli
from .contract import DEFAULT_MODEL, DEFAULT_URL, GRPC_ADMIN_KEY_HEADER, SERVING_PARAMETER, TARGET_FPS, read_parameters
from .errors import YoloClientError
from .options import DEFAULT_TIMEOUT
from .types import TlsConfig

ADMIN_KEY_VARIABLE = "YOLO_CLIENT_ADMIN_KEY_FILE"
KEY_NOTE = (
    "Every model of the server's repository: the repository index is an admin API and needs the server's admin "
    f"key (--admin-key-file FILE, or ${ADMIN_KEY_VARIABLE})."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args))
    except YoloClientError as err:
        print(f"yolo-client: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _common() -> argparse.ArgumentParser:
    """The options every command takes: the server, the model, the call and TLS."""
    common = argparse.ArgumentParser(add_help=False)
    server = common.add_argument_group("server")
    server.add_argument(
        "--url",
        action="append",
        help=f"gRPC endpoint host:port, repeatable (default $YOLO_CLIENT_URL or {DEFAULT_URL})",
    )
    server.add_argument(
        "--model", default=os.environ.get("YOLO_CLIENT_MODEL", DEFAULT_MODEL), help="detector base name"
    )
    server.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="deadline per call, seconds")
    server.add_argument(
        "--transport", choices=("bytes", "tensor"), default="bytes", help="send encoded bytes or tensors"
    )
    server.add_argument("--header", action="append", default=[], metavar="NAME=VALUE", help="gRPC metadata, repeatable")
    tls = common.add_argument_group("TLS")
    tls.add_argument("--tls", action="store_true", help="use TLS (implied by any other --tls-* flag or grpcs:// URLs)")
    tls.add_argument("--tls-ca", metavar="PEM", help="root certificates to trust")
    tls.add_argument("--tls-cert", metavar="PEM", help="client certificate chain (mutual TLS)")
    tls.add_argument("--tls-key", metavar="PEM", help="client private key (mutual TLS)")
    tls.add_argument("--tls-server-name", metavar="NAME", help="name to check in the server certificate")
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="yolo-client", description="Client for the YOLOv4 Triton server.")
    sub = parser.add_subparsers(dest="command")

    detect = sub.add_parser("detect", parents=[common], help="detect objects in images or a video")
    detect.add_argument("images", nargs="+", metavar="IMAGE", help="images, or one video file, URL or camera index")
    detect.add_argument(
        "--json", action="store_true", help="print JSON: [{image, detections: [...]}, ...]; a video: a line a frame"
    )
    detect.add_argument(
        "--draw", metavar="OUT", help="write rendered images: a file for one image, else a directory; a video file"
    )
    detect.add_argument("--score-threshold", type=float, help="raise the server's score threshold")
    detect.add_argument("--max-detections", type=int, help="at most this many detections per image")
    video_cli.add_arguments(detect)
    detect.set_defaults(run=_detect)

    health = sub.add_parser("health", parents=[common], help="liveness and readiness of every endpoint")
    health.add_argument("--json", action="store_true")
    health.set_defaults(run=_health)

    models = sub.add_parser(
        "models",
        parents=[common],
        help="the served model's classes, thresholds and batching; with the admin key, "
        "every model of the server's repository",
    )
    models.add_argument(
        "--admin-key-file",
        type=Path,
        default=os.environ.get(ADMIN_KEY_VARIABLE) or None,
        help=f"file holding the server's admin key (default ${ADMIN_KEY_VARIABLE}): the repository index is an "
        "admin API",
    )
    models.add_argument("--json", action="store_true")
    models.set_defaults(run=_models)

    bench = sub.add_parser("bench", parents=[common], help="closed-loop throughput and latency")
    bench.add_argument("images", nargs="*", metavar="IMAGE", help="images to send (default: synthetic 640x480 JPEGs)")
    bench.add_argument("--concurrency", type=int, default=8, help="requests in flight (--video: per stream)")
    bench.add_argument("--duration", type=float, help="measured seconds (default 10; --video: the file once)")
    bench.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    bench.add_argument("--target-fps", type=float, default=TARGET_FPS, help="verdict threshold (YOLOv4 paper: 65)")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--no-progress", action="store_true")
    bench.add_argument("--video", metavar="FILE", help="bench detect_video streams of FILE (see video_bench)")
    bench.add_argument("--streams", type=int, default=1, help="--video: concurrent streams, a client each")
    bench.add_argument("--live", action="store_true", help="--video: pace at the file's fps, dropping when behind")
    bench.set_defaults(run=_bench)
    return parser


def _client(args: argparse.Namespace, headers: dict[str, str] | None = None, **extra: Any) -> Any:
    from .client import YoloClient

    urls = args.url or [os.environ.get("YOLO_CLIENT_URL", DEFAULT_URL)]
    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name:
        tls = TlsConfig(args.tls_ca, args.tls_key, args.tls_cert, args.tls_server_name)
    headers = dict(headers or {})
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"yolo-client: error: --header needs NAME=VALUE, got {item!r}")
        headers[name.strip()] = value.strip()
    return YoloClient(
        urls, args.model, transport=args.transport, timeout=args.timeout, tls=tls, headers=headers, **extra
    )


def _detect(args: argparse.Namespace) -> int:
    videos = [arg for arg in args.images if video_cli.is_video(arg)]
    if videos:
        if len(args.images) > 1:
            raise SystemExit(f"yolo-client: error: a video ({videos[0]}) must be detect's only input")
        with _client(args) as client:
            return video_cli.run(args, client, videos[0])
    draw_dir = None
    if args.draw and (len(args.images) > 1 or args.draw.endswith(os.sep) or Path(args.draw).is_dir()):
        draw_dir = Path(args.draw)
        draw_dir.mkdir(parents=True, exist_ok=True)
    report, failed = [], 0
    with _client(args) as client:
        for image in args.images:
            try:
                found = client.detect(image, score_threshold=args.score_threshold, max_detections=args.max_detections)
            except YoloClientError as err:
                failed += 1
                report.append({"image": image, "error": str(err), "error_type": type(err).__name__})
                if not args.json:
                    print(f"{image}: error: {err}", file=sys.stderr)
                continue
            report.append({"image": image, "detections": [d.to_dict() for d in found]})
            if not args.json:
                print(f"{image}: {len(found)} detection{'s' if len(found) != 1 else ''}")
                for d in found:
                    print(f"  {d.label:<16} {d.score:.3f}  " + " ".join(f"{v:.1f}" for v in d.box))
            if args.draw:
                from .draw import save_rendered

                out = draw_dir / (Path(image).stem + ".png") if draw_dir else Path(args.draw)
                save_rendered(image, out, found)
    if args.json:
        print(json.dumps(report, indent=2))
    return 1 if failed else 0


def _health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        states = client.health()
    if args.json:
        print(json.dumps([{**vars(s), "ok": s.ok} for s in states], indent=2))
    else:
        for s in states:
            detail = s.error or f"live={s.live} ready={s.ready} model_ready={s.model_ready}"
            print(f"{s.url}: {'OK' if s.ok else 'NOT READY'} ({detail})")
    return 0 if all(s.ok for s in states) else 1


def _models(args: argparse.Namespace) -> int:
    headers = {}
    if args.admin_key_file is not None:
        try:
            headers[GRPC_ADMIN_KEY_HEADER] = args.admin_key_file.read_text().strip()
        except OSError as err:
            raise SystemExit(f"yolo-client: error: --admin-key-file: {err}") from err
    with _client(args, headers) as client:
        info = client.model_info()
        config = client.model_config()
        keyed = bool(headers) or any(item.partition("=")[0].strip() == GRPC_ADMIN_KEY_HEADER for item in args.header)
        index = client.models() if keyed else None
    batching = _batching(config)
    if args.json:
        report = {
            "model_info": {**vars(info), "class_names": list(info.class_names)},
            "batching": batching,
            "serving": _serving(config),
            "inputs": config.get("input", []),
            "outputs": config.get("output", []),
            "models": None if index is None else [vars(m) for m in index],
        }
        if index is None:
            report["models_note"] = KEY_NOTE
        print(json.dumps(report, indent=2))
        return 0
    if index is not None:
        for m in index:
            print(f"{m.name:<32} {m.version or '-':>3}  {m.state}{'  ' + m.reason if m.reason else ''}")
        print()
    queue = f"{batching['max_queue_size']} requests" if batching["max_queue_size"] else "unbounded"
    timeout = f"{batching['queue_timeout_us'] / 1e6:g} s" if batching["queue_timeout_us"] else "none"
    print(
        f"{info.name}: {info.target or '?'} target, precision {info.precision or '?'}, "
        f"{'trained weights' if info.trained else 'UNTRAINED (random) weights'}\n"
        f"  classes ({info.num_classes}): {', '.join(info.class_names)}\n"
        f"  input {info.input_width}x{info.input_height}, {'letterboxed' if info.letterbox else 'stretched'}\n"
        f"  score threshold {info.score_threshold:g}, NMS threshold {info.nms_threshold:g} (DIoU, beta "
        f"{info.beta_nms:g}, {'across classes' if info.class_agnostic else 'per class'}), at most "
        f"{info.max_detections} detections an image\n"
        f"  batching: max batch {info.max_batch_size}, preferred "
        f"{','.join(map(str, batching['preferred_batch_sizes'])) or 'none'}, queue delay "
        f"{batching['max_queue_delay_us']} us, queue {queue}, queue timeout {timeout}, "
        + (
            f"{batching['instances']} instances"
            if batching["instances"]
            else f"an ensemble of {', '.join(batching['ensemble_steps'])}"
        )
    )
    serving = _serving(config)
    if serving:
        print(
            "  served with "
            + ", ".join(f"{knob} {_value(entry['value'])} ({entry['source']})" for knob, entry in serving.items())
        )
    print(f"  inputs {_tensors(config.get('input', []))}\n  outputs {_tensors(config.get('output', []))}")
    if index is None:
        print(f"\n{KEY_NOTE}")
    return 0


def _tensors(specs: list[dict[str, Any]]) -> str:
    """``NAME TYPE [dims]`` of each tensor of a model config, the batch dimension left out."""
    return ", ".join(
        f"{spec['name']} {spec.get('data_type', '').removeprefix('TYPE_')} [{', '.join(map(str, spec.get('dims', [])))}]"
        for spec in specs
    )


def _serving(config: dict[str, Any]) -> dict[str, Any]:
    """What ``yolo-server serve`` resolved for this model on its machine, each setting with its source (sized to
    the CPUs, the build's, tuned); empty where the server was started otherwise."""
    text = read_parameters(config).get(SERVING_PARAMETER)
    return json.loads(text) if text else {}


def _value(value: Any) -> str:
    return ",".join(map(str, value)) or "none" if isinstance(value, list) else str(value)


def _batching(config: dict[str, Any]) -> dict[str, Any]:
    """The batching fields of a Triton model config (``as_json``: int64 fields come as strings)."""
    dynamic = config.get("dynamic_batching", {})
    policy = dynamic.get("default_queue_policy", {})
    return {
        "max_batch_size": int(config.get("max_batch_size", 0)),
        "preferred_batch_sizes": [int(n) for n in dynamic.get("preferred_batch_size", [])],
        "max_queue_delay_us": int(dynamic.get("max_queue_delay_microseconds", 0)),
        "max_queue_size": int(policy.get("max_queue_size", 0)),
        "queue_timeout_us": int(policy.get("default_timeout_microseconds", 0)),
        "instances": sum(int(group.get("count", 1)) for group in config.get("instance_group", [])),
        "ensemble_steps": [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])],
    }


def _bench(args: argparse.Namespace) -> int:
    from .benchmark import run_closed_loop, sample_images
    from .images import to_bytes
    from .types import RetryPolicy

    if args.video:
        from .video_bench import run_cli

        return run_cli(args, _client)
    args.duration = 10.0 if args.duration is None else args.duration
    if args.concurrency < 1 or args.duration <= 0:
        raise SystemExit("yolo-client: error: --concurrency must be >= 1 and --duration > 0")
    images = [to_bytes(path) for path in args.images] if args.images else sample_images()
    with _client(args, max_in_flight=args.concurrency, retries=RetryPolicy.disabled()) as client:
        info = client.model_info()
        print(
            f"bench {client.urls} model {info.name} ({info.input_width}x{info.input_height}), transport "
            f"{args.transport}, concurrency {args.concurrency}, {args.duration:g} s after {args.warmup:g} s warm-up",
            file=sys.stderr,
        )
        result = run_closed_loop(
            client.detect,
            images,
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
            progress=not args.no_progress and args.duration >= 5,
        )
    if args.json:
        print(json.dumps(result.to_dict(args.target_fps), indent=2))
    else:
        print(result.report(args.target_fps))
    return 0 if result.ok and not result.errors else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
