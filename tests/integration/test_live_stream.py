"""A live stream from a real streaming process: Debian's ``ffmpeg`` sends MPEG-TS over UDP on loopback, in real
time (``-re``), and ``detect_video`` reads it as a camera is read (a URL: live, frames dropped when behind).

The clip is the project's synthetic scenes (``yolo_server.training.scenes.write_video``, MJPG); ffmpeg loops it (``-stream_loop -1``) until the
test stops it by its pid. The frame rates are chosen on both sides of what the session server keeps up with on
two cores: 5 frames/s (every frame detected) and 100 frames/s with one request in flight (most dropped).
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from yolo_client import FrameResult, YoloClient
from yolo_server.launcher.ports import free_ports
from yolo_server.training.scenes import write_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

WIDTH, HEIGHT, CLIP_FRAMES, CLIP_SEED = 640, 480, 20, 300
MAX_P99_LATENCY_S = 1.0  # the bound for a live source faster than the server
READ_TIMEOUT_S = 2.0
CATCH_UP = 3  # results while the client drains the frames queued in its socket before it joined


def free_udp_port() -> int:
    return free_ports(1, kind=socket.SOCK_DGRAM)[0]


def write_clip(path: Path, fps: float) -> Path:
    return write_video(path, CLIP_FRAMES, CLIP_SEED, size=(WIDTH, HEIGHT), fps=fps)


@contextmanager
def streaming(clip: Path, port: int, log: Path, loop: bool = True) -> Iterator[subprocess.Popen[bytes]]:
    """ffmpeg sending ``clip`` in real time as MPEG-TS to ``udp://127.0.0.1:port``; stopped by its pid."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is missing: `make system-deps` installs Debian's"
    command = [ffmpeg, "-nostdin", "-loglevel", "warning", "-re", *(["-stream_loop", "-1"] if loop else []),
               "-i", str(clip), "-c:v", "mpeg2video", "-q:v", "3", "-g", "5", "-f", "mpegts",
               f"udp://127.0.0.1:{port}?pkt_size=1316"]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def take(client: YoloClient, url: str, count: int, **options: object) -> list[FrameResult]:
    results: list[FrameResult] = []
    with client.detect_video(url, read_timeout=READ_TIMEOUT_S, **options) as stream:  # type: ignore[arg-type]
        assert stream.info.live and (stream.info.width, stream.info.height) == (WIDTH, HEIGHT)
        for result in stream:
            results.append(result)
            if len(results) == count:
                break
    return results


def test_a_live_udp_stream_is_detected_frame_by_frame(triton_server, tmp_path: Path) -> None:
    port = free_udp_port()
    with streaming(write_clip(tmp_path / "clip.avi", fps=5.0), port, tmp_path / "ffmpeg.log"):
        with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
            results = take(client, f"udp://127.0.0.1:{port}", 15, max_in_flight=2)
    indices = [result.index for result in results]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    # the first reads drain what the socket held before the client joined (stale frames, dropped); then, at 5
    # frames/s, the server keeps up
    assert sum(result.dropped_before for result in results[CATCH_UP:]) == 0, [r.dropped_before for r in results]
    assert any(result.detections for result in results)
    assert max(result.latency for result in results) < MAX_P99_LATENCY_S


def test_a_stream_faster_than_the_server_drops_frames_and_keeps_latency_bounded(triton_server, tmp_path: Path) -> None:
    port = free_udp_port()
    with streaming(write_clip(tmp_path / "clip.avi", fps=100.0), port, tmp_path / "ffmpeg.log"):
        with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
            started = time.perf_counter()
            results = take(client, f"udp://127.0.0.1:{port}", 60, max_in_flight=1)
            elapsed = time.perf_counter() - started
    dropped = sum(result.dropped_before for result in results[1:])
    latencies = sorted(result.latency for result in results)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"100 frames/s over UDP: {len(results)} detected in {elapsed:.1f} s, {dropped} dropped, latency p50 "
          f"{statistics.median(latencies) * 1000:.0f} ms p99 {p99 * 1000:.0f} ms")  # fmt: skip
    assert dropped > len(results)  # most frames were dropped, not queued
    assert p99 < MAX_P99_LATENCY_S


def test_a_stream_that_stops_midway_ends_with_the_results_it_gave(triton_server, tmp_path: Path) -> None:
    port = free_udp_port()
    results: list[FrameResult] = []
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        with streaming(write_clip(tmp_path / "clip.avi", fps=10.0), port, tmp_path / "ffmpeg.log") as sender:
            stream = client.detect_video(f"udp://127.0.0.1:{port}", read_timeout=READ_TIMEOUT_S)
            for result in stream:
                results.append(result)
                if len(results) == 5:
                    sender.terminate()  # the camera goes away mid-stream
            stream.close()
    assert len(results) >= 5
    assert [result.index for result in results] == sorted(result.index for result in results)
