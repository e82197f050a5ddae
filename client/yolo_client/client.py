"""Synchronous client over ``tritonclient.grpc``.

Example:
    >>> from yolo_client import YoloClient
    >>> with YoloClient("localhost:8001", model="yolov4_tiny") as client:
    ...     for det in client.detect("dog.jpg"):
    ...         print(det.label, round(det.score, 2), det.box)

``detect_batch`` sends one request per image, up to ``max_in_flight`` at a time from a thread pool, and lets
the server's dynamic batcher group them. Compared with one request carrying the whole batch, this keeps
retries, failover and errors per image (one bad image fails only itself), spreads the images over every
endpoint, and never needs a message larger than one image; ``bench/bench_client.py`` measures both. A pool of
threads running the ordinary blocking call was chosen over ``async_infer`` callbacks so that every image goes
through the one retry path; gRPC releases the GIL while a call waits.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar, Unpack

from ._base import ClientBase, Loaded, check_batch, run_blocking
from .endpoints import EndpointPool
from .images import ImageInput
from .options import ClientOptions
from .sources import FrameSource, VideoInput
from .streaming import VideoStream, prepare
from .types import Detection, DetectOptions, EndpointHealth, ModelInfo, RepositoryModel
from .video import VideoDetectOptions

T = TypeVar("T")


class YoloClient(ClientBase):
    """Detections from a yolo-server deployment on Triton, over gRPC.

    Args:
        url_or_urls: ``host:port`` (or ``grpc://``/``grpcs://`` URL), or several for round-robin with failover.
        model: the detector's base name, its image entry point (the tensor transport adds ``_tensor``).
        transport: ``"bytes"`` sends encoded images (the server decodes); ``"tensor"`` decodes and letterboxes
            here and sends float32 ``[3, H, W]`` (more bytes on the wire, less server CPU).
        timeout: deadline in seconds of each call, retries included (per image in ``detect_batch``).
        retries: retry policy (default :class:`RetryPolicy`; ``RetryPolicy.disabled()`` for none).
        tls: TLS settings (``grpcs://`` URLs without it use the system roots).
        headers: gRPC metadata sent with every call, e.g. ``{"authorization": "Bearer ..."}``.
        metrics: True to record Prometheus metrics in the default registry, or a :class:`ClientMetrics`.
        channel: gRPC channel settings (message sizes, keepalive, reconnect backoff).
        health_check: how often endpoints are probed when there are several.
        max_in_flight: requests ``detect_batch`` keeps in flight (and images it reads at a time).
        model_info: the model's :class:`ModelInfo` if known, instead of reading it from the server.
        options: a :class:`ClientOptions` holding all of the above; the other arguments override its fields.
    """

    def __init__(self, *args: Any, options: ClientOptions | None = None, **kwargs: Any) -> None:
        super().__init__(ClientOptions.resolve(args, kwargs, options))
        from tritonclient.grpc import InferenceServerClient

        self._conns = {url: InferenceServerClient(url, **self._connection_kwargs) for url in self.urls}
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._stop = threading.Event()
        self._checker: threading.Thread | None = None
        if self._watch_endpoints:
            self._checker = threading.Thread(
                target=_watch,
                args=(weakref.ref(self), self._stop, self.pool),
                name="yolo-client-health",
                daemon=True,
            )
            self._checker.start()

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def __enter__(self) -> YoloClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the health checker and the thread pool, close the channels (idempotent)."""
        self._stop.set()
        if self._checker is not None and self._checker is not threading.current_thread():
            self._checker.join(timeout=5)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        for conn in self._conns.values():
            _close_once(conn)

    # -- API ----------------------------------------------------------------------------------------------------
    def model_info(self, *, refresh: bool = False) -> ModelInfo:
        """Class names, input size, letterbox, thresholds and max batch, read once from the model config."""
        return run_blocking(self._fetch_model_info(refresh))

    def model_config(self) -> dict[str, Any]:
        """The served model's Triton config as JSON: inputs, outputs, batching, instances, parameters."""
        return run_blocking(self._fetch_model_config())

    def detect(self, image: ImageInput, **options: Unpack[DetectOptions]) -> list[Detection]:
        """Detections in one image, sorted by score (highest first).

        Args:
            image: a path, encoded bytes, a uint8 HxWx3 array (with ``color``) or a PIL image.
            options: ``color``, ``score_threshold``, ``max_detections``, ``timeout``: see :class:`DetectOptions`.

        Raises:
            InvalidInputError: before any request, for a bad image or option.
            ServerRejectedError, ServerError, UnavailableError, DeadlineExceededError: see :mod:`yolo_client.errors`.
        """
        return run_blocking(self._detect_one(image, options))

    def detect_batch(self, images: Iterable[ImageInput], **options: Unpack[DetectOptions]) -> list[list[Detection]]:
        """Detections for each image, in the order given (see :meth:`detect` for the arguments).

        Every image is read and checked before the first request is sent. The first failure (in input order)
        is raised and the requests not yet started are cancelled. Client metrics time each image from the
        start of its own request. Images are read (decoded, PNG-encoded) in the same worker threads.
        """
        batch = check_batch(images, options)
        # reading, decoding and PNG-encoding run in the pool's threads, like the requests; the first error in
        # input order is raised
        loaded = list(self._pool().map(lambda image: run_blocking(self._load(image, options.get("color"))), batch))
        info = run_blocking(self._checked_info(options))
        futures: list[Future[list[Detection]]] = [
            self._pool().submit(self._infer_blocking, item, info, options) for item in loaded
        ]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    def detect_video(self, source: VideoInput | FrameSource, **options: Unpack[VideoDetectOptions]) -> VideoStream:
        """Detections in every frame of a video, as an iterator of :class:`~yolo_client.video.FrameResult` in frame
        order (also a context manager; ``.info`` says the source's fps, size and frame count).

        Reading, encoding and inference overlap: a reader thread reads frames, and up to ``max_in_flight`` frames
        are encoded and in flight at once. A file has every frame detected; a live source (camera, network URL, or
        ``live=True``) drops frames when the server falls behind, and each result counts those before it.

        Args:
            source: a file path, a camera index, a URL FFmpeg opens (``rtsp://``, ``http(s)://``, ``udp://``, ...),
                or a :class:`~yolo_client.sources.FrameSource`.
            options: ``score_threshold``, ``max_detections``, ``timeout`` (per frame) as in :meth:`detect`, and
                ``live``, ``drop``, ``max_in_flight``, ``jpeg_quality``, ``shrink``, ``keep_frames``, ``track``,
                ``open_timeout``, ``read_timeout``: see :class:`~yolo_client.video.VideoOptions`.

        Raises:
            VideoSourceError: here, before any request, for a source that cannot be opened or gives no frame;
                from the iterator, once every frame read has its result, for a file that breaks off (truncated).
            InvalidInputError: here, for a bad option.
            ServerRejectedError, ServerError, UnavailableError, DeadlineExceededError: from the iterator, for the
                first frame whose request failed (every frame before it has been yielded); the stream ends there.

        A live stream that goes silent for ``read_timeout`` seconds ends cleanly. Breaking out of the loop,
        ``close()`` or leaving the ``with`` block stops the reader and waits for the requests in flight.
        """
        return VideoStream(run_blocking(prepare(self, source, options)))

    def health(self) -> list[EndpointHealth]:
        """Liveness, readiness and model readiness of every endpoint (also updates the rotation)."""
        return [run_blocking(self._check_health(url)) for url in self.urls]

    def models(self) -> list[RepositoryModel]:
        """The server's model repository index (from the first endpoint that answers).

        The repository API is an admin API of ``yolo-server serve``: pass its key in ``headers``
        (``{GRPC_ADMIN_KEY_HEADER: key}``, :mod:`yolo_client.contract`), else the server refuses with
        :class:`~yolo_client.errors.ServerRejectedError`.
        """
        return run_blocking(self._fetch_models())

    # -- I/O: blocking calls, so that the coroutines of ClientBase never suspend ----------------------------------
    async def _perform(self, url: str, call: Callable[[Any], Any]) -> Any:
        return call(self._conns[url])

    async def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def _work(self, fn: Callable[[], T]) -> T:
        return fn()

    def _infer_blocking(self, loaded: Loaded, info: ModelInfo, options: DetectOptions) -> list[Detection]:
        return run_blocking(self._infer_one(loaded, info, options, None))

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._max_in_flight, thread_name_prefix="yolo-client")
            return self._executor


def _watch(ref: weakref.ref[YoloClient], stop: threading.Event, pool: EndpointPool) -> None:
    """Health-checker thread: probe due endpoints, sleep until the next is due; ends with the client."""
    while not stop.wait(min(pool.seconds_to_next_probe(), 1.0)):
        client = ref()
        if client is None:
            return
        for url in pool.due_probes():
            if stop.is_set():
                return
            pool.record_probe(url, run_blocking(client._probe(url)))
        del client


def _close_once(conn: Any) -> None:
    """Close a ``tritonclient.grpc.InferenceServerClient`` exactly once.

    Its ``close`` is not idempotent and its ``__del__`` calls it again: a gRPC channel closed twice under gevent
    (locust) can block the interpreter's exit for good. The instance attribute shadows the method, ``__del__``
    included.
    """
    if getattr(conn, "_yolo_closed", False):
        return
    conn.close()
    conn._yolo_closed = True
    conn.close = lambda: None
