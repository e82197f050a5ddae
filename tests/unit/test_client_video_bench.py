"""``yolo-client bench --video``'s pure parts: pacing a file as a camera, looping it, and the per-stream figures
(over the real ``VideoStream`` driver with a fake detector: no server)."""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest

from yolo_client import Detection
from yolo_client.cli import main as cli_main
from yolo_client.errors import ServerError
from yolo_client.streaming import Frame, VideoPlan, VideoStream
from yolo_client.video import VideoInfo
from yolo_client.video_bench import LoopingSource, PacedSource, StreamResult, VideoBenchResult, run_streams

pytestmark = pytest.mark.timeout(30)


class Frames:
    """A file-like FrameSource of ``count`` tiny frames at ``fps``."""

    def __init__(self, count: int, fps: float = 10.0) -> None:
        self.info = VideoInfo("fake", fps, 4, 4, count, False)
        self.count, self.read_count, self.closed = count, 0, False

    def read(self) -> tuple[np.ndarray, float] | None:
        if self.read_count == self.count:
            return None
        self.read_count += 1
        return np.zeros((4, 4, 3), np.uint8), (self.read_count - 1) / self.info.fps

    def close(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self) -> None:
        self.now, self.sleeps = 100.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_paced_source_returns_frames_no_faster_than_its_fps() -> None:
    clock = FakeClock()
    paced = PacedSource(Frames(5, fps=20.0), clock=clock, sleep=clock.sleep)
    assert paced.info.live and paced.fps == 20.0
    times = []
    while paced.read() is not None:
        times.append(clock.now)
        clock.now += 0.01  # decoding and handing over take 10 ms of each 50 ms frame
    assert times == pytest.approx([100.0 + k * 0.05 for k in range(5)])
    assert clock.sleeps == pytest.approx([0.04] * 4)


def test_a_paced_source_behind_its_fps_does_not_sleep_or_burst() -> None:
    clock = FakeClock()
    paced = PacedSource(Frames(4), 50.0, clock=clock, sleep=clock.sleep)
    assert paced.fps == 50.0  # given: overrides the file's 10
    while paced.read() is not None:
        clock.now += 0.05  # slower than 50 fps
    assert clock.sleeps == []
    source = Frames(1, fps=0.0)
    assert PacedSource(source).fps == 25.0  # a file that does not say its fps
    PacedSource(source).close()
    assert source.closed


def test_a_looping_source_starts_again_with_timestamps_going_on() -> None:
    opened: list[Frames] = []

    def open_again() -> Frames:
        opened.append(Frames(3))
        return opened[-1]

    looping = LoopingSource(open_again)
    assert looping.info.frame_count is None
    stamps = []
    for _ in range(8):
        item = looping.read()
        assert item is not None
        stamps.append(item[1])
    assert stamps == pytest.approx([k / 10 for k in range(8)])
    assert looping.loops == 2 and len(opened) == 3 and opened[0].closed and opened[1].closed
    looping.close()
    assert opened[2].closed


def stream(source: Frames | PacedSource, delay: float, in_flight: int = 2, fail_at: int | None = None) -> VideoStream:
    """The real sync driver over ``source``, each request taking ``delay`` seconds."""

    async def detect(frame: Frame) -> list[Detection]:
        time.sleep(delay)
        if frame.index == fail_at:
            raise ServerError("boom")
        return []

    return VideoStream(VideoPlan(source, source.info.live, "oldest", in_flight, False, detect))


def test_streams_run_concurrently_and_report_frames_latency_drops_and_errors() -> None:
    def start(k: int) -> AbstractContextManager[VideoStream]:
        if k == 0:  # as fast as served: every frame
            return stream(Frames(20), delay=0.005)
        if k == 1:  # a camera at 100 fps, a server at ~20 fps a stream: drops
            return stream(PacedSource(Frames(40), 100.0), delay=0.05, in_flight=1)
        return stream(Frames(20), delay=0.001, fail_at=3)  # fails at its 4th frame

    before = threading.active_count()
    result = run_streams(start, streams=3, duration=None)
    fast, paced, failed = result.streams
    assert fast.ok == 20 and fast.dropped == 0 and not fast.errors and fast.throughput > 0
    assert paced.dropped > 10 and paced.ok + paced.dropped == 40 and not paced.errors
    assert failed.ok == 3 and failed.errors == {"ServerError": 1}
    assert all(v > 0 for s in result.streams for v in s.latencies)
    assert result.total.ok == fast.ok + paced.ok + failed.ok and result.dropped == paced.dropped
    assert result.total.errors == {"ServerError": 1}
    assert threading.active_count() <= before


def test_a_duration_stops_every_stream() -> None:
    started = time.perf_counter()
    result = run_streams(lambda k: stream(PacedSource(Frames(10_000), 200.0), delay=0.001), streams=2, duration=0.3)
    assert time.perf_counter() - started < 3
    assert all(0.3 <= s.elapsed < 1.5 and s.ok > 10 for s in result.streams)
    with pytest.raises(ValueError):
        run_streams(lambda k: stream(Frames(1), 0), streams=0, duration=None)


def test_the_report_gives_each_stream_the_totals_and_both_verdicts() -> None:
    streams = [
        StreamResult(1, 2.0, [0.010] * 140, dropped=0),  # 70 frames/s
        StreamResult(1, 2.0, [0.020] * 100, dropped=6),  # 50 frames/s
    ]
    result = VideoBenchResult(streams, 2.0)
    text = result.report(65)
    lines = text.splitlines()
    assert lines[0].startswith("stream 0") and "70.0 frames/s" in lines[0] and "dropped 0" in lines[0]
    assert lines[1].startswith("stream 1") and "p50 20.0  p95 20.0  p99 20.0" in lines[1] and "dropped 6" in lines[1]
    assert "frames/s     120.0  (240 frames in 2.0 s, 2 streams)" in text
    assert "dropped      6 frames (2.4%)" in text
    assert "per stream BELOW the 65 FPS target" in text and "slowest stream 50.0 frames/s" in text
    assert "in total MEETS the 65 FPS target: 120.0 frames/s" in text
    report = result.to_dict(65)
    assert report["streams"][1]["frames"] == 100 and report["streams"][1]["dropped"] == 6
    assert report["total"]["frames_per_second"] == 120.0 and report["total"]["meets_target"]
    assert report["total"]["dropped"] == 6 and not report["meets_target_per_stream"]
    assert set(report["total"]["latency_ms"]) == {"p50", "p95", "p99"}


def test_bench_refuses_a_missing_video_before_any_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.avi"
    assert cli_main(["bench", "--video", str(missing), "--url", "127.0.0.1:1"]) == 1
    assert "no such video file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["bench", "--video", str(missing), "--streams", "0"])
