"""``detect_video`` (sync and async) and ``yolo-client detect VIDEO`` against the session's real server.

The videos are written here with OpenCV (MJPG in .avi: every frame a JPEG, fast to write and to decode) from the
project's synthetic scenes, 640x480 at 25 fps. ``detect_video`` sends such a Motion JPEG file's packets as they are
(``packets``: copied out by Debian's ffmpeg, ``-c:v copy``), unless it keeps or shrinks the frames: then a frame
read back with ``cv2.VideoCapture`` is the frame the SDK reads (the same decoder), so its JPEG at the same quality
is the same bytes (``reference``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.helpers.images import encode, scene
from tests.helpers.triton_requests import as_found, assert_same_detections
from yolo_client import AsyncYoloClient, FrameResult, VideoInfo, VideoSourceError, YoloClient
from yolo_client.cli import main as cli_main
from yolo_client.video import VideoOptions
from yolo_server.launcher.ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FRAMES, FPS, WIDTH, HEIGHT = 24, 25.0, 640, 480
QUALITY = VideoOptions().jpeg_quality
START_OF_SCAN = b"\xff\xda"  # a JPEG's compressed pixels follow this marker


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS, fourcc: str = "MJPG") -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = [scene(HEIGHT, WIDTH, seed=100 + i) for i in range(FRAMES)]
    return write_video(tmp_path_factory.mktemp("video") / "scenes.avi", frames)


@pytest.fixture(scope="module")
def frames(video: Path) -> list[np.ndarray]:
    return read_frames(video)


@pytest.fixture(scope="module")
def reference(triton_server, frames: list[np.ndarray]) -> list[list[Any]]:
    """Each frame sent as an image with ``detect``: its JPEG at the stream's quality."""
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        return client.detect_batch([encode(".jpg", f, cv2.IMWRITE_JPEG_QUALITY, QUALITY) for f in frames])


@pytest.fixture(scope="module")
def packets(video: Path, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The file's JPEGs as stored, copied out without decoding by FFmpeg's own command line."""
    out = tmp_path_factory.mktemp("packets")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(video), "-c:v", "copy", "-f", "image2", str(out / "%04d.jpg")],
        check=True, timeout=30,
    )  # fmt: skip
    return [path.read_bytes() for path in sorted(out.glob("*.jpg"))]


@pytest.fixture(scope="module")
def packet_reference(triton_server, packets: list[bytes]) -> list[list[Any]]:
    """Each of the file's own JPEGs sent as an image with ``detect``."""
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        return client.detect_batch(packets)


def count_calls(client: Any) -> dict[str, int]:
    """Wrap the client's ``_perform`` (every gRPC call): calls made, and the most at once."""
    seen = {"calls": 0, "active": 0, "peak": 0}
    lock, perform = threading.Lock(), client._perform

    async def counted(url: str, call: Callable[[Any], Any]) -> Any:
        with lock:
            seen["calls"] += 1
            seen["active"] += 1
            seen["peak"] = max(seen["peak"], seen["active"])
        try:
            return await perform(url, call)
        finally:
            with lock:
                seen["active"] -= 1

    client._perform = counted
    return seen


def video_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("yolo-client-video")]


def assert_same_results(got: list[FrameResult], want: list[list[Any]]) -> None:
    assert [r.index for r in got] == list(range(len(want)))
    for result, expected in zip(got, want, strict=True):
        assert_same_detections(as_found(result.detections), as_found(expected))


@pytest.mark.parametrize("transport", ["bytes", "tensor"])
def test_a_file_gives_every_frame_the_detections_of_detect(triton_server, video, frames, reference, transport) -> None:
    with YoloClient(triton_server.grpc_url, triton_server.model_name, transport=transport) as client:
        with client.detect_video(video, keep_frames=True) as stream:
            assert stream.info == VideoInfo(str(video), FPS, WIDTH, HEIGHT, FRAMES, live=False)
            results = list(stream)
        want = reference if transport == "bytes" else [client.detect(f, color="bgr") for f in frames]
    assert_same_results(results, want)
    assert all(r.dropped_before == 0 for r in results)
    assert [r.timestamp for r in results] == pytest.approx([i / FPS for i in range(FRAMES)], abs=1e-3)
    assert all(r.frame is not None and np.array_equal(r.frame, f) for r, f in zip(results, frames, strict=True))
    assert all(0 < r.latency < 10 for r in results)
    assert sum(len(r.detections) for r in results) > 0  # the scenes give the random weights something to find


def test_order_is_kept_and_the_in_flight_bound_holds(triton_server, video, packet_reference) -> None:
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        client.model_info()
        seen = count_calls(client)
        results = list(client.detect_video(video, max_in_flight=3))
    assert_same_results(results, packet_reference)
    assert seen["calls"] == FRAMES
    assert 2 <= seen["peak"] <= 3  # requests overlapped, never more than asked


def test_a_motion_jpeg_file_sends_its_own_jpegs_and_other_codecs_their_frames(
    triton_server, video, packets, tmp_path
) -> None:
    """No decode and re-encode of what is already a JPEG; an MPEG-4 file's frames are decoded and encoded."""
    mpeg4 = write_video(tmp_path / "scenes.mp4", read_frames(video)[:6], fourcc="mp4v")
    sent: list[Any] = []
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        infer_one = client._infer_one

        async def recorded(loaded: Any, *args: Any) -> Any:
            sent.append(loaded)
            return await infer_one(loaded, *args)

        client._infer_one = recorded  # type: ignore[method-assign]
        assert len(list(client.detect_video(video))) == FRAMES
        scans = [packet[packet.index(START_OF_SCAN) :] for packet in packets]  # FFmpeg rewrites the headers
        # (in the order the requests went: up to max_in_flight at once)
        assert sorted(data[data.index(START_OF_SCAN) :] for data in sent) == sorted(scans)
        assert len(set(scans)) == FRAMES
        sent.clear()
        assert len(list(client.detect_video(mpeg4))) == 6
    want = [encode(".jpg", frame, cv2.IMWRITE_JPEG_QUALITY, QUALITY) for frame in read_frames(mpeg4)]
    assert sorted(sent) == sorted(want)


class FastSource:
    """A live source that outruns any server: ``count`` frames, one every ``interval`` seconds."""

    def __init__(self, frames: list[np.ndarray], count: int, interval: float) -> None:
        self.frames, self.count, self.interval, self.served = frames, count, interval, 0
        self.info = VideoInfo("fake", 1 / interval, WIDTH, HEIGHT, None, live=True)
        self.closed = False

    def read(self) -> tuple[np.ndarray, float] | None:
        if self.served == self.count:
            return None
        time.sleep(self.interval)
        self.served += 1
        return self.frames[(self.served - 1) % len(self.frames)], (self.served - 1) * self.interval

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("drop", ["oldest", "newest"])
def test_a_live_source_that_outruns_the_server_drops_frames_and_keeps_latency_bounded(
    triton_server, frames, drop
) -> None:
    source = FastSource(frames, count=300, interval=0.002)  # 500 frames/s for 0.6 s
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        with client.detect_video(source, drop=drop, max_in_flight=2) as stream:
            results = list(stream)
    assert source.closed
    indices = [r.index for r in results]
    assert indices == sorted(set(indices))
    # every frame read was either detected or dropped, and each drop is counted once, before the next result (the
    # newest frames dropped after the last one kept too, with drop="newest": the stream's count has them)
    assert len(results) + stream.dropped == source.count
    trailing = source.count - 1 - indices[-1]
    assert sum(r.dropped_before for r in results) == stream.dropped - trailing
    assert trailing == 0 or drop == "newest"
    assert [r.dropped_before for r in results] == [i - j - 1 for i, j in zip(indices, [-1, *indices[:-1]], strict=True)]
    assert len(results) < source.count // 2
    # what waits is bounded (2 in flight + 2 queued): a queue that kept every frame would reach seconds
    assert max(r.latency for r in results) < 1.5


def test_a_file_read_as_live_drops_frames(triton_server, video) -> None:
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        results = list(client.detect_video(video, live=True, max_in_flight=1))
    assert len(results) + sum(r.dropped_before for r in results) == FRAMES
    assert len(results) < FRAMES and results[0].index == 0


def test_breaking_out_stops_the_reader_and_the_requests(triton_server, video) -> None:
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        client.model_info()
        seen = count_calls(client)
        for result in client.detect_video(video, max_in_flight=4):
            if result.index == 2:
                break
        assert seen["active"] == 0 and not video_threads()
        assert seen["calls"] <= 3 + 4


def test_the_async_twin_gives_the_same_results_and_cancels_cleanly(triton_server, video, packet_reference) -> None:
    async def run() -> tuple[list[FrameResult], int]:
        async with AsyncYoloClient(triton_server.grpc_url, triton_server.model_name) as client:
            stream = client.detect_video(video, max_in_flight=4)
            results = [result async for result in stream]
            assert stream.info is not None and stream.info.frame_count == FRAMES
            # cancelling the task that iterates a second stream cancels its requests and stops its reader
            seen = count_calls(client)
            first = asyncio.Event()

            async def consume() -> None:
                async for _ in client.detect_video(video):
                    first.set()

            task = asyncio.ensure_future(consume())
            await asyncio.wait_for(first.wait(), 20)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return results, seen["active"]

    results, active = asyncio.run(run())
    assert_same_results(results, packet_reference)
    assert active == 0 and not video_threads()


def test_a_file_that_is_not_a_video_fails_before_any_request(triton_server, tmp_path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n" * 100)
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        seen = count_calls(client)
        with pytest.raises(VideoSourceError, match="not a video"):
            client.detect_video(fake)
        with pytest.raises(VideoSourceError, match="no such video file"):
            client.detect_video(tmp_path / "missing.mp4")
    assert seen["calls"] == 0


def test_a_truncated_file_gives_its_readable_frames_then_the_error(
    triton_server, video, packet_reference, tmp_path
) -> None:
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    results: list[FrameResult] = []
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        with pytest.raises(VideoSourceError, match=rf"ended after (\d+) of its {FRAMES} frames"):
            for result in client.detect_video(cut):
                results.append(result)
    assert 1 < len(results) < FRAMES
    # the last frame read may be the one cut in the middle (FFmpeg decodes what it has of it)
    assert_same_results(results[:-1], packet_reference[: len(results) - 1])
    assert results[-1].index == len(results) - 1


@pytest.mark.parametrize(
    "scheme", ["rtsp://127.0.0.1:{port}/x", "http://127.0.0.1:{port}/x.mp4", "udp://127.0.0.1:{port}"]
)
def test_a_url_that_refuses_or_stays_silent_fails_quickly(triton_server, scheme) -> None:
    url = scheme.format(port=free_ports(1)[0])  # nothing listens there
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        began = time.monotonic()
        with pytest.raises(VideoSourceError, match="cannot open"):
            client.detect_video(url, open_timeout=1.0)
    assert time.monotonic() - began < 5  # refused at once; udp (nobody sends) after the 1 s open timeout


def test_cli_writes_json_lines_and_a_playable_drawn_video(triton_server, video, reference, tmp_path, capsys) -> None:
    out = tmp_path / "drawn.mp4"
    url, model = triton_server.grpc_url, triton_server.model_name
    assert cli_main(["detect", str(video), "--json", "--draw", str(out), "--url", url, "--model", model]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["index"] for line in lines] == list(range(FRAMES))
    assert all(line["dropped_before"] == 0 and line["latency"] > 0 for line in lines)
    for line, expected in zip(lines, reference, strict=True):
        assert len(line["detections"]) == len(expected)
    capture = cv2.VideoCapture(str(out), cv2.CAP_FFMPEG)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    assert len(drawn := read_frames(out)) == FRAMES and drawn[0].shape == (HEIGHT, WIDTH, 3)
    capture.release()
