"""``yolo-server build | serve | probe | tune``: argument parsing only; the work is in yolo_server.repository,
yolo_server.launcher and yolo_server.tuning.

Example:
    $ yolo-server build --cfg models/darknet/yolov4-tiny.cfg --names models/darknet/coco.names --size 416 \\
        --target cpu --output model_repository
    $ yolo-server serve model_repository --grpc-port 8001
    $ yolo-server probe --repository model_repository   # health check: exit 0 when a canary inference answers
    $ yolo-server tune model_repository --budget 10      # measure settings on this machine; serve applies the pick
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from yolo_client.contract import (
    ADMIN_KEY_HEADER,
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_NMS_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    GRPC_ADMIN_KEY_HEADER,
    HTTP_PORT,
)
from yolo_server.export.calibration import MIN_CALIBRATION_IMAGES
from yolo_server.launcher.options import ServeOptions
from yolo_server.launcher.supervise import Supervision
from yolo_server.precision import ALL_PRECISIONS, DEFAULT_PRECISION, PRECISIONS, UNSUPPORTED_PRECISIONS
from yolo_server.repository.int8 import GATE_FAILURE_CHOICES
from yolo_server.repository.spec import (
    FUSED_BY_DEFAULT,
    INSTANCE_KINDS,
    TARGET_BATCHING,
    TARGETS,
    Batching,
    Instances,
    Limits,
)

if TYPE_CHECKING:  # for the annotations only: build_options and serve_options import them when they run
    from yolo_server.repository.build import BuildOptions


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r}: use N (square) or WIDTHxHEIGHT, e.g. 416 or 512x320")
    width = int(match.group(1))
    return width, int(match.group(2) or width)


def _instances(text: str) -> tuple[str, int]:
    kind, sep, count = text.partition("=")
    if not sep or kind not in INSTANCE_KINDS or not count.isdigit():
        raise argparse.ArgumentTypeError(
            f"--instances {text!r}: use KIND=N with KIND one of {', '.join(INSTANCE_KINDS)}"
        )
    return kind, int(count)


def _positive_ints(text: str, what: str, example: str) -> tuple[int, ...]:
    numbers = text.replace(" ", "").split(",")
    if not all(number.isdigit() and int(number) > 0 for number in numbers):
        raise argparse.ArgumentTypeError(f"{what} {text!r}: use positive integers separated by commas, e.g. {example}")
    return tuple(sorted({int(number) for number in numbers}))


def _batch_sizes(text: str) -> tuple[int, ...]:
    return _positive_ints(text, "batch sizes", "16,32")


def _concurrencies(text: str) -> tuple[int, ...]:
    return _positive_ints(text, "concurrencies", "1,4,16")


def _pixels(text: str) -> int:
    return int(float(text))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo-server", description="Serve darknet YOLOv4 detectors on Triton.")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="write a Triton model repository for a darknet cfg")
    build.add_argument("--cfg", type=Path, required=True, help="darknet .cfg")
    build.add_argument(
        "--weights", type=Path, help="darknet .weights (default: calibrated RANDOM weights, not trained)"
    )
    build.add_argument("--names", type=Path, help="class names, one per line (default: class ids)")
    build.add_argument("--size", type=_size, help="network input, N or WxH, multiples of 32 (default: the cfg's)")
    build.add_argument("--target", choices=(*TARGETS, "auto"), default="cpu")
    build.add_argument(
        "--precision",
        choices=ALL_PRECISIONS,
        help=f"cpu: {'|'.join(PRECISIONS['cpu'])} (default {DEFAULT_PRECISION['cpu']}: the fastest built on the "
        "serving CPU: int8 where it was built and the CPU has AVX2, bf16 where native, else fp32); tensorrt: "
        f"{'|'.join(PRECISIONS['tensorrt'])} (default {DEFAULT_PRECISION['tensorrt']}), "
        f"{'|'.join(UNSUPPORTED_PRECISIONS['tensorrt'])} is refused with the reason",
    )
    build.add_argument(
        "--calibration-images",
        type=Path,
        metavar="DIR",
        help=f"cpu: also build an INT8 IR, calibrated on the images under DIR (JPEG, PNG, WebP, BMP; at least "
        f"{MIN_CALIBRATION_IMAGES}, like the traffic to serve); it is kept only where it passes its accuracy gate",
    )
    build.add_argument(
        "--validation",
        type=Path,
        metavar="ANNOTATIONS.json",
        help="the INT8 gate on COCO annotations: mAP@0.5 and mAP@[.5:.95] against fp32 (without: the share of "
        "fp32's boxes INT8 finds again on the calibration images)",
    )
    build.add_argument(
        "--int8-gate-failure",
        choices=GATE_FAILURE_CHOICES,
        default=GATE_FAILURE_CHOICES[0],
        help="an INT8 IR that fails its gate: fallback (write none, serve fp32/bf16, warn) or stop (fail the build)",
    )
    build.add_argument("--name", help="base model name (default: from the cfg file name)")
    build.add_argument("--output", type=Path, default=Path("model_repository"), help="model repository directory")
    build.add_argument(
        "--preflight",
        action="store_true",
        help="check the inputs and that the target can build here (tensorrt: a GPU and torch_tensorrt); write nothing",
    )
    build.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD)
    build.add_argument("--nms-threshold", type=float, default=DEFAULT_NMS_THRESHOLD)
    build.add_argument("--max-detections", type=int, default=DEFAULT_MAX_DETECTIONS)
    build.add_argument("--class-agnostic", action="store_true", help="NMS across classes")
    limits, supervision = Limits(), Supervision()
    cpu, gpu = TARGET_BATCHING["cpu"], TARGET_BATCHING["tensorrt"]
    build.add_argument(
        "--max-batch-size",
        type=int,
        help=f"largest dynamic batch (default: cpu {cpu.max_batch_size}, tensorrt {gpu.max_batch_size})",
    )
    build.add_argument("--opt-batch-size", type=int, help="TensorRT profile optimum (default: half the max batch)")
    build.add_argument(
        "--preferred-batch-sizes",
        type=_batch_sizes,
        metavar="N[,N...]",
        help="the detector's preferred dynamic batches (default: cpu none, tensorrt optimum and max)",
    )
    build.add_argument(
        "--max-queue-delay-us",
        type=int,
        help=f"default: cpu {cpu.max_queue_delay_us}, tensorrt {gpu.max_queue_delay_us}",
    )
    build.add_argument(
        "--max-queue-images",
        type=int,
        help=f"images each model's queue holds, full-batch requests counted "
        f"(default: cpu {cpu.max_queue_images}, tensorrt {gpu.max_queue_images})",
    )
    build.add_argument(
        "--queue-timeout-us",
        type=int,
        help=f"longest wait in one model's queue before UNAVAILABLE (default {cpu.queue_timeout_us})",
    )
    build.add_argument(
        "--instances",
        type=_instances,
        action="append",
        default=[],
        metavar="KIND=N",
        help="instances per model kind (repeatable; default: sized by serve to the CPUs it may use, "
        "the tensorrt detector 1 per GPU)",
    )
    build.add_argument(
        "--detector-threads",
        type=int,
        help="OpenVINO threads per cpu detector instance, the fused model's for a lone image (0: one per core; "
        "default: sized by serve to the CPUs it may use)",
    )
    build.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        help=f"serve images with one fused Python model instead of the ensemble (default: cpu "
        f"{'fused' if FUSED_BY_DEFAULT['cpu'] else 'ensemble'}; tensorrt: ensemble only)",
    )
    build.add_argument(
        "--max-pixels", type=_pixels, default=limits.max_pixels, help="per image, checked before decoding"
    )
    build.add_argument("--max-bytes", type=int, default=limits.max_bytes, help="per encoded image")

    serve = commands.add_parser("serve", help="run tritonserver on a model repository")
    served = ServeOptions(Path())  # the defaults, written once there
    serve.add_argument("repository", type=Path)
    serve.add_argument("--host", default=served.host, help="bind address of all endpoints")
    serve.add_argument("--http-port", type=int, default=served.http_port)
    serve.add_argument("--grpc-port", type=int, default=served.grpc_port)
    serve.add_argument("--metrics-port", type=int, default=served.metrics_port)
    serve.add_argument(
        "--exit-timeout", type=int, default=served.exit_timeout_s, help="seconds to drain in-flight requests on SIGTERM"
    )
    serve.add_argument(
        "--ready-timeout", type=float, default=served.ready_timeout_s, help="seconds to wait for every model"
    )
    serve.add_argument(
        "--shm-bytes",
        type=int,
        default=served.shm_default_bytes,
        help="Python-backend shared memory per instance (and its growth step)",
    )
    serve.add_argument(
        "--front",
        action=argparse.BooleanOptionalAction,
        default=served.front,
        help="nginx on the ports clients reach, capping request sizes, with tritonserver on loopback behind it "
        "(--no-front: tritonserver's own ports, uncapped: put a capping proxy in front yourself)",
    )
    serve.add_argument(
        "--max-request-bytes",
        type=int,
        help="the front's cap on one request (default: the largest request the repository's models accept)",
    )
    serve.add_argument(
        "--tuning",
        type=Path,
        metavar="FILE",
        help="settings `yolo-server tune` chose, applied whatever machine they were measured on (default: the "
        "repository's tuning.json where it was measured on the same CPUs and ISA as this machine)",
    )
    serve.add_argument("--log-verbose", type=int, default=served.log_verbose)
    serve.add_argument(
        "--admin-key-file",
        type=Path,
        help=f"file holding the key that the {ADMIN_KEY_HEADER!r} HTTP header (gRPC: {GRPC_ADMIN_KEY_HEADER!r}) must carry for the repository, "
        "shared-memory, trace and logging APIs (default: a random key nobody knows: those APIs are off)",
    )
    serve.add_argument(
        "--tls-cert", type=Path, help="gRPC TLS: PEM server certificate (chain); HTTP then binds 127.0.0.1"
    )
    serve.add_argument("--tls-key", type=Path, help="gRPC TLS: PEM private key of --tls-cert")
    serve.add_argument("--tls-client-ca", type=Path, help="mutual TLS: PEM CA that client certificates must chain to")
    serve.add_argument(
        "--check-interval",
        type=float,
        default=supervision.check_interval_s,
        help="seconds between checks of the Python-backend stubs (0: no supervision)",
    )
    serve.add_argument(
        "--canary-interval",
        type=float,
        default=supervision.canary_interval_s,
        help="seconds between canary inferences through each image model",
    )
    serve.add_argument(
        "--canary-timeout", type=float, default=supervision.canary_timeout_s, help="deadline of one canary inference"
    )

    probe = commands.add_parser(
        "probe", help="exit 0 when the server answers a canary inference in time (health checks)"
    )
    probe.add_argument(
        "--url", default=f"127.0.0.1:{HTTP_PORT}", help="HTTP endpoint host:port (loopback in a container)"
    )
    probe.add_argument("--repository", type=Path, help="model repository: canary every image model in it")
    probe.add_argument("--model", action="append", default=[], help="an image model to canary (repeatable)")
    probe.add_argument(
        "--timeout", type=float, default=supervision.canary_timeout_s, help="seconds for the whole probe"
    )
    _add_tune_parser(commands)
    return parser


def _add_tune_parser(commands: argparse._SubParsersAction) -> None:
    from yolo_server.tuning.tune import TuneOptions

    defaults = TuneOptions(Path())
    tune = commands.add_parser(
        "tune",
        help="measure serving settings on this machine with perf_analyzer and keep the fastest (serve applies it)",
    )
    tune.add_argument("repository", type=Path)
    tune.add_argument(
        "--concurrency",
        type=_concurrencies,
        default=defaults.concurrencies,
        metavar="N[,N...]",
        help=f"requests in flight the objective is measured at (default {','.join(map(str, defaults.concurrencies))})",
    )
    tune.add_argument("--p99-ms", type=float, help="latency bound at every concurrency (default: none)")
    tune.add_argument(
        "--budget", type=float, default=defaults.budget_s / 60, metavar="MINUTES", help="the search's time"
    )
    tune.add_argument(
        "--output",
        type=Path,
        help="the tuning file (default: REPOSITORY/tuning.json, which serve applies on a machine like this one; "
        "elsewhere: serve --tuning FILE)",
    )
    tune.add_argument("--report", type=Path, default=defaults.report, help="directory of the CSV and HTML report")
    tune.add_argument(
        "--image",
        type=Path,
        action="append",
        default=[],
        help="an encoded image to send (repeatable; default: eight generated 640x480 JPEGs)",
    )
    tune.add_argument("--seed", type=int, default=defaults.seed, help="the search's")


def run_tune(args: argparse.Namespace) -> int:
    """``tune``: search, write the tuning file and the report, print default against tuned last."""
    from yolo_server.tuning.report import write_report
    from yolo_server.tuning.tune import TuneOptions, tune

    if args.budget <= 0 or (args.p99_ms is not None and args.p99_ms <= 0):
        raise ValueError("--budget and --p99-ms must be positive")
    options = TuneOptions(
        args.repository,
        concurrencies=args.concurrency,
        p99_ms=args.p99_ms,
        budget_s=args.budget * 60,
        output=args.output,
        report=args.report,
        images=tuple(path.read_bytes() for path in args.image),
        seed=args.seed,
    )
    result = tune(options)
    files = write_report(result, options.report)
    print(f"yolo-server tune: {len(result.trials)} trials; report {files.page} ({files.csv.name}); "
          f"tuning {options.tuning_file}")  # fmt: skip
    print("\n".join(result.summary()))
    return 0


def build_options(args: argparse.Namespace) -> BuildOptions:
    """Namespace of ``build`` -> :class:`yolo_server.repository.build.BuildOptions`."""
    from yolo_server.repository.build import BuildOptions, resolve_target
    from yolo_server.repository.int8 import Int8Options

    if args.validation is not None and args.calibration_images is None:
        raise ValueError("--validation checks an INT8 build: give --calibration-images too")

    target = resolve_target(args.target)
    return BuildOptions(
        cfg=args.cfg,
        weights=args.weights,
        names=args.names,
        size=args.size,
        target=target,
        precision=args.precision,
        name=args.name,
        score_threshold=args.score_threshold,
        nms_threshold=args.nms_threshold,
        max_detections=args.max_detections,
        class_agnostic=args.class_agnostic,
        batching=Batching.for_target(
            target,
            max_batch_size=args.max_batch_size,
            opt_batch_size=args.opt_batch_size,
            preferred_batch_sizes=args.preferred_batch_sizes,
            max_queue_delay_us=args.max_queue_delay_us,
            max_queue_images=args.max_queue_images,
            queue_timeout_us=args.queue_timeout_us,
        ),
        instances=Instances(**dict(args.instances)),
        limits=Limits(max_pixels=args.max_pixels, max_bytes=args.max_bytes),
        detector_threads=args.detector_threads,
        fused=args.fused,
        output=args.output,
        int8=None
        if args.calibration_images is None
        else Int8Options(args.calibration_images, args.validation, args.int8_gate_failure),
    )


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """Namespace of ``serve`` -> :class:`yolo_server.launcher.options.ServeOptions`."""
    from yolo_server.launcher.access import Access, TlsFiles, read_admin_key

    access = Access(
        read_admin_key(args.admin_key_file), TlsFiles.from_options(args.tls_cert, args.tls_key, args.tls_client_ca)
    )
    return ServeOptions(
        repository=args.repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        exit_timeout_s=args.exit_timeout,
        ready_timeout_s=args.ready_timeout,
        shm_default_bytes=args.shm_bytes,
        shm_growth_bytes=args.shm_bytes,
        front=args.front,
        max_request_bytes=args.max_request_bytes,
        tuning=args.tuning,
        log_verbose=args.log_verbose,
        access=access,
        supervision=Supervision(args.check_interval, args.canary_interval, args.canary_timeout),
    )


def run_probe(args: argparse.Namespace) -> int:
    """``probe``: 0 when the server is ready and answers a canary through every image model, else 1."""
    from yolo_server.launcher.canary import image_models
    from yolo_server.launcher.supervise import probe

    models = list(args.model) + (image_models(args.repository) if args.repository else [])
    if not models:
        raise ValueError("name the models to probe: --model NAME or --repository PATH")
    healthy, lines = probe(args.url, models, args.timeout)
    print("\n".join(lines), file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "build":
            from yolo_server.repository.build import build_repository, preflight

            if args.preflight:
                plan = preflight(build_options(args))
                print(f"yolo-server build: ready to build {plan.spec.name} ({plan.spec.info.target})")
            else:
                build_repository(build_options(args))
            return 0
        if args.command == "probe":
            return run_probe(args)
        if args.command == "tune":
            return run_tune(args)
        from yolo_server.launcher.launch import serve

        if not args.repository.is_dir():
            raise ValueError(f"{args.repository} is not a model repository directory")
        return serve(serve_options(args))
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        print(f"yolo-server {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
