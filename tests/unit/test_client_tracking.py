"""``track=True``: supervision's real ByteTrack behind :class:`~yolo_client.tracking.ByteTracker` and the video
pipeline (the demo server's tracks are checked in tests/integration/test_demo_model.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from yolo_client import Detection
from yolo_client.errors import InvalidInputError
from yolo_client.streaming import Frame, VideoPlan, VideoStream
from yolo_client.tracking import TRACK_EXTRA, ByteTracker
from yolo_client.video import VideoInfo, VideoOptions

pytestmark = pytest.mark.timeout(30)


def square(x: float, y: float, score: float = 0.9, class_id: int = 0, side: float = 40.0) -> Detection:
    return Detection((x, y, x + side, y + side), score, class_id, f"class_{class_id}")


def test_moving_objects_keep_one_id_each_and_the_detections_are_otherwise_unchanged() -> None:
    tracker = ByteTracker(fps=25.0)
    ids = []
    for f in range(30):
        found = [square(10 + 4 * f, 20), square(300, 200 - 3 * f, 0.8, 1), square(500, 50, 0.15, 2)]
        tracked = tracker.update(found)
        assert [(d.box, d.score, d.class_id, d.label) for d in tracked] == [
            (d.box, d.score, d.class_id, d.label) for d in found
        ]
        ids.append([d.track_id for d in tracked])
    first, second, faint = zip(*ids, strict=True)
    assert len(set(first)) == len(set(second)) == 1 and first[0] != second[0] and None not in first + second
    assert set(faint) == {None}  # under ByteTrack's activation threshold: never a track of its own


def test_frames_dropped_between_updates_are_stepped_over() -> None:
    """A fast object (12 px a frame, 40 px wide) seen again 6 frames later: told of the 5 frames skipped, the
    Kalman filter predicts it there and keeps its id; told nothing, it looks for it one frame on and starts anew."""

    def last_ids(skipped: int) -> tuple[int | None, int | None]:
        tracker = ByteTracker(fps=25.0)
        for f in range(10):
            before = tracker.update([square(12 * f, 100)])
        after = tracker.update([square(12 * 15, 100)], skipped=skipped)
        return before[0].track_id, after[0].track_id

    kept, lost = last_ids(skipped=5), last_ids(skipped=0)
    assert kept[0] is not None and kept[1] == kept[0]
    assert lost[1] != lost[0]


def test_a_track_lost_longer_than_its_buffer_ends() -> None:
    tracker = ByteTracker(fps=10.0)  # ByteTrack's 30-frame buffer at 30 fps: 10 frames at 10 fps
    before = tracker.update([square(100, 100)])[0].track_id
    again = tracker.update([square(100, 100)], skipped=5)[0].track_id
    seen_anew = tracker.update([square(100, 100)], skipped=1000)[0].track_id
    confirmed = tracker.update([square(100, 100)])[0].track_id
    assert again == before and seen_anew is None and confirmed not in (None, before)


def test_parallel_streams_never_share_an_id() -> None:
    seen: dict[int, set[int | None]] = {}

    def stream(k: int) -> None:
        tracker = ByteTracker(fps=25.0)
        ids: set[int | None] = set()
        for f in range(40):
            ids.update(d.track_id for d in tracker.update([square(5 * f, 60 * j) for j in range(5)]))
        seen[k] = ids

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(ids) == 5 and None not in ids for ids in seen.values())
    assert len(set().union(*seen.values())) == 20


class Frames:
    """A 10 fps source whose frame ``k`` holds ``k`` in its pixels."""

    def __init__(self, count: int) -> None:
        self.info = VideoInfo("fake", 10.0, 4, 4, count, False)
        self.count, self.read_count = count, 0

    def read(self) -> tuple[np.ndarray, float] | None:
        if self.read_count == self.count:
            return None
        self.read_count += 1
        return np.full((4, 4, 3), self.read_count - 1, np.uint8), (self.read_count - 1) / 10

    def close(self) -> None:
        pass


def test_the_pipeline_tracks_in_frame_order_though_requests_finish_out_of_order() -> None:
    rng, lock = np.random.default_rng(1), threading.Lock()

    async def detect(frame: Frame) -> list[Detection]:
        with lock:
            delay = float(rng.uniform(0, 0.02))
        time.sleep(delay)
        step = int(frame.image[0, 0, 0])
        return [square(15 * step, 10), square(400 - 15 * step, 200, class_id=1)]

    source = Frames(30)
    plan = VideoPlan(source, False, "oldest", 6, False, detect, ByteTracker(source.info.fps))
    results = list(VideoStream(plan))
    assert [r.index for r in results] == list(range(30))
    ids = [tuple(d.track_id for d in r.detections) for r in results]
    assert len(set(ids)) == 1 and None not in ids[0] and len(set(ids[0])) == 2


def test_track_is_checked_and_tracked_detections_say_their_id() -> None:
    with pytest.raises(InvalidInputError, match="track"):
        VideoOptions(track=1)  # type: ignore[arg-type]
    assert "track_id" not in square(0, 0).to_dict()
    assert Detection((0, 0, 1, 1), 0.5, 0, "a", track_id=7).to_dict()["track_id"] == 7


def test_without_the_extra_track_fails_before_any_request_naming_it(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    code = f"""
import sys
import cv2, numpy as np
writer = cv2.VideoWriter({str(video)!r}, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
for _ in range(3):
    writer.write(np.zeros((48, 64, 3), np.uint8))
writer.release()
sys.modules["supervision"] = None  # as if the extra were not installed
from yolo_client import YoloClient
try:
    YoloClient("127.0.0.1:9").detect_video({str(video)!r}, track=True)  # nothing listens on port 9
except ImportError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True)
    assert TRACK_EXTRA in out.stdout, out.stderr


def test_tracking_keeps_the_client_free_of_torch() -> None:
    code = "import sys; from yolo_client.tracking import ByteTracker; ByteTracker(30.0); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True)
    assert out.stdout.strip() == "False"
