"""Track ids for a video's detections: supervision's ByteTrack, fed one frame at a time in frame order.

``detect_video(..., track=True)`` (``yolo-client detect VIDEO --track``) gives each :class:`~yolo_client.Detection`
of a :class:`~yolo_client.FrameResult` the ``track_id`` of the object it follows, or None while ByteTrack has not
confirmed a track for it. It needs the ``track`` extra: ``pip install 'yolo-client[track]'``.

Why supervision 0.23: ByteTrack (Zhang et al. 2022) as a kept library with no torch. supervision 0.24 to 0.26 need
the GUI build of OpenCV, which clashes with the headless one this client decodes with, and from 0.27 its trackers
moved to Roboflow's ``trackers``, which needs numpy 2 (the Triton Python backend's stub breaks with it) and the GUI
OpenCV too.

Frames a live source dropped are given to the tracker as frames without detections: ByteTrack's Kalman filter then
steps over the gap as the motion really went on, and a track lost for longer than its buffer ends, as it would
in the camera's own frame rate.

Example:
    >>> tracker = ByteTracker(fps=25.0)
    >>> first = tracker.update(client.detect(frame_0))                  # detections with track_id set
    >>> later = tracker.update(client.detect(frame_3), skipped=2)       # frames 1 and 2 were dropped
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from .types import Detection

TRACK_EXTRA = "yolo-client[track]"
DEFAULT_FRAME_RATE = 30  # a source that does not say its frame rate (ByteTrack's own default)
# supervision numbers tracks with one class-wide counter: streams tracked in parallel take ids under this lock,
# so ids stay unique across the streams of a process (and do not restart at 1 for a second stream)
_UPDATE_LOCK = threading.Lock()


def _supervision() -> Any:
    try:
        import supervision
    except ImportError:
        raise ImportError(f"track=True needs supervision's ByteTrack: pip install '{TRACK_EXTRA}'") from None
    return supervision


class ByteTracker:
    """One stream's ByteTrack: :meth:`update` takes each frame's detections in frame order."""

    def __init__(self, fps: float) -> None:
        self._sv = _supervision()
        frame_rate = round(fps) if fps >= 1 else DEFAULT_FRAME_RATE
        self._tracker = self._sv.ByteTrack(frame_rate=frame_rate)
        self._empty = self._sv.Detections.empty()

    def update(self, detections: list[Detection], skipped: int = 0) -> list[Detection]:
        """``detections`` of the next frame, in their order, each with its ``track_id`` (None if not tracked);
        ``skipped``: frames since the previous update that were never detected (dropped)."""
        boxes = np.array([d.box for d in detections], dtype=np.float32).reshape(-1, 4)
        found = self._sv.Detections(
            xyxy=boxes,
            confidence=np.array([d.score for d in detections], dtype=np.float32),
            class_id=np.array([d.class_id for d in detections], dtype=int),
            data={"index": np.arange(len(detections))},
        )
        with _UPDATE_LOCK:
            # past its buffer (and one more update: supervision forgets a removed track an update late) every
            # track has ended, and more empty frames change nothing
            for _ in range(min(skipped, self._tracker.max_time_lost + 2)):
                self._tracker.update_with_detections(self._empty)
            tracked = self._tracker.update_with_detections(found)
        ids: dict[int, int] = {}
        if len(tracked):  # supervision returns a bare empty Detections (no data) when no track is alive
            ids = {int(i): int(t) for i, t in zip(tracked.data["index"], tracked.tracker_id, strict=True)}
        return [dataclasses.replace(d, track_id=ids.get(k)) for k, d in enumerate(detections)]
