"""The locust video user's pure pieces (loadtest/yolo_load/video.py): the camera's clock, what becomes of a frame
(sent, late, dropped), the counts a worker sends its master, and the clip. No locust here: importing it would
gevent-patch the test process."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.timeout(30)

if str(ROOT / "loadtest") not in sys.path:
    sys.path.insert(0, str(ROOT / "loadtest"))  # as locust imports it: beside the locustfile

from yolo_load.video import PAN_PX, Camera, VideoStats, clip, parse_size  # noqa: E402


def test_a_frame_is_dropped_when_the_window_is_full_and_late_after_one_interval() -> None:
    camera = Camera(fps=10, window=2, start=5.0)
    assert camera.due(0) == 5.0 and camera.due(3) == pytest.approx(5.3)
    assert camera.decide(3, now=5.3, in_flight=1) == "sent"
    assert camera.decide(3, now=5.3 + 0.099, in_flight=0) == "sent"  # within one interval of its due time
    assert camera.decide(3, now=5.3 + 0.101, in_flight=1) == "late"
    assert camera.decide(3, now=5.3, in_flight=2) == "dropped"  # full: dropped, however early
    assert camera.decide(3, now=9.0, in_flight=2) == "dropped"
    for fps, window in ((0, 1), (-1, 1), (10, 0)):
        with pytest.raises(ValueError):
            Camera(fps, window, 0.0)


def test_counts_add_up_and_a_worker_sends_each_count_once() -> None:
    stats = VideoStats()
    for outcome in ("sent", "sent", "late", "dropped", "dropped", "dropped"):
        stats.count(outcome)  # type: ignore[arg-type]
    assert stats.to_dict() == {
        "frames": 6, "sent": 2, "late": 1, "dropped": 3, "late_ratio": 0.1667, "dropped_ratio": 0.5,
    }  # fmt: skip
    report = stats.take()
    assert report == {"frames": 6, "sent": 2, "late": 1, "dropped": 3} and stats.take()["frames"] == 0
    master = VideoStats()
    master.add(report)
    master.add(report)
    master.add({})
    assert (master.frames, master.sent, master.late, master.dropped) == (12, 4, 2, 6)
    assert VideoStats().to_dict()["dropped_ratio"] == 0.0


def test_the_clip_pans_across_one_scene_as_jpeg_frames() -> None:
    frames = clip(64, 48, 3, seed=1)
    decoded = [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR) for f in frames]
    assert len(frames) == 3 and all(f[:2] == b"\xff\xd8" for f in frames)
    assert all(d.shape == (48, 64, 3) for d in decoded)
    # frame 1 is frame 0 moved left by PAN_PX (JPEG blurs edges a little)
    moved = np.abs(decoded[1][:, : 64 - PAN_PX].astype(int) - decoded[0][:, PAN_PX:].astype(int)).mean()
    assert moved < 6 and frames[0] != frames[1]
    assert parse_size(" 640x480") == (640, 480)
    for bad in ("640", "640x", "8x480", "640x480x3"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_size(bad)
    with pytest.raises(ValueError):
        clip(64, 48, 0)
