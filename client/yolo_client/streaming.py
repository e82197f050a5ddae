"""The ``detect_video`` pipeline, once for both clients: a reader thread, a frame queue, a window of requests.

    source --reader thread--> FrameQueue --step()--> window of <= max_in_flight jobs --in order--> FrameResult

The reader only reads (a live source must be read at its own pace, and the frames it drops cost nothing). Each
job encodes its frame (JPEG, or the RGB array for the tensor transport) and sends it through the client's one
request path (``ClientBase._infer_one``: retries, failover, metrics), so encoding runs in parallel across the
requests in flight. A job's slot is freed when its result is handed over, not when its request returns: finished
results never pile up behind a slow consumer or a slow first request.

:class:`Pipeline` holds the state and the non-blocking :meth:`Pipeline.step`; the sync driver
(:class:`VideoStream`: jobs in a thread pool, a ``threading.Event``) and the async one (:class:`AsyncVideoStream`:
jobs as tasks, an ``asyncio.Event``) only wait for the wake-up that a new frame or a finished job sends.

Example:
    >>> with client.detect_video("street.mp4", keep_frames=True) as stream:
    ...     print(stream.info.fps)
    ...     for result in stream:                      # breaking out stops the reader and the requests
    ...         cv2.imshow("video", draw_detections(result.frame, result.detections))
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from .errors import VideoSourceError
from .sources import FrameData, FrameSource, VideoInput, is_frame_source, open_source
from .tracking import ByteTracker
from .types import Detection, ModelInfo
from .video import FrameEncoder, FrameQueue, FrameResult, JpegFrame, VideoInfo, scale_boxes, split_options

if TYPE_CHECKING:  # pragma: no cover
    from ._base import ClientBase

READ_AHEAD = 4  # frames a file's reader decodes ahead of the requests
LIVE_BUFFER = 2  # frames a live source may have waiting for a slot (each adds at most one frame of latency)
WAKE_POLL_S = 1.0  # the drivers' wait is woken by every change; this only bounds it


@dataclass(frozen=True)
class Frame:
    """One frame read: its index in the source, its timestamp, the BGR pixels (or the source's JPEG) and when it was
    read."""

    index: int
    timestamp: float
    image: FrameData
    read_at: float


class Job(Protocol):
    """A frame's request: a ``concurrent.futures.Future`` (sync) or an ``asyncio.Task`` (async)."""

    def done(self) -> bool: ...
    def result(self) -> list[Detection]: ...
    def cancel(self) -> bool: ...
    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...


@dataclass(frozen=True)
class VideoPlan:
    """A stream ready to start: its open source, its settings and the coroutine that detects one frame."""

    source: FrameSource
    live: bool
    drop: str
    max_in_flight: int
    keep_frames: bool
    detect: Callable[[Frame], Coroutine[Any, Any, list[Detection]]]
    tracker: ByteTracker | None = None
    pixels: bool = False  # frames kept, shrunk or sent as tensors: the reader decodes a source's JpegFrames


async def prepare(client: ClientBase, source: VideoInput | FrameSource, options: Mapping[str, Any]) -> VideoPlan:
    """Check the options, open the source and read its first frame, then read the model's info: every error of a
    bad source or option comes here, before any inference request."""
    from ._base import check_options

    video, detect_options = split_options(options)
    check_options(detect_options)
    pixels = client._transport != "bytes" or video.shrink or video.keep_frames  # else JPEGs are sent as they are
    if is_frame_source(source):
        frames: FrameSource = source
    else:
        given = cast(VideoInput, source)
        frames = await client._work(lambda: open_source(given, video, packets=not pixels))
    try:
        tracker = ByteTracker(frames.info.fps) if video.track else None
        info: ModelInfo = await client._checked_info(detect_options)
    except BaseException:
        frames.close()
        raise
    cover = (info.input_width, info.input_height) if video.shrink else None
    encoder = FrameEncoder(client._transport, video.jpeg_quality, cover)

    async def detect(frame: Frame) -> list[Detection]:
        loaded, back = await client._work(lambda: encoder.encode(frame.image))
        found = await client._infer_one(loaded, info, detect_options, None)
        if back is None:
            return found
        height, width = cast(np.ndarray, frame.image).shape[:2]  # shrunk: the reader gave pixels
        return scale_boxes(found, back, width, height)

    live = frames.info.live if video.live is None else video.live
    in_flight = video.max_in_flight or client._max_in_flight
    return VideoPlan(frames, live, video.drop, in_flight, video.keep_frames, detect, tracker, pixels)


class Pipeline:
    """One stream's state: the reader thread, the frame queue and the window of jobs in frame order."""

    def __init__(self, plan: VideoPlan, submit: Callable[[Frame], Job]) -> None:
        self.plan, self._submit = plan, submit
        self._queue: FrameQueue[Frame] = (
            FrameQueue(LIVE_BUFFER, plan.drop) if plan.live else FrameQueue(READ_AHEAD, "block")  # type: ignore[arg-type]
        )
        self._window: deque[tuple[Frame, Job]] = deque()
        self._stop = threading.Event()
        self._first_sent = threading.Event()  # a live reader drops nothing before the first frame is sent
        self._reader = threading.Thread(target=self._read, name="yolo-client-video", daemon=True)
        self._next_index = 0
        self._notify: Callable[[], None] = lambda: None

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    def start(self, notify: Callable[[], None]) -> None:
        """Start reading; ``notify`` (any thread) is called whenever :meth:`step` may have something new."""
        self._notify = self._queue.notify = notify
        self._reader.start()

    def step(self) -> FrameResult | bool:
        """Send the frames waiting (up to the window), then the first frame's result if done; else True to wait,
        False at the end. Raises the first failed request's error, or the source's once every result is out."""
        while len(self._window) < self.plan.max_in_flight:
            frame = self._queue.take()
            if frame is None:
                break
            job = self._submit(frame)
            self._first_sent.set()
            job.add_done_callback(lambda _: self._notify())
            self._window.append((frame, job))
        if self._window and self._window[0][1].done():
            frame, job = self._window.popleft()
            found = job.result()
            dropped, self._next_index = frame.index - self._next_index, frame.index + 1
            if self.plan.tracker is not None:  # here, in frame order
                found = self.plan.tracker.update(found, dropped)
            kept = cast(np.ndarray, frame.image) if self.plan.keep_frames else None  # kept: the reader gave pixels
            return FrameResult(frame.index, frame.timestamp, found, dropped, time.perf_counter() - frame.read_at, kept)
        if self._window or not self._queue.ended:
            return True
        if self._queue.error is not None:
            raise self._queue.error
        return False

    def stop(self) -> list[Job]:
        """Stop reading and cancel the jobs not yet running; returns every job to wait for."""
        self._stop.set()
        self._first_sent.set()
        self._queue.cancel()
        jobs = [job for _, job in self._window]
        self._window.clear()
        for job in jobs:
            job.cancel()
        if self._reader.ident is None:  # never started: the source is still ours to close
            self.plan.source.close()
        return jobs

    def join(self) -> None:
        """Wait for the reader (a read in progress ends within the source's read timeout)."""
        if self._reader.ident is not None:
            self._reader.join()

    def _read(self) -> None:
        source, error, index = self.plan.source, None, 0
        try:
            while not self._stop.is_set():
                item = source.read()
                if item is None:
                    break
                image, timestamp = item
                if self.plan.pixels and isinstance(image, JpegFrame):
                    image = image.pixels()
                if not self._queue.put(Frame(index, timestamp, image, time.perf_counter())):
                    break
                if index == 0:  # a file read as live would otherwise outrun the first step and drop its first frame
                    self._first_sent.wait()
                index += 1
        except Exception as exc:  # the stream's end: raised to the consumer after the results before it
            error = exc if isinstance(exc, VideoSourceError) else VideoSourceError(f"{source.info.name}: {exc!r}")
        finally:
            source.close()
            self._queue.finish(error)


class VideoStream:
    """``YoloClient.detect_video``'s iterator of :class:`FrameResult`, in frame order (a context manager too)."""

    def __init__(self, plan: VideoPlan) -> None:
        from ._base import run_blocking

        self.info: VideoInfo = plan.source.info
        executor = ThreadPoolExecutor(plan.max_in_flight, thread_name_prefix="yolo-client-video")
        # the coroutine is made in the worker: one cancelled before it runs is then never made, never left unawaited
        pipeline = Pipeline(plan, lambda frame: executor.submit(lambda: run_blocking(plan.detect(frame))))
        self._pipeline, self._results = pipeline, _run(pipeline, executor)

    def __iter__(self) -> VideoStream:
        return self

    @property
    def dropped(self) -> int:
        """Frames dropped so far (with ``drop="newest"``, also those after the last result, which no result counts)."""
        return self._pipeline.dropped

    def __next__(self) -> FrameResult:
        return next(self._results)

    def close(self) -> None:
        """Stop reading and wait for the requests in flight (idempotent)."""
        self._results.close()
        self._pipeline.stop()

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run(pipeline: Pipeline, executor: ThreadPoolExecutor) -> Generator[FrameResult, None, None]:
    wake = threading.Event()
    pipeline.start(wake.set)
    try:
        while True:
            wake.clear()  # before step(): a change while it runs sets it again
            out = pipeline.step()
            if out is False:
                return
            if out is True:
                wake.wait(WAKE_POLL_S)
            else:
                yield out
    finally:
        pipeline.stop()
        executor.shutdown(wait=True, cancel_futures=True)
        pipeline.join()


class AsyncVideoStream:
    """``AsyncYoloClient.detect_video``'s async iterator: the source is opened (in a worker thread) on entering
    ``async with`` or on the first ``__anext__``, so its errors come from there."""

    def __init__(self, opener: Callable[[], Awaitable[VideoPlan]]) -> None:
        self._opener = opener
        self._results: AsyncGenerator[FrameResult, None] | None = None
        self._pipeline: Pipeline | None = None
        self.info: VideoInfo | None = None

    async def open(self) -> None:
        if self._results is None:
            plan = await self._opener()
            self.info = plan.source.info
            self._results = _run_async(plan, self._started)

    def _started(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    @property
    def dropped(self) -> int:
        """See :attr:`VideoStream.dropped`."""
        return 0 if self._pipeline is None else self._pipeline.dropped

    def __aiter__(self) -> AsyncVideoStream:
        return self

    async def __anext__(self) -> FrameResult:
        await self.open()
        assert self._results is not None
        return await self._results.__anext__()

    async def aclose(self) -> None:
        """Stop reading and cancel the requests in flight (idempotent)."""
        if self._results is not None:
            await self._results.aclose()

    async def __aenter__(self) -> AsyncVideoStream:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _run_async(plan: VideoPlan, started: Callable[[Pipeline], None]) -> AsyncGenerator[FrameResult, None]:
    loop, wake = asyncio.get_running_loop(), asyncio.Event()

    def notify() -> None:
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop has closed: nobody is waiting
            pass

    pipeline = Pipeline(plan, lambda frame: loop.create_task(plan.detect(frame)))
    started(pipeline)
    pipeline.start(notify)
    try:
        while True:
            wake.clear()
            out = pipeline.step()
            if out is False:
                return
            if out is True:
                try:  # not wait_for: Python 3.11's can swallow a cancellation that races the wake-up
                    async with asyncio.timeout(WAKE_POLL_S):
                        await wake.wait()
                except TimeoutError:
                    pass
            else:
                yield out
    finally:
        tasks = cast("list[asyncio.Task[list[Detection]]]", pipeline.stop())
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(pipeline.join)
