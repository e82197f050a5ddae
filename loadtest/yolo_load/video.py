"""The video user's pieces that need no running locust: the clip, the camera's clock and the late/dropped counts.

A video user is one live camera: frame ``k`` of its clip is due ``k / fps`` seconds after it starts. At its due
time a frame is *dropped* when the stream already has ``window`` requests in flight (a live camera does not wait:
the SDK's ``detect_video(live=True)`` drops the same way), else its request starts; it is *late* when that start
comes more than one frame interval after its due time (the load generator, not the server, fell behind: too many
users for one locust process). The counts add up over users, and over workers on the master.

Example:
    >>> camera = Camera(fps=15, window=1, start=0.0)
    >>> camera.decide(0, now=0.001, in_flight=0), camera.decide(1, now=0.07, in_flight=1)
    ('sent', 'dropped')
    >>> camera.decide(2, now=camera.due(2) + 0.1, in_flight=0)                       # > 1/15 s after its due time
    'late'
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

import cv2
import numpy as np

from yolo_client.scenes import draw_scene

Outcome = Literal["sent", "late", "dropped"]
PAN_PX = 4  # the clip pans across a wider scene by this much a frame: consecutive frames differ, as a camera's do
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def parse_size(spec: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)``; ValueError for anything else."""
    match = _SIZE.match(spec.strip())
    if not match or not (16 <= int(match[1]) <= 8192 and 16 <= int(match[2]) <= 8192):
        raise ValueError(f"video size {spec!r}: use WIDTHxHEIGHT, sides 16..8192, e.g. 640x480")
    return int(match[1]), int(match[2])


def clip(width: int, height: int, frames: int, seed: int = 0, quality: int = 90) -> tuple[bytes, ...]:
    """``frames`` JPEG frames panning across one synthetic scene (:mod:`yolo_client.scenes`)."""
    if frames < 1:
        raise ValueError("a clip needs at least one frame")
    wide = draw_scene(np.random.default_rng(seed), width + PAN_PX * (frames - 1), height).image
    encoded = []
    for k in range(frames):
        ok, data = cv2.imencode(".jpg", wide[:, k * PAN_PX : k * PAN_PX + width], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 HxWx3
            raise RuntimeError("OpenCV could not encode a frame")
        encoded.append(data.tobytes())
    return tuple(encoded)


@dataclass(frozen=True)
class Camera:
    """A live camera's clock: frame ``k`` due at ``start + k / fps``, at most ``window`` requests in flight."""

    fps: float
    window: int
    start: float

    def __post_init__(self) -> None:
        if not self.fps > 0 or self.window < 1:
            raise ValueError("a camera needs fps > 0 and a window >= 1")

    def due(self, index: int) -> float:
        return self.start + index / self.fps

    def decide(self, index: int, now: float, in_flight: int) -> Outcome:
        """What becomes of frame ``index`` when its turn comes at ``now`` with ``in_flight`` requests out."""
        if in_flight >= self.window:
            return "dropped"
        return "late" if now - self.due(index) > 1 / self.fps else "sent"


@dataclass
class VideoStats:
    """Frames of every video stream: ``frames`` due, of which ``sent`` on time, ``late`` (sent) and ``dropped``."""

    frames: int = 0
    sent: int = 0
    late: int = 0
    dropped: int = 0

    def count(self, outcome: Outcome) -> None:
        self.frames += 1
        setattr(self, outcome, getattr(self, outcome) + 1)

    def add(self, other: dict[str, int]) -> None:
        """Add a worker's report (:meth:`take`)."""
        for name, value in other.items():
            setattr(self, name, getattr(self, name) + int(value))

    def take(self) -> dict[str, int]:
        """The counts since the last take, then zero (what a worker sends its master)."""
        counts = asdict(self)
        self.frames = self.sent = self.late = self.dropped = 0
        return counts

    def to_dict(self) -> dict[str, float]:
        share = {
            name: round(getattr(self, name) / self.frames, 4) if self.frames else 0.0 for name in ("late", "dropped")
        }
        return {**asdict(self), "late_ratio": share["late"], "dropped_ratio": share["dropped"]}
