"""Locust load test of the YOLO Triton server over gRPC, through the project's SDK (yolo_client).

Every ``detect`` call is reported to locust as one request (type ``grpc``, named after the image kind), successes
and failures alike, so locust's statistics, CSV and HTML reports are those of the SDK's calls. At the end the
master (or the single local process) checks the SLO given on the command line and sets the exit code.

Headless, local (see loadtest/README.md for distributed and docker runs)::

    locust -f loadtest/locustfile.py --headless --host grpc://127.0.0.1:8001 --model yolov4_tiny_shapes \\
        -u 8 -r 8 -t 60s --load-shape steady --csv out/load --html out/load.html \\
        --slo-max-failure-ratio 0 --slo-p95-ms 15.4 --slo-min-fps 65

``--host`` takes one URL or several separated by commas (the SDK then balances over them client-side).

Two user classes: ``YoloGrpcUser`` (one image after another; the default when none is named) and
``YoloVideoUser`` (a live camera: a clip at ``--video-fps``, counting late and dropped frames; see
yolo_load.video). Name the classes to run after the options, e.g. ``... -u 4 YoloVideoUser``.
"""

from __future__ import annotations

# gRPC's default poller blocks the whole process; under locust's gevent the channel must use gevent's
# (locust's documented gRPC setup). This runs before any channel exists: yolo_client loads gRPC lazily.
import gevent.pool
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import json
import logging
import random
import sys
import time
from pathlib import Path

from locust import User, events, task
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.shape import LoadTestShape

from yolo_client.contract import DEFAULT_MODEL, DEFAULT_URL
from yolo_load.images import DEFAULT_MIX, ImageMix, parse_mix
from yolo_load.shapes import SHAPES, schedule
from yolo_load.slo import RunResult, Slo, check, report
from yolo_load.video import Camera, VideoStats, clip, parse_size

log = logging.getLogger("yolo_load")
_mix_cache: dict[str, ImageMix] = {}
_clip_cache: dict[str, tuple[bytes, ...]] = {}
video_stats = VideoStats()  # this process's video frames (on the master: every worker's, added up)
# every user's SDK client until it is closed: a stop that kills users skips on_stop, and a gRPC channel first closed
# by garbage collection at interpreter exit, with gevent's hub gone, can hang the process (seen on workers)
_open_clients: set = set()


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:  # locust's configargparse parser
    # plain parser arguments: locust's include_in_web_ui works only there, not on argument groups
    group = shape = slo = parser
    group.add_argument("--model", default=DEFAULT_MODEL, help="base model name (the image entry point)")
    group.add_argument(
        "--transport",
        choices=("bytes", "tensor"),
        default="bytes",
        help="bytes: send encoded images; tensor: letterbox on the client, send float32",
    )
    group.add_argument(
        "--image-mix", default=DEFAULT_MIX, help="WIDTHxHEIGHT:FORMAT:WEIGHT,... (formats jpeg, png, webp, bmp)"
    )
    group.add_argument("--image-variants", type=int, default=3, help="distinct generated images per mix entry")
    group.add_argument("--request-timeout", type=float, default=10.0, help="deadline of one call, retries included")
    group.add_argument("--no-retries", action="store_true", help="disable the SDK's retries (count every failure)")
    group.add_argument(
        "--client-metrics-port",
        type=int,
        default=0,
        include_in_web_ui=False,
        help="expose the SDK's Prometheus metrics on this port (0: off; not on the master)",
    )
    group.add_argument("--video-fps", type=float, default=15.0, help="YoloVideoUser: frames a second per stream")
    group.add_argument("--video-size", default="640x480", help="YoloVideoUser: WIDTHxHEIGHT of the clip's JPEGs")
    group.add_argument("--video-frames", type=int, default=30, help="YoloVideoUser: distinct frames of the clip")
    group.add_argument(
        "--video-window",
        type=int,
        default=1,
        help="YoloVideoUser: requests in flight a stream (a frame due when full is dropped)",
    )
    shape.add_argument(
        "--load-shape",
        choices=SHAPES,
        default="steady",
        help="steady: -u users for -t; ramp: up to -u users in --ramp-steps stages over -t",
    )
    shape.add_argument("--ramp-steps", type=int, default=4, help="stages of the ramp shape")
    slo.add_argument(
        "--slo-max-failure-ratio",
        type=float,
        default=0.0,
        help="SLO, checked at the end (a miss makes the exit code 1): largest share of failed calls",
    )
    slo.add_argument("--slo-p95-ms", type=float, default=None, help="largest p95 latency in ms (default: unchecked)")
    slo.add_argument(
        "--slo-min-fps", type=float, default=None, help="fewest images served per second (default: unchecked)"
    )
    slo.add_argument("--slo-report", default="", include_in_web_ui=False, help="write the SLO verdict as JSON here")


@events.init.add_listener
def _on_init(environment: Environment, **_: object) -> None:
    options = environment.parsed_options
    if options is None:
        return
    # fail fast, on every node (SystemExit passes through locust's event handling; a ValueError would be logged)
    try:
        parse_mix(options.image_mix)
    except ValueError as exc:
        sys.exit(f"--image-mix: {exc}")
    try:
        parse_size(options.video_size)
        Camera(options.video_fps, options.video_window, 0.0)
    except ValueError as exc:
        sys.exit(f"--video-fps/--video-size/--video-window: {exc}")
    if options.load_shape == "ramp" and not options.run_time:
        sys.exit("--load-shape ramp needs --run-time")
    port = options.client_metrics_port
    if port and not getattr(options, "master", False):
        import prometheus_client

        prometheus_client.start_http_server(port)
        log.info("SDK metrics on :%d/metrics", port)


def image_mix(spec: str, variants: int) -> ImageMix:
    key = f"{spec}|{variants}"
    if key not in _mix_cache:
        _mix_cache[key] = ImageMix.generate(parse_mix(spec), variants=variants, seed=0)
    return _mix_cache[key]


def sdk_client(user: User):
    """A user's own SDK client (own gRPC channel), closed by the user's on_stop or at the end."""
    from yolo_client import RetryPolicy, YoloClient

    options = user.environment.parsed_options
    urls = [url.strip() for url in (user.host or DEFAULT_URL).split(",") if url.strip()]
    client = YoloClient(
        urls if len(urls) > 1 else urls[0],
        model=options.model,
        transport=options.transport,
        timeout=options.request_timeout,
        retries=RetryPolicy.disabled() if options.no_retries else None,
        metrics=bool(options.client_metrics_port),
    )
    _open_clients.add(client)
    return client


class YoloGrpcUser(User):
    """One camera-like client: its own SDK client (own gRPC channel), one image after another."""

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.client = sdk_client(self)
        self.mix = image_mix(options.image_mix, options.image_variants)
        self.rng = random.Random()

    def on_stop(self) -> None:
        self.client.close()
        _open_clients.discard(self.client)

    @task
    def detect(self) -> None:
        kind, data = self.mix.pick(self.rng)
        start = time.perf_counter()
        error: BaseException | None = None
        detections = 0
        try:
            detections = len(self.client.detect(data))
        except Exception as exc:  # every failure is reported to locust, none escapes
            error = exc
        self.environment.events.request.fire(
            request_type="grpc",
            name=f"detect {kind.label}",
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=len(data),
            exception=error,
            context={"detections": detections},
        )


class YoloVideoUser(User):
    """One live camera: a generated clip played at ``--video-fps``, each frame one ``detect`` (a ``grpc`` request
    named ``video WxH@FPS``), at most ``--video-window`` in flight; late and dropped frames are counted
    (yolo_load.video) and reported at the end (log and ``--slo-report``)."""

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.client = sdk_client(self)
        key = f"{options.video_size}|{options.video_frames}"
        if key not in _clip_cache:
            _clip_cache[key] = clip(*parse_size(options.video_size), options.video_frames)
        self.frames = _clip_cache[key]
        self.name = f"video {options.video_size}@{options.video_fps:g}fps"
        self.requests = gevent.pool.Pool()

    def on_stop(self) -> None:
        self.requests.kill()
        self.client.close()
        _open_clients.discard(self.client)

    @task
    def play(self) -> None:  # until the user is stopped
        options = self.environment.parsed_options
        camera = Camera(options.video_fps, options.video_window, time.perf_counter())
        index = 0
        while True:
            wait = camera.due(index) - time.perf_counter()
            if wait > 0:
                gevent.sleep(wait)
            outcome = camera.decide(index, time.perf_counter(), len(self.requests))
            video_stats.count(outcome)
            if outcome != "dropped":
                self.requests.spawn(self.send, self.frames[index % len(self.frames)])
            index += 1

    def send(self, data: bytes) -> None:
        start, error, detections = time.perf_counter(), None, 0
        try:
            detections = len(self.client.detect(data))
        except Exception as exc:  # every failure is reported to locust, none escapes
            error = exc
        self.environment.events.request.fire(
            request_type="grpc",
            name=self.name,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=len(data),
            exception=error,
            context={"detections": detections},
        )


@events.test_start.add_listener
def _reset_video_stats(**_: object) -> None:
    video_stats.take()


@events.report_to_master.add_listener
def _send_video_stats(data: dict, **_: object) -> None:
    data["yolo_video"] = video_stats.take()


@events.worker_report.add_listener
def _add_video_stats(data: dict, **_: object) -> None:
    video_stats.add(data.get("yolo_video", {}))


class YoloLoadShape(LoadTestShape):
    """``--load-shape steady|ramp`` over the usual -u/-r/-t (see yolo_load.shapes)."""

    use_common_options = True

    def tick(self) -> tuple[int, float, list[type[User]] | None] | None:
        options = self.runner.environment.parsed_options
        step = schedule(
            options.load_shape,
            self.get_run_time(),
            users=options.num_users or 1,
            spawn_rate=options.spawn_rate or 1,
            run_time=options.run_time or None,
            steps=options.ramp_steps,
        )
        # the classes named on the command line, else the image user only (the video user is asked for by name)
        return None if step is None else (*step, None if options.user_classes else [YoloGrpcUser])


def run_result(environment: Environment) -> RunResult:
    total = environment.stats.total
    duration = max(0.0, (total.last_request_timestamp or total.start_time) - total.start_time)
    return RunResult(
        requests=total.num_requests,
        failures=total.num_failures,
        duration_s=duration,
        p50_ms=total.get_response_time_percentile(0.5) or 0.0,
        p95_ms=total.get_response_time_percentile(0.95) or 0.0,
        p99_ms=total.get_response_time_percentile(0.99) or 0.0,
    )


@events.quitting.add_listener
def _close_clients(**_: object) -> None:
    while _open_clients:
        _open_clients.pop().close()


@events.quitting.add_listener
def _check_slo(environment: Environment, **_: object) -> None:
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return  # the master holds the aggregated statistics
    options = environment.parsed_options
    slo = Slo(options.slo_max_failure_ratio, options.slo_p95_ms, options.slo_min_fps)
    result = run_result(environment)
    verdict = check(result, slo)
    log.info(
        "SLO %s: %d requests, %d failed, %.1f FPS, p50 %.0f ms, p95 %.0f ms, p99 %.0f ms%s",
        "PASSED" if verdict.passed else "MISSED",
        result.requests,
        result.failures,
        result.fps,
        result.p50_ms,
        result.p95_ms,
        result.p99_ms,
        "".join(f"\n  - {v}" for v in verdict.violations),
    )
    summary = report(result, slo, verdict)
    if video_stats.frames:
        summary["video"] = video_stats.to_dict()
        log.info(
            "video: %(frames)d frames due, %(sent)d sent on time, %(late)d late, %(dropped)d dropped", summary["video"]
        )
    if options.slo_report:
        path = Path(options.slo_report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2) + "\n")
    environment.process_exit_code = verdict.exit_code()
