"""What ``detect_video`` yields and takes: :class:`FrameResult`, :class:`VideoInfo`, :class:`VideoOptions`; and the
two pieces of its pipeline that need no client: the bounded :class:`FrameQueue` between the reader thread and the
requests, and the :class:`FrameEncoder` that turns a frame into what is sent.

Example:
    >>> with client.detect_video("street.mp4") as stream:            # or an rtsp:// URL, or 0 for a camera
    ...     for result in stream:                                     # FrameResult, in frame order
    ...         print(result.index, f"{result.timestamp:.2f}s", len(result.detections), result.dropped_before)
    >>> queue = FrameQueue(2, "oldest")                               # a live source's: never blocks, drops the oldest
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import numpy as np

from .errors import InvalidInputError, VideoSourceError
from .types import Detection, DetectOptions

if TYPE_CHECKING:  # pragma: no cover
    from ._base import Loaded

DropPolicy = Literal["oldest", "newest"]
T = TypeVar("T")


@dataclass(frozen=True)
class FrameResult:
    """The detections of one video frame.

    Attributes:
        index: the frame's index in the source (0 for the first frame read).
        timestamp: the frame's time in seconds, from the source (its presentation time), else ``index / fps``.
        detections: as from ``detect``: boxes ``(x1, y1, x2, y2)`` in the frame's own pixels, highest score first.
        dropped_before: frames the client dropped since the previous result (a live source outrunning the server).
        latency: seconds from the frame being read to its result being handed over.
        frame: the frame, uint8 ``[H, W, 3]`` BGR (OpenCV's order, ready for ``draw_detections`` and
            ``cv2.VideoWriter``), with ``keep_frames=True``; else None.
    """

    index: int
    timestamp: float
    detections: list[Detection]
    dropped_before: int
    latency: float
    frame: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (no frame)."""
        return {
            "index": self.index,
            "timestamp": round(self.timestamp, 6),
            "dropped_before": self.dropped_before,
            "latency": round(self.latency, 6),
            "detections": [d.to_dict() for d in self.detections],
        }


@dataclass(frozen=True)
class VideoInfo:
    """What a source says of itself: ``fps`` 0 and ``frame_count`` None where it does not say."""

    name: str
    fps: float
    width: int
    height: int
    frame_count: int | None
    live: bool


@dataclass(frozen=True)
class VideoOptions:
    """The video keywords of ``detect_video`` (beside ``score_threshold``, ``max_detections`` and ``timeout``).

    Attributes:
        live: None: a camera index and network URLs are live, files are not. A file has every frame detected (its
            reader waits for the pipeline); a live source is read at its own pace and, when the server falls
            behind, frames are dropped so that latency stays bounded. ``live=True`` on a file reads it as fast as
            it decodes, dropping what the server cannot take.
        drop: which frames a live source loses when the pipeline is full: ``"oldest"`` keeps the newest frames
            (lowest latency), ``"newest"`` keeps the frames already waiting.
        max_in_flight: requests in flight at once (default: the client's ``max_in_flight``); results done but not
            yet consumed count too, so nothing piles up behind a slow consumer.
        jpeg_quality: frames are sent as JPEG at this quality (bytes transport; tensors are sent as they are). A Motion
            JPEG file or stream's frames are sent as their own JPEGs instead, undecoded (:class:`JpegFrame`), unless
            they are shrunk or kept.
        shrink: downscale each frame, before encoding, to the smallest size that still covers the model's input
            (fewer bytes to encode and send; boxes come back in the frame's pixels). Off by default: the server
            then resizes from the source's full resolution, as ``detect`` does for an image.
        keep_frames: put each frame in its result (for drawing).
        track: give each detection the ``track_id`` of the object it follows (supervision's ByteTrack, the
            ``yolo-client[track]`` extra; see :mod:`yolo_client.tracking`).
        open_timeout: seconds to open a network source and read its first frame.
        read_timeout: seconds a network source may stay silent before its stream is taken to have ended.
    """

    live: bool | None = None
    drop: DropPolicy = "oldest"
    max_in_flight: int | None = None
    jpeg_quality: int = 90
    shrink: bool = False
    keep_frames: bool = False
    track: bool = False
    open_timeout: float = 10.0
    read_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.live is not None and not isinstance(self.live, bool):
            raise InvalidInputError(f"live must be None, True or False, got {self.live!r}")
        if not all(isinstance(flag, bool) for flag in (self.shrink, self.keep_frames, self.track)):
            raise InvalidInputError("shrink, keep_frames and track must be True or False")
        if self.drop not in ("oldest", "newest"):
            raise InvalidInputError(f"drop must be 'oldest' or 'newest', got {self.drop!r}")
        n = self.max_in_flight
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise InvalidInputError(f"max_in_flight must be an integer >= 1, got {n!r}")
        q = self.jpeg_quality
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100:
            raise InvalidInputError(f"jpeg_quality must be an integer in 1..100, got {q!r}")
        for name in ("open_timeout", "read_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidInputError(f"{name} must be a positive number of seconds, got {value!r}")


class VideoDetectOptions(DetectOptions, total=False):
    """The keywords of ``detect_video``: :class:`~yolo_client.types.DetectOptions` but ``color`` (frames come in
    OpenCV's BGR), and :class:`VideoOptions`'s fields (their defaults are there)."""

    live: bool | None
    drop: DropPolicy
    max_in_flight: int | None
    jpeg_quality: int
    shrink: bool
    keep_frames: bool
    track: bool
    open_timeout: float
    read_timeout: float


def split_options(options: Mapping[str, Any]) -> tuple[VideoOptions, DetectOptions]:
    """``detect_video``'s keywords as its :class:`VideoOptions` and the per-frame ``detect`` options."""
    if "color" in options:
        raise TypeError("detect_video() takes no color: frames are decoded here, in OpenCV's BGR order")
    names = {f.name for f in fields(VideoOptions)}
    video = VideoOptions(**{k: v for k, v in options.items() if k in names})
    detect: DetectOptions = {k: v for k, v in options.items() if k not in names}  # type: ignore[assignment]
    return video, detect


class FrameQueue(Generic[T]):
    """A bounded queue between a source's reader thread and the pipeline; ``notify`` is called on every change.

    ``"block"``: a full queue makes :meth:`put` wait (a file: every frame is detected). ``"oldest"``: a full queue
    discards its oldest entry to take the new one; ``"newest"``: it discards the new one. A live source's reader
    so never waits on the server, and what waits is bounded by the capacity.
    """

    def __init__(self, capacity: int, policy: Literal["block", "oldest", "newest"]) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity, self.policy = capacity, policy
        self.notify: Callable[[], None] = lambda: None
        self.dropped = 0
        self.error: BaseException | None = None
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._finished = self._cancelled = False

    def put(self, item: T) -> bool:
        """Add ``item`` (may drop one, or wait with ``"block"``); False once the consumer has cancelled."""
        with self._cond:
            while self.policy == "block" and len(self._items) >= self.capacity and not self._cancelled:
                self._cond.wait()
            if self._cancelled:
                return False
            if len(self._items) >= self.capacity:
                self.dropped += 1
                if self.policy == "newest":
                    return True
                self._items.popleft()
            self._items.append(item)
        self.notify()
        return True

    def take(self) -> T | None:
        """The next item, or None if there is none now (never waits)."""
        with self._cond:
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def finish(self, error: BaseException | None = None) -> None:
        """The producer is done (its source ended, or broke with ``error``)."""
        with self._cond:
            self._finished, self.error = True, error
        self.notify()

    def cancel(self) -> None:
        """The consumer is gone: drop what waits and release a waiting producer."""
        with self._cond:
            self._cancelled = True
            self._items.clear()
            self._cond.notify_all()

    @property
    def ended(self) -> bool:
        """Finished and emptied: nothing more will come."""
        with self._cond:
            return self._finished and not self._items


@dataclass(frozen=True)
class JpegFrame:
    """A frame still in its source's own JPEG (a Motion JPEG packet): sent as it is, neither decoded nor re-encoded
    by the client, and decoded once, by the server."""

    data: bytes

    def pixels(self) -> np.ndarray:
        """The frame decoded: uint8 ``[H, W, 3]`` BGR (for a stream whose frames are kept, shrunk or sent as tensors)."""
        import cv2

        bgr = cv2.imdecode(np.frombuffer(self.data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise VideoSourceError(f"a frame of {len(self.data)} bytes is not a JPEG")
        return bgr


@dataclass(frozen=True)
class FrameEncoder:
    """A frame as the client sends it: JPEG bytes (bytes transport) or RGB pixels (tensor), maybe shrunk first."""

    transport: str
    jpeg_quality: int
    cover: tuple[int, int] | None = None  # shrink to cover this (the model's input), bytes transport only

    def encode(self, bgr: np.ndarray | JpegFrame) -> tuple[Loaded, np.ndarray | None]:
        """What to send and, if the frame was shrunk, the ``[4]`` factors mapping its boxes back."""
        import cv2

        if isinstance(bgr, JpegFrame):  # the pipeline decodes one first for the tensor transport or shrinking
            return bgr.data, None
        if self.transport == "tensor":  # letterboxed from full resolution by the request path
            return np.ascontiguousarray(bgr[:, :, ::-1]), None
        back = None
        height, width = bgr.shape[:2]
        if self.cover is not None:
            scale = max(self.cover[0] / width, self.cover[1] / height)
            if scale < 1:
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
                back = np.array([width / size[0], height / size[1]] * 2)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 HxWx3
            raise VideoSourceError(f"could not encode a {width}x{height} frame as JPEG")
        return data.tobytes(), back


def scale_boxes(found: list[Detection], factors: np.ndarray, width: int, height: int) -> list[Detection]:
    """Detections of a shrunk frame in the full frame's pixels (clipped to it)."""
    limit = np.array([width, height, width, height], dtype=np.float64)
    return [
        dataclasses.replace(d, box=tuple(float(v) for v in np.clip(np.asarray(d.box) * factors, 0, limit)))  # type: ignore[arg-type]
        for d in found
    ]
