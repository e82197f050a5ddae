"""``detect_video``'s pieces without a server: the frame queue, the options, the sources, the encoder and the
pipeline driven by fake frames and fake requests (the real server's tests are tests/integration/test_video.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from yolo_client import Detection, VideoSourceError
from yolo_client.errors import InvalidInputError, ServerError
from yolo_client.sources import is_url, open_source
from yolo_client.streaming import AsyncVideoStream, Frame, VideoPlan, VideoStream
from yolo_client.video import (
    FrameEncoder,
    FrameQueue,
    JpegFrame,
    VideoInfo,
    VideoOptions,
    scale_boxes,
    split_options,
)
from yolo_client.video_cli import is_video

pytestmark = pytest.mark.timeout(30)


def test_a_live_queue_never_blocks_and_drops_the_oldest_or_the_newest() -> None:
    for policy, kept in (("oldest", [3, 4]), ("newest", [0, 1])):
        queue: FrameQueue[int] = FrameQueue(2, policy)  # type: ignore[arg-type]
        assert all(queue.put(i) for i in range(5))
        assert [queue.take(), queue.take(), queue.take()] == [*kept, None]
        assert queue.dropped == 3


def test_a_file_queue_blocks_its_producer_until_taken_or_cancelled() -> None:
    queue: FrameQueue[int] = FrameQueue(2, "block")
    outcomes: list[bool] = []
    producer = threading.Thread(target=lambda: outcomes.extend(queue.put(i) for i in range(4)))
    producer.start()
    time.sleep(0.1)
    assert producer.is_alive() and queue.take() == 0  # waits with 2 queued; one taken lets the third in
    time.sleep(0.1)
    assert producer.is_alive()
    queue.cancel()  # the consumer left: the waiting put gives up
    producer.join(5)
    assert outcomes == [True, True, True, False] and queue.dropped == 0


def test_a_queue_ends_once_finished_and_emptied() -> None:
    woken: list[int] = []
    queue: FrameQueue[int] = FrameQueue(1, "block")
    queue.notify = lambda: woken.append(1)
    queue.put(7)
    queue.finish(VideoSourceError("cut"))
    assert not queue.ended and queue.take() == 7 and queue.ended
    assert isinstance(queue.error, VideoSourceError) and len(woken) == 2


def test_video_options_are_checked() -> None:
    for bad in ({"drop": "middle"}, {"jpeg_quality": 0}, {"max_in_flight": 0}, {"open_timeout": 0}, {"live": 1}):
        with pytest.raises(InvalidInputError):
            VideoOptions(**bad)  # type: ignore[arg-type]
    video, detect = split_options({"live": True, "score_threshold": 0.5, "timeout": 3})
    assert video == VideoOptions(live=True) and detect == {"score_threshold": 0.5, "timeout": 3}
    with pytest.raises(TypeError, match="color"):
        split_options({"color": "bgr"})


def test_sources_that_cannot_be_read_are_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "text.mp4").write_text("not a video\n")
    with pytest.raises(VideoSourceError, match="no such video file"):
        open_source(tmp_path / "missing.avi", VideoOptions())
    with pytest.raises(VideoSourceError, match="not a video FFmpeg can read"):
        open_source(tmp_path / "text.mp4", VideoOptions())
    with pytest.raises(InvalidInputError, match="unsupported video source"):
        open_source(2.5, VideoOptions())  # type: ignore[arg-type]


def write_clip(path: Path, fourcc: str, count: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    frames = [cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 0) for _ in range(count)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 10.0, (64, 48))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return frames


def read_all(source: Any) -> list[tuple[Any, float]]:
    items = []
    while (item := source.read()) is not None:
        items.append(item)
    source.close()
    return items


def test_a_motion_jpeg_file_is_read_as_its_jpegs_only_when_asked(tmp_path: Path) -> None:
    write_clip(tmp_path / "clip.avi", "MJPG")
    write_clip(tmp_path / "clip.mp4", "mp4v")
    decoded = open_source(tmp_path / "clip.avi", VideoOptions())
    packets = open_source(tmp_path / "clip.avi", VideoOptions(), packets=True)
    assert packets.info == decoded.info and packets.info.frame_count == 6
    as_packets, as_pixels = read_all(packets), read_all(decoded)
    assert all(isinstance(frame, JpegFrame) for frame, _ in as_packets)
    assert [t for _, t in as_packets] == [t for _, t in as_pixels] == pytest.approx([k / 10 for k in range(6)])
    for (packet, _), (pixels, _) in zip(as_packets, as_pixels, strict=True):
        ours = cv2.imdecode(np.frombuffer(packet.data, np.uint8), cv2.IMREAD_COLOR)
        assert ours.shape == pixels.shape and np.abs(ours.astype(int) - pixels).mean() < 8  # libjpeg vs FFmpeg (chroma)
    other = read_all(open_source(tmp_path / "clip.mp4", VideoOptions(), packets=True))
    assert len(other) == 6 and all(isinstance(frame, np.ndarray) for frame, _ in other)  # not JPEGs: decoded


def test_a_truncated_motion_jpeg_file_gives_its_whole_frames_then_the_error(tmp_path: Path) -> None:
    write_clip(tmp_path / "clip.avi", "MJPG", count=20)
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    source = open_source(tmp_path / "cut.avi", VideoOptions(), packets=True)
    read = []
    with pytest.raises(VideoSourceError, match=r"ended after \d+ of its 20 frames"):
        while (item := source.read()) is not None:
            read.append(item[0])
    assert 5 <= len(read) < 20
    assert all(isinstance(frame, JpegFrame) for frame in read[:-1])  # the last may be the one cut, decoded


def test_a_sources_jpegs_are_decoded_by_the_reader_only_where_pixels_are_needed(tmp_path: Path) -> None:
    write_clip(tmp_path / "clip.avi", "MJPG")
    for pixels in (False, True):  # kept frames (or shrunk, or tensors) need pixels
        sent: list[type] = []

        async def detect(frame: Frame, sent: list[type] = sent) -> list[Detection]:
            sent.append(type(frame.image))
            return []

        source = open_source(tmp_path / "clip.avi", VideoOptions(), packets=True)
        results = list(VideoStream(VideoPlan(source, False, "oldest", 2, pixels, detect, pixels=pixels)))
        assert len(results) == 6 and set(sent) == {np.ndarray if pixels else JpegFrame}
        assert [type(r.frame) for r in results] == [np.ndarray if pixels else type(None)] * 6


def test_what_is_a_video_or_a_url(tmp_path: Path) -> None:
    assert is_url("rtsp://cam/x") and is_url("http://h/v.mp4") and not is_url("file:///v.mp4") and not is_url("a.mp4")
    ok, jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "still").write_bytes(jpeg.tobytes())
    (tmp_path / "clip").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(16))
    assert [is_video(a) for a in ("0", "srt://h:9000", "x.MP4", "y.png")] == [True, True, True, False]
    assert [is_video(str(tmp_path / n)) for n in ("still", "clip")] == [False, True]


def test_shrinking_covers_the_model_input_and_maps_boxes_back() -> None:
    frame = np.zeros((720, 1280, 3), np.uint8)
    data, back = FrameEncoder("bytes", 90, cover=(320, 256)).encode(frame)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # type: ignore[arg-type]
    assert decoded.shape == (256, 455, 3) and back is not None  # 256 rows cover 256; 455 columns cover 320
    found = [Detection((10.0, 20.0, 455.0, 256.0), 0.9, 0, "a")]
    assert scale_boxes(found, back, 1280, 720)[0].box == pytest.approx((28.13, 56.25, 1280.0, 720.0), abs=0.01)
    assert FrameEncoder("bytes", 90, cover=(1920, 1080)).encode(frame)[1] is None  # never enlarged
    pixels, none = FrameEncoder("tensor", 90, cover=(320, 256)).encode(frame)
    assert isinstance(pixels, np.ndarray) and pixels.shape == frame.shape and none is None


class Frames:
    """A fake source: ``count`` frames whose first pixel is their index, then None (or ``error``)."""

    def __init__(self, count: int, live: bool = False, error: Exception | None = None) -> None:
        self.info = VideoInfo("fake", 10.0, 4, 4, None if live else count, live)
        self.count, self.error, self.read_count, self.closed = count, error, 0, False

    def read(self) -> tuple[np.ndarray, float] | None:
        if self.read_count == self.count:
            if self.error is not None:
                raise self.error
            return None
        frame = np.full((4, 4, 3), self.read_count, np.uint8)
        self.read_count += 1
        return frame, (self.read_count - 1) / 10

    def close(self) -> None:
        self.closed = True


def plan(source: Frames, in_flight: int, seen: dict[str, int], fail_at: int | None = None) -> VideoPlan:
    """Requests that take a random time (so they finish out of order), counting how many run at once."""
    lock, rng = threading.Lock(), np.random.default_rng(0)

    async def detect(frame: Frame) -> list[Detection]:
        with lock:
            seen["active"] += 1
            seen["peak"] = max(seen["peak"], seen["active"])
            delay = float(rng.uniform(0, 0.02))
        time.sleep(delay)
        with lock:
            seen["active"] -= 1
        if frame.index == fail_at:
            raise ServerError("boom")
        return [Detection((0.0, 0.0, 1.0, 1.0), 1.0, int(frame.image[0, 0, 0]), "x")]

    return VideoPlan(source, source.info.live, "oldest", in_flight, False, detect)


def no_threads_left() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("yolo-client-video")]


def test_results_come_in_frame_order_within_the_in_flight_bound() -> None:
    source, seen = Frames(40), {"active": 0, "peak": 0}
    results = list(VideoStream(plan(source, 4, seen)))
    assert [r.index for r in results] == list(range(40))
    assert [r.detections[0].class_id for r in results] == list(range(40))  # each frame's own result
    assert [r.timestamp for r in results] == pytest.approx([i / 10 for i in range(40)])
    assert all(r.dropped_before == 0 for r in results) and 2 <= seen["peak"] <= 4
    assert source.closed and no_threads_left()


def test_a_failed_request_ends_the_stream_after_every_result_before_it() -> None:
    source, seen = Frames(40), {"active": 0, "peak": 0}
    got = []
    with pytest.raises(ServerError, match="boom"):
        for result in VideoStream(plan(source, 4, seen, fail_at=5)):
            got.append(result.index)
    assert got == [0, 1, 2, 3, 4] and seen["active"] == 0 and source.closed and no_threads_left()


def test_a_source_error_comes_after_every_frame_read() -> None:
    source = Frames(6, error=VideoSourceError("cut short"))
    got = []
    with pytest.raises(VideoSourceError, match="cut short"):
        for result in VideoStream(plan(source, 3, {"active": 0, "peak": 0})):
            got.append(result.index)
    assert got == list(range(6)) and no_threads_left()


def test_a_stream_closed_before_it_started_closes_its_source() -> None:
    source = Frames(3)
    VideoStream(plan(source, 2, {"active": 0, "peak": 0})).close()
    assert source.closed and no_threads_left()


def test_the_async_driver_gives_the_same_results() -> None:
    async def run() -> list[int]:
        async def opener() -> VideoPlan:
            return plan(Frames(30), 4, {"active": 0, "peak": 0})

        async with AsyncVideoStream(opener) as stream:
            return [r.detections[0].class_id async for r in stream]

    assert asyncio.run(run()) == list(range(30)) and no_threads_left()
