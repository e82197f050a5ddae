"""Frame sources: a file, a camera or a stream URL read with OpenCV, or any object with the same three members.

A source is a file path, a camera index (``int``) or any URL FFmpeg opens (``rtsp://``, ``http(s)://``,
``udp://``, ``srt://``, ...), read with OpenCV's ``cv2.VideoCapture`` on its FFmpeg backend (a camera index on
OpenCV's default camera backend, V4L2 on Linux: FFmpeg cannot open an index). OpenCV rather than PyAV: it is
already the client's dependency, and it is the same FFmpeg underneath. Anything else with the
:class:`FrameSource` members (a PyAV or GStreamer reader, a test's fake) is accepted as it is.

A Motion JPEG source (an MJPG file, an IP camera's multipart HTTP stream) is already a series of JPEGs: opened with
``packets=True`` it is demuxed only, and each frame is its packet (:class:`~yolo_client.video.JpegFrame`), which
``detect_video`` sends as it is. Decoding it and encoding it again would cost the client 2 to 3 ms a 640x480 frame,
on CPUs a server beside it may share, and a second generation of JPEG loss.

Example:
    >>> source = open_source("rtsp://camera/stream", VideoOptions(open_timeout=5))   # VideoSourceError if not
    >>> source.info.fps, source.info.live
    (25.0, True)
    >>> frame, seconds = source.read()                                             # BGR [H, W, 3], or None at the end
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Protocol, TypeGuard, Union

import numpy as np

from .errors import InvalidInputError, VideoSourceError
from .video import JpegFrame, VideoInfo, VideoOptions

VideoInput = Union[str, "os.PathLike[str]", int]  # a file, a URL or a camera index
FrameData = np.ndarray | JpegFrame  # BGR pixels, or a Motion JPEG stream's packet as it came

# a URL FFmpeg opens by protocol; a file:// URL is a file
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# the codec tags FFmpeg gives a Motion JPEG stream whose packets are each a whole JPEG (AVI, QuickTime, HTTP's
# multipart MJPEG): read undecoded with ``packets=True``; not 'mjpa'/'mjpb' (QuickTime's two-field frames)
MJPEG_TAGS = frozenset({"MJPG", "mjpg", "AVI1", "jpeg", "JPEG", "mjpe"})
JPEG_END = b"\xff\xd9"  # the end-of-image marker: a packet without it was cut short
# a container's frame count may be an estimate (from its duration): a file is truncated only when more than this
# fraction of it is missing (and at least 2 frames)
TRUNCATION_TOLERANCE = 0.01


class FrameSource(Protocol):
    """Frames one at a time: what ``detect_video`` reads (from its reader thread)."""

    @property
    def info(self) -> VideoInfo: ...

    def read(self) -> tuple[FrameData, float] | None:
        """The next frame (uint8 ``[H, W, 3]`` BGR, or a :class:`~yolo_client.video.JpegFrame`) and its timestamp in
        seconds; None at the stream's end.

        Raises:
            VideoSourceError: the source broke off (a truncated file).
        """

    def close(self) -> None: ...


def is_url(name: str) -> bool:
    """A URL FFmpeg opens by its protocol (``rtsp://``, ``http://``, ...); ``file://`` names a file."""
    return _URL.match(name) is not None and not name.startswith("file://")


def is_frame_source(source: object) -> TypeGuard[FrameSource]:
    return all(callable(getattr(source, name, None)) for name in ("read", "close")) and hasattr(source, "info")


def open_source(source: VideoInput, options: VideoOptions, packets: bool = False) -> CaptureSource:
    """Open ``source`` and read its first frame (blocks up to ``options.open_timeout`` on a network source).

    ``packets``: a Motion JPEG file or URL gives its frames as :class:`~yolo_client.video.JpegFrame`, undecoded
    (OpenCV's raw stream), for a caller that sends JPEGs and needs no pixels; any other gives pixels as ever.

    Raises:
        VideoSourceError: a missing or unreadable file, a URL that refuses or stays silent, no camera there.
    """
    import cv2

    camera = isinstance(source, int) and not isinstance(source, bool)
    if not camera and not isinstance(source, (str, os.PathLike)):
        raise InvalidInputError(
            f"unsupported video source {type(source).__name__}: pass a path, a URL, a camera index or a FrameSource"
        )
    name = str(source) if camera else os.fspath(source)  # type: ignore[arg-type]
    url = not camera and is_url(name)
    if not camera and not url and not os.path.isfile(name):
        raise VideoSourceError(f"no such video file: {name}" if not os.path.exists(name) else f"{name} is not a file")
    timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(options.open_timeout * 1000)]
    timeouts += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(options.read_timeout * 1000)]
    capture = (
        cv2.VideoCapture(int(source), cv2.CAP_ANY)  # type: ignore[arg-type]
        if camera
        else cv2.VideoCapture(name, cv2.CAP_FFMPEG, timeouts)
    )
    what = f"camera {name}" if camera else name
    if not capture.isOpened():
        capture.release()
        hint = "refused, unreachable or silent" if url else "not a video FFmpeg can read"
        raise VideoSourceError(f"cannot open {what} ({'no such camera' if camera else hint})")
    raw = packets and not camera and _codec_tag(capture) in MJPEG_TAGS and capture.set(cv2.CAP_PROP_FORMAT, -1)
    ok, first = capture.read()
    if not ok or first is None:
        capture.release()
        raise VideoSourceError(f"{what} opened but gave no frame (empty, damaged, or no stream within the timeout)")
    packet = JpegFrame(first.tobytes()) if raw else None
    if packet is not None:
        first = cv2.imdecode(first.reshape(-1), cv2.IMREAD_COLOR)  # its size, and a check that it is a whole JPEG
        if first is None:  # it is not: read the stream decoded, as any other
            capture.release()
            return open_source(source, options)
    live = camera or url
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    info = VideoInfo(
        name=what,
        fps=max(float(capture.get(cv2.CAP_PROP_FPS) or 0.0), 0.0),
        width=int(first.shape[1]),
        height=int(first.shape[0]),
        frame_count=count if count > 0 and not live else None,
        live=live,
    )
    return CaptureSource(capture, info, first if packet is None else packet)


def _codec_tag(capture: Any) -> str:
    import cv2

    tag = int(capture.get(cv2.CAP_PROP_FOURCC))
    return tag.to_bytes(4, "little").decode("latin-1") if tag > 0 else ""


class CaptureSource:
    """A :class:`FrameSource` over an open ``cv2.VideoCapture`` whose first frame was read (by :func:`open_source`)."""

    def __init__(self, capture: Any, info: VideoInfo, first: FrameData) -> None:
        self._capture = capture
        self._info = info
        self._first: FrameData | None = first
        self._packets = isinstance(first, JpegFrame)  # the capture was opened raw: it reads packets
        self._read = 0
        self._opened = time.monotonic()

    @property
    def info(self) -> VideoInfo:
        return self._info

    def read(self) -> tuple[FrameData, float] | None:
        import cv2

        frame, self._first = self._first, None
        while frame is None:
            ok, read = self._capture.read()
            if not ok or read is None:
                self._check_complete()
                return None
            frame = self._packet(read) if self._packets else read
        index, self._read = self._read, self._read + 1
        msec = float(self._capture.get(cv2.CAP_PROP_POS_MSEC))
        if msec > 0 or index == 0:
            return frame, msec / 1000
        # a source without presentation times (some cameras): its frame rate, else the clock
        return frame, index / self._info.fps if self._info.fps > 0 else time.monotonic() - self._opened

    def close(self) -> None:
        self._capture.release()

    def _packet(self, raw: np.ndarray) -> FrameData | None:
        """A packet as its JPEG; one cut short decoded as far as it goes, as FFmpeg would; None for one that is not a
        JPEG at all (skipped: a truncated file's then fails its frame count)."""
        import cv2

        data = raw.tobytes()
        if data.rstrip(b"\0").endswith(JPEG_END):  # AVI pads a chunk to an even size
            return JpegFrame(data)
        decoded: np.ndarray | None = cv2.imdecode(raw.reshape(-1), cv2.IMREAD_COLOR)
        return decoded

    def _check_complete(self) -> None:
        count = self._info.frame_count
        if count is not None and count - self._read > max(1, count * TRUNCATION_TOLERANCE):
            raise VideoSourceError(
                f"{self._info.name} ended after {self._read} of its {count} frames: the file is truncated or damaged"
            )
