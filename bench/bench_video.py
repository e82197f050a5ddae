"""The SDK's video path on the demo server, side by side in one run: ``detect_video`` against ``yolo-client bench``.

The demo repository (``model_repository``) is served as ``serve`` sizes it, straight to Triton (no front), as
``bench_perf_analyzer.py`` serves it; a 640x480 MJPG clip of ``--frames`` scenes (``training.scenes.write_video``)
is the video (``--clip mp4``: MPEG-4 in .mp4). Client and server share this machine's CPUs, so the client's decode and encode cost server time.

``--mode images``: ``detect_video`` on the file (every frame detected, up to ``--concurrency`` in flight) against
``run_closed_loop`` over the same frames as JPEGs (``yolo-client bench``: the same bytes ``detect_video`` sends) at
the same concurrency, taking turns for ``--rounds`` (bench, video, bench, video, ...); the video side plays the clip
as many times as makes about ``--seconds`` at that round's bench rate. Goal: median video/bench >= 0.9.

``--mode streams``: ``yolo-client bench --video FILE --streams N --duration S --concurrency C`` (``run_streams``, a
client per stream, each looping the clip, not paced) for each N of ``--streams``, with the 65 FPS verdict.

``--mode live``: the clip looped as a live camera at ``--live-fps`` (faster than the server), ``detect_video(...,
live=True)`` for ``--seconds``. Goal: p99 end-to-end latency under 1 s, bounded by dropping frames, not queueing.

Usage:
    .venv/bin/python bench/bench_video.py                 # all three, about 3 minutes
    .venv/bin/python bench/bench_video.py --mode live --live-fps 200 --seconds 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from isa import isa_line

from yolo_client.benchmark import BenchResult, run_closed_loop, verdict
from yolo_client.client import YoloClient
from yolo_client.contract import DEFAULT_MODEL, TARGET_FPS
from yolo_client.sources import FrameSource, open_source
from yolo_client.types import RetryPolicy
from yolo_client.video import FrameEncoder, VideoInfo, VideoOptions
from yolo_client.video_bench import LoopingSource, PacedSource, VideoBenchResult, run_streams
from yolo_server.launcher.launch import loopback_server
from yolo_server.training.scenes import write_video

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
SIZE, CLIP_FPS, SEED = (640, 480), 25.0, 0
LATENCY_BOUND_S = 1.0  # the live goal: p99 end to end under a second


@dataclass(frozen=True)
class Round:
    """One turn of ``--mode images``: the bench side's result and the video side's frames and wall time."""

    bench: BenchResult
    frames: int
    seconds: float

    @property
    def video_rate(self) -> float:
        return self.frames / self.seconds

    @property
    def ratio(self) -> float:
        return self.video_rate / self.bench.throughput if self.bench.throughput else float("nan")


class Replay:
    """A :class:`FrameSource`: the clip played ``loops`` times over, then its end (a file ``loops`` times as long,
    not live: every frame detected)."""

    def __init__(self, path: Path, loops: int) -> None:
        self._source, self._loops = looping(path), loops

    @property
    def info(self) -> VideoInfo:
        return self._source.info

    def read(self) -> tuple[np.ndarray, float] | None:
        item = self._source.read()
        return None if item is None or self._source.loops >= self._loops else item

    def close(self) -> None:
        self._source.close()


def looping(path: Path) -> LoopingSource:
    """The clip read again from its start each time it ends, as ``yolo-client bench --video --duration`` reads it."""
    return LoopingSource(lambda: open_source(path, VideoOptions(), packets=True))


def clip_jpegs(path: Path) -> list[bytes]:
    """The clip's frames as ``detect_video`` sends them: a Motion JPEG clip's own JPEGs, else decoded by OpenCV and
    encoded at ``VideoOptions``' quality."""
    encoder = FrameEncoder("bytes", VideoOptions().jpeg_quality)
    source = open_source(path, VideoOptions(), packets=True)
    jpegs: list[bytes] = []
    try:
        while (item := source.read()) is not None:
            jpegs.append(bytes(encoder.encode(item[0])[0]))
    finally:
        source.close()
    return jpegs


def client(url: str, concurrency: int) -> YoloClient:
    """As ``yolo-client bench --concurrency C`` makes it: C in flight, no retries; the model's info read once."""
    made = YoloClient(url, DEFAULT_MODEL, max_in_flight=concurrency, retries=RetryPolicy.disabled())
    made.model_info()
    return made


def bench_side(url: str, images: list[bytes], concurrency: int, seconds: float) -> BenchResult:
    with client(url, concurrency) as c:
        return run_closed_loop(c.detect, images, concurrency=concurrency, duration=seconds)


def video_side(url: str, path: Path, loops: int, concurrency: int) -> tuple[int, float]:
    """Frames detected and wall seconds of ``detect_video`` on the clip played ``loops`` times, to its end."""
    with client(url, concurrency) as c:
        source = Replay(path, loops)
        began = time.perf_counter()
        with c.detect_video(source, max_in_flight=concurrency) as stream:
            frames = sum(1 for _ in stream)
        return frames, time.perf_counter() - began


def images(url: str, path: Path, concurrency: int, rounds: int, seconds: float) -> None:
    jpegs = clip_jpegs(path)
    kib = sum(map(len, jpegs)) / len(jpegs) / 1024
    print(f"\n## detect_video vs bench on images: {len(jpegs)} frames 640x480, {path.suffix[1:]} ({kib:.0f} KiB each "
          f"as JPEG), concurrency {concurrency}, alternating for {rounds} rounds\n")  # fmt: skip
    print("| round | bench images/s | bench p50 ms | bench p99 ms | detect_video frames/s | frames (loops) "
          "| video/bench |\n|---|---|---|---|---|---|---|")  # fmt: skip
    done: list[Round] = []
    for k in range(rounds):
        bench = bench_side(url, jpegs, concurrency, seconds)
        loops = max(1, round(seconds * bench.throughput / len(jpegs)))
        done.append(Round(bench, *video_side(url, path, loops, concurrency)))
        r, ms = done[-1], [bench.percentile(q) * 1000 for q in (50, 99)]
        print(f"| {k + 1} | {bench.throughput:.1f} | {ms[0]:.1f} | {ms[1]:.1f} | {r.video_rate:.1f} | {r.frames} "
              f"({loops}) | {r.ratio:.3f} |", flush=True)  # fmt: skip
    ratio = statistics.median(r.ratio for r in done)
    print(f"| median | {statistics.median(r.bench.throughput for r in done):.1f} | | | "
          f"{statistics.median(r.video_rate for r in done):.1f} | | **{ratio:.3f}** |")  # fmt: skip
    print(f"\nvideo/bench {ratio:.3f}: {'MEETS' if ratio >= 0.9 else 'BELOW'} the 0.9 goal")


def streams(url: str, path: Path, counts: list[int], concurrency: int, seconds: float) -> None:
    print(f"\n## yolo-client bench --video FILE --streams N --duration {seconds:g} --concurrency {concurrency} "
          f"(not live; a client per stream)\n")  # fmt: skip
    print("| streams | slowest stream frames/s | total frames/s | p50 ms | p99 ms | dropped | errors "
          "| per stream | in total |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for n in counts:
        result = played(url, n, concurrency, seconds, lambda: looping(path))
        total = result.total
        print(f"| {n} | {result.slowest:.1f} | {total.throughput:.1f} | {total.percentile(50) * 1000:.1f} | "
              f"{total.percentile(99) * 1000:.1f} | {result.dropped} | {total.error_text()} | "
              f"{verdict(result.slowest)} | {verdict(total.throughput)} |", flush=True)  # fmt: skip
    print(f"\nverdict: against the {TARGET_FPS:g} FPS target (YOLOv4 paper, V100)")


def live(url: str, path: Path, fps: float, concurrency: int, seconds: float) -> None:
    print(f"\n## a live source faster than the server: the clip looped at {fps:g} fps, detect_video(live=True, "
          f"max_in_flight={concurrency}) for {seconds:g} s\n")  # fmt: skip
    result = played(url, 1, concurrency, seconds, lambda: PacedSource(looping(path), fps), live=True)
    s = result.streams[0]
    sent = s.ok + s.dropped
    p50, p95, p99 = (s.percentile(q) * 1000 for q in (50, 95, 99))
    print("| source fps | frames detected | dropped | detected frames/s | p50 ms | p95 ms | p99 ms | errors "
          "| p99 < 1 s |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    print(f"| {fps:g} | {s.ok} | {s.dropped} ({100 * s.dropped / max(sent, 1):.0f}%) | {s.throughput:.1f} | {p50:.1f} | "
          f"{p95:.1f} | {p99:.1f} | {s.error_text()} | {'yes' if p99 < LATENCY_BOUND_S * 1000 else 'NO'} |")  # fmt: skip


def played(
    url: str, n: int, concurrency: int, seconds: float, source: Callable[[], FrameSource], live: bool = False
) -> VideoBenchResult:
    """``run_streams`` of ``n`` streams, a client each, each reading its own ``source()`` for ``seconds``."""
    with ExitStack() as stack:
        clients = [stack.enter_context(client(url, concurrency)) for _ in range(n)]
        return run_streams(
            lambda k: clients[k].detect_video(source(), live=live, max_in_flight=concurrency),
            streams=n,
            duration=seconds,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("all", "images", "streams", "live"), default="all")
    parser.add_argument("--frames", type=int, default=120, help="frames of the 640x480 clip")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (streams: per stream)")
    parser.add_argument("--rounds", type=int, default=3, help="images: turns each side takes")
    parser.add_argument("--seconds", type=float, default=15.0, help="per side and round, per stream count, live")
    parser.add_argument("--streams", default="1,2,4", help="streams: stream counts")
    parser.add_argument("--live-fps", type=float, default=200.0, help="live: the camera's frame rate")
    parser.add_argument(
        "--clip", choices=("avi", "mp4"), default="avi",
        help="the clip: Motion JPEG in .avi (its JPEGs sent as they are) or MPEG-4 in .mp4 (decoded, encoded again)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.frames < 1 or args.concurrency < 1 or args.rounds < 1 or not args.seconds > 0 or not args.live_fps > 0:
        parser.error("--frames, --concurrency, --rounds >= 1; --seconds, --live-fps > 0")
    counts = [int(n) for n in args.streams.split(",")]
    print(isa_line(), f"; {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-video-") as scratch:
        path = write_video(Path(scratch) / f"clip.{args.clip}", args.frames, SEED, size=SIZE, fps=CLIP_FPS)
        with loopback_server(REPOSITORY, front=False) as server:
            url = server.endpoints.grpc
            bench_side(url, clip_jpegs(path)[:8], args.concurrency, 2.0)  # warm every instance, unmeasured
            if args.mode in ("all", "images"):
                images(url, path, args.concurrency, args.rounds, args.seconds)
            if args.mode in ("all", "streams"):
                streams(url, path, counts, args.concurrency, args.seconds)
            if args.mode in ("all", "live"):
                live(url, path, args.live_fps, args.concurrency, args.seconds)


if __name__ == "__main__":
    main()
