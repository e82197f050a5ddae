"""``yolo-client detect VIDEO_OR_URL``: a video, a stream URL or a camera index through ``detect_video``.

Examples::

    yolo-client detect street.mp4 --json > street.jsonl          # one JSON line per frame
    yolo-client detect rtsp://camera/stream --draw out.mp4         # annotated video at the source's frame rate
    yolo-client detect 0 --no-live                                 # camera 0, waiting for every frame
    yolo-client detect street.mp4 --track --draw out.mp4           # each box labelled with its track id

An argument is a video when it is a URL, a camera index (digits), has a video extension, or is a file that does
not start like an image. A progress line (frames/s, dropped frames, latency) goes to stderr when it is a terminal,
and a summary line at the end in any case.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .errors import InvalidInputError
from .images import image_format
from .sources import VideoInput, is_url
from .video import VideoInfo

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .ts .m2ts .mts .flv .wmv .3gp .ogv .mjpeg .mjpg .h264 .h265 .hevc .y4m"
    .split()
)  # fmt: skip
# what --draw writes, by extension (codecs in OpenCV's own FFmpeg build)
WRITERS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
DEFAULT_DRAW_FPS = 25.0  # a source that does not say its frame rate
PROGRESS_INTERVAL_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``detect``'s video options (each default is :class:`~yolo_client.video.VideoOptions`')."""
    video = parser.add_argument_group("video (an input that is a video, a URL or a camera index)")
    video.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read at the source's pace, dropping frames the server cannot take (default: cameras and URLs)",
    )
    video.add_argument("--drop", choices=("oldest", "newest"), help="which frames a live source loses")
    video.add_argument("--max-in-flight", type=int, help="requests in flight (default 16)")
    video.add_argument("--jpeg-quality", type=int, help="JPEG quality of the frames sent (default 90)")
    video.add_argument("--shrink", action="store_true", default=None, help="downscale frames to the model's input")
    video.add_argument(
        "--track",
        action="store_true",
        default=None,
        help="give each detection a track id (ByteTrack; pip install 'yolo-client[track]')",
    )
    video.add_argument("--open-timeout", type=float, help="seconds to open a URL (default 10)")


def is_video(arg: str) -> bool:
    """Whether a ``detect`` argument names a video rather than an image."""
    if arg.isdigit() and not os.path.exists(arg):
        return True
    if is_url(arg) or Path(arg).suffix.lower() in VIDEO_EXTENSIONS:
        return True
    try:
        with open(arg, "rb") as file:
            head = file.read(16)
    except OSError:
        return False  # the image path reports it
    return bool(head) and image_format(head) is None


def run(args: argparse.Namespace, client: Any, arg: str) -> int:
    """Detect every frame of ``arg``; JSON lines or text on stdout, ``--draw`` to a video file."""
    source: VideoInput = int(arg) if arg.isdigit() and not os.path.exists(arg) else arg
    if args.draw and Path(args.draw).suffix.lower() not in WRITERS:
        raise SystemExit(f"yolo-client: error: --draw for a video needs one of {', '.join(sorted(WRITERS))}")
    names = ("live", "drop", "max_in_flight", "jpeg_quality", "shrink", "track", "open_timeout", "score_threshold")
    options = {name: getattr(args, name) for name in (*names, "max_detections") if getattr(args, name) is not None}
    writer = None
    progress = Progress(sys.stderr)
    try:
        with client.detect_video(source, keep_frames=bool(args.draw), **options) as stream:
            progress.name = stream.info.name
            for result in stream:
                if args.json:
                    print(json.dumps(result.to_dict()), flush=True)
                else:
                    print(
                        f"frame {result.index} at {result.timestamp:.3f} s: {len(result.detections)} detections"
                        f" ({result.latency * 1000:.0f} ms, {result.dropped_before} dropped before)"
                    )
                    for d in result.detections:
                        track = "" if d.track_id is None else f"#{d.track_id} "
                        print(f"  {track}{d.label:<16} {d.score:.3f}  " + " ".join(f"{v:.1f}" for v in d.box))
                if args.draw:
                    from .draw import draw_detections

                    writer = writer or _writer(args.draw, stream.info)
                    writer.write(draw_detections(result.frame, result.detections))
                progress.update(result.dropped_before, result.latency)
    finally:
        if writer is not None:
            writer.release()
        progress.done()
    return 0


def _writer(path: str, info: VideoInfo) -> Any:
    import cv2

    fourcc = cv2.VideoWriter.fourcc(*WRITERS[Path(path).suffix.lower()])
    writer = cv2.VideoWriter(path, fourcc, info.fps or DEFAULT_DRAW_FPS, (info.width, info.height))
    if not writer.isOpened():
        raise InvalidInputError(f"cannot write {path!r} (unwritable directory, or no encoder for it)")
    return writer


class Progress:
    """Frames, frames/s, drops and latency: a carriage-return line on a terminal, and a summary at the end."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.tty = out, out.isatty()
        self.name, self.frames, self.dropped, self.latency = "video", 0, 0, 0.0
        self.started = self.shown = time.perf_counter()

    def update(self, dropped: int, latency: float) -> None:
        self.frames, self.dropped, self.latency = self.frames + 1, self.dropped + dropped, latency
        now = time.perf_counter()
        if self.tty and now - self.shown >= PROGRESS_INTERVAL_S:
            self.shown = now
            print(f"\r{self._line(now)}   ", end="", file=self.out, flush=True)

    def done(self) -> None:
        if self.tty and self.frames:
            print("\r", end="", file=self.out)
        print(f"{self.name}: {self._line(time.perf_counter())}", file=self.out, flush=True)

    def _line(self, now: float) -> str:
        seconds = max(now - self.started, 1e-9)
        return (
            f"{self.frames} frames in {seconds:.1f} s ({self.frames / seconds:.1f} frames/s), "
            f"{self.dropped} dropped, latency {self.latency * 1000:.0f} ms"
        )
