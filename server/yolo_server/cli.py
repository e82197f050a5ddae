"""``yolo-server build | serve | probe | tune``: argument parsing only; the work is in yolo_server.repository,
yolo_server.launcher and yolo_server.tuning. The build's and serve's flags are declared on the fields of
:class:`~yolo_server.repository.plan.BuildOptions` and :class:`~yolo_server.launcher.options.ServeOptions`
(:mod:`yolo_server.flags`).

Example:
    $ yolo-server build --cfg models/darknet/yolov4-tiny.cfg --names models/darknet/coco.names --size 416 \\
        --target cpu --output model_repository
    $ yolo-server serve model_repository --grpc-port 8001
    $ yolo-server probe --repository model_repository   # health check: exit 0 when a canary inference answers
    $ yolo-server tune model_repository --budget 10      # measure settings on this machine; serve applies the pick
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from yolo_client.contract import HTTP_PORT
from yolo_server.extras import import_extra
from yolo_server.flags import add_flags, options_from, positive_ints
from yolo_server.launcher.options import ServeOptions
from yolo_server.launcher.supervise import Supervision
from yolo_server.repository.plan import BuildOptions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo-server", description="Serve darknet YOLOv4 detectors on Triton.")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="write a Triton model repository for a darknet cfg")
    add_flags(build, BuildOptions)
    build.add_argument(
        "--preflight",
        action="store_true",
        help="check the inputs and that the target can build here (tensorrt: a GPU and torch_tensorrt); write nothing",
    )
    add_flags(commands.add_parser("serve", help="run tritonserver on a model repository"), ServeOptions)
    probe = commands.add_parser(
        "probe", help="exit 0 when the server answers a canary inference in time (health checks)"
    )
    probe.add_argument(
        "--url", default=f"127.0.0.1:{HTTP_PORT}", help="HTTP endpoint host:port (loopback in a container)"
    )
    probe.add_argument("--repository", type=Path, help="model repository: canary every image model in it")
    probe.add_argument("--model", action="append", default=[], help="an image model to canary (repeatable)")
    probe.add_argument(
        "--timeout", type=float, default=Supervision().canary_timeout_s, help="seconds for the whole probe"
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
        type=positive_ints("concurrencies", "1,4,16"),
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
    """Namespace of ``build`` -> :class:`~yolo_server.repository.plan.BuildOptions`."""
    return options_from(BuildOptions, args)


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """Namespace of ``serve`` -> :class:`~yolo_server.launcher.options.ServeOptions`."""
    return options_from(ServeOptions, args)


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
            # a serving image has no torch (server[serve]): say which extra builds, before any traceback would
            import_extra("torch", "build", "`yolo-server build` exports the network with torch")
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
