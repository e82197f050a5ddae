"""``yolo-client bench --video FILE --streams N``: N concurrent ``detect_video`` streams of one file.

Each stream has its own :class:`~yolo_client.YoloClient` (its own gRPC channel and in-flight window), as N
independent cameras would, rather than N streams sharing one channel and one client-wide limit. Without
``--duration`` each stream plays the file once; with it, each stream loops the file (:class:`LoopingSource`) and
stops after that many seconds. ``--live`` paces each stream at the file's frame rate (:class:`PacedSource`), as a
camera would, and ``detect_video(live=True)`` then drops frames when the server falls behind; without it every
frame is sent as fast as the server answers (up to ``--concurrency`` requests in flight per stream).

The figures reuse :class:`~yolo_client.benchmark.BenchResult` (percentiles, verdict): per stream frames/s,
end-to-end latency (``FrameResult.latency``: frame read to result), frames dropped and errors; in total the frames/s
of all streams together. The verdict is given per stream (the slowest stream against the target) and in total.

Example:
    >>> result = run_streams(lambda k: client.detect_video(PacedSource(open_source(path, VideoOptions())), live=True),
    ...                      streams=2, duration=None)
    >>> print(result.report(target_fps=65))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol

from .benchmark import BenchResult, verdict
from .contract import TARGET_FPS
from .sources import FrameData, FrameSource, open_source
from .video import FrameResult, VideoInfo, VideoOptions

DEFAULT_FPS = 25.0  # pacing of a file that does not say its frame rate


class PacedSource:
    """A :class:`~yolo_client.sources.FrameSource` that returns frames no faster than ``fps`` (default: the source's),
    frame ``k`` no earlier than ``k / fps`` seconds after the first: a file played as a live camera. Its ``info``
    says ``live``."""

    def __init__(
        self,
        source: FrameSource,
        fps: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._source, self._clock, self._sleep = source, clock, sleep
        self.fps = fps or source.info.fps or DEFAULT_FPS
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps!r}")
        self._info = dataclasses.replace(source.info, fps=self.fps, live=True)
        self._start: float | None = None
        self._count = 0

    @property
    def info(self) -> VideoInfo:
        return self._info

    def read(self) -> tuple[FrameData, float] | None:
        item = self._source.read()
        if item is None:
            return None
        now = self._clock()
        if self._start is None:
            self._start = now
        wait = self._start + self._count / self.fps - now
        if wait > 0:
            self._sleep(wait)
        self._count += 1
        return item

    def close(self) -> None:
        self._source.close()


class LoopingSource:
    """A file read again from its start each time it ends (``open`` opens it), timestamps going on: a duration-bound
    run's stream. It ends only if a fresh open gives no frame."""

    def __init__(self, open: Callable[[], FrameSource]) -> None:
        self._open, self._source = open, open()
        self._info = dataclasses.replace(self._source.info, frame_count=None)
        self._offset = self._last = 0.0
        self.loops = 0

    @property
    def info(self) -> VideoInfo:
        return self._info

    def read(self) -> tuple[FrameData, float] | None:
        item = self._source.read()
        if item is None:
            self._source.close()
            self._source = self._open()
            self.loops += 1
            self._offset = self._last + 1 / (self._info.fps or DEFAULT_FPS)
            item = self._source.read()
            if item is None:
                return None
        frame, timestamp = item
        self._last = timestamp + self._offset
        return frame, self._last

    def close(self) -> None:
        self._source.close()


class Stream(Protocol):
    """What :func:`run_streams` consumes: ``detect_video``'s :class:`~yolo_client.streaming.VideoStream`."""

    @property
    def dropped(self) -> int: ...

    def __iter__(self) -> Iterator[FrameResult]: ...


@dataclass
class StreamResult(BenchResult):
    """One stream's figures: :class:`BenchResult`'s, the latencies end to end, and the frames dropped."""

    dropped: int = 0

    def to_dict(self, target_fps: float = TARGET_FPS) -> dict[str, Any]:
        out = super().to_dict(target_fps)
        frames = out.pop("images")
        return {"frames": frames, "frames_per_second": out.pop("images_per_second"), "dropped": self.dropped, **out}


@dataclass
class VideoBenchResult:
    """Every stream's :class:`StreamResult` and the wall time of the whole run."""

    streams: list[StreamResult]
    elapsed: float
    total: BenchResult = field(init=False)

    def __post_init__(self) -> None:
        errors: Counter[str] = Counter()
        for s in self.streams:
            errors.update(s.errors)
        latencies = [v for s in self.streams for v in s.latencies]
        self.total = BenchResult(len(self.streams), self.elapsed, latencies, errors)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.streams)

    @property
    def slowest(self) -> float:
        return min((s.throughput for s in self.streams), default=0.0)

    def to_dict(self, target_fps: float = TARGET_FPS) -> dict[str, Any]:
        total = StreamResult(len(self.streams), self.elapsed, self.total.latencies, self.total.errors, self.dropped)
        return {
            "streams": [s.to_dict(target_fps) for s in self.streams],
            "total": total.to_dict(target_fps),
            "slowest_stream_frames_per_second": round(self.slowest, 2),
            "meets_target_per_stream": verdict(self.slowest, target_fps) == "MEETS",
        }

    def report(self, target_fps: float = TARGET_FPS) -> str:
        lines = [
            f"stream {k:<5} {s.throughput:6.1f} frames/s  ({s.ok} frames in {s.elapsed:.1f} s)  latency ms "
            f"{s.latency_text()}  dropped {s.dropped}  errors {s.error_text()}"
            for k, s in enumerate(self.streams)
        ]
        total, sent = self.total, self.total.ok + self.dropped
        share = 100 * self.dropped / sent if sent else 0.0
        return "\n".join(
            [
                *lines,
                f"frames/s     {total.throughput:.1f}  ({total.ok} frames in {self.elapsed:.1f} s, "
                f"{len(self.streams)} streams)",
                f"latency ms   {total.latency_text()}",
                f"dropped      {self.dropped} frames ({share:.1f}%)",
                f"errors       {total.error_text()}",
                f"verdict      per stream {verdict(self.slowest, target_fps)} the {target_fps:g} FPS target (YOLOv4 "
                f"paper, V100): slowest stream {self.slowest:.1f} frames/s",
                f"verdict      in total {verdict(total.throughput, target_fps)} the {target_fps:g} FPS target: "
                f"{total.throughput:.1f} frames/s",
            ]
        )


def run_streams(
    start: Callable[[int], AbstractContextManager[Stream]], *, streams: int, duration: float | None
) -> VideoBenchResult:
    """Consume ``start(k)`` for ``k`` in ``range(streams)``, each in its own thread, until it ends or ``duration``
    seconds after it started. An error ends its stream and is counted by type name; it stops no other stream."""
    if streams < 1 or (duration is not None and duration <= 0):
        raise ValueError("need streams >= 1 and a duration > 0 (or None: to the end)")
    results = [StreamResult(concurrency=1, elapsed=0.0) for _ in range(streams)]

    def consume(k: int) -> None:
        result, began = results[k], time.perf_counter()
        try:
            with start(k) as stream:
                began = time.perf_counter()  # opened, the model's info read: the connection is up
                try:
                    for frame in stream:
                        result.latencies.append(frame.latency)
                        if duration is not None and time.perf_counter() - began >= duration:
                            break
                finally:
                    result.dropped = stream.dropped
        except Exception as exc:  # counted, never fatal to the other streams
            result.errors[type(exc).__name__] += 1
        result.elapsed = time.perf_counter() - began

    t0 = time.perf_counter()
    threads = [threading.Thread(target=consume, args=(k,), daemon=True) for k in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return VideoBenchResult(results, time.perf_counter() - t0)


def run_cli(args: argparse.Namespace, make_client: Callable[..., Any]) -> int:
    """``yolo-client bench --video``: one client per stream (see the module's docstring)."""
    from .types import RetryPolicy

    if args.images or args.streams < 1 or args.concurrency < 1 or (args.duration is not None and args.duration <= 0):
        raise SystemExit("yolo-client: error: --video takes no IMAGE, --streams/--concurrency >= 1, --duration > 0")
    video, options = args.video, VideoOptions()
    open_source(video, options).close()  # a missing or unreadable file: its error now, before any client
    packets = args.transport == "bytes"  # a Motion JPEG file's frames sent as they are, as detect_video sends them

    def source() -> FrameSource:
        def once() -> FrameSource:
            return open_source(video, options, packets)

        opened = LoopingSource(once) if args.duration is not None else once()
        return PacedSource(opened) if args.live else opened

    with ExitStack() as stack:
        clients = [
            stack.enter_context(make_client(args, max_in_flight=args.concurrency, retries=RetryPolicy.disabled()))
            for _ in range(args.streams)
        ]
        info = clients[0].model_info()
        how = f"{args.duration:g} s (looping the file)" if args.duration is not None else "the file once"
        print(
            f"bench {clients[0].urls} model {info.name}: {args.streams} streams of {video}, "
            f"{'paced live' if args.live else 'as fast as served'}, {args.concurrency} in flight each, {how}",
            file=sys.stderr,
        )
        result = run_streams(
            lambda k: clients[k].detect_video(source(), live=args.live, max_in_flight=args.concurrency),
            streams=args.streams,
            duration=args.duration,
        )
    print(json.dumps(result.to_dict(args.target_fps), indent=2) if args.json else result.report(args.target_fps))
    return 0 if all(s.ok and not s.errors for s in result.streams) else 1
