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
from typing import Any, TypeVar

from ._core import ClientCore, Loaded, repository_models, run_steps
from .endpoints import EndpointPool
from .errors import YoloClientError, from_exception
from .images import ImageInput
from .options import ClientOptions, constructor_signature
from .types import Color, Detection, EndpointHealth, ModelInfo, RepositoryModel

T = TypeVar("T")


class YoloClient:
    """Detections from a yolo-server deployment on Triton, over gRPC.

    Args:
        url_or_urls: ``host:port`` (or ``grpc://``/``grpcs://`` URL), or several for round-robin with failover.
        model: the detector's base name (the bytes ensemble; the tensor transport adds ``_tensor``).
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
        self._core = ClientCore(ClientOptions.resolve(args, kwargs, options))
        from tritonclient.grpc import InferenceServerClient

        self._conns = {url: InferenceServerClient(url, **self._core.connection_kwargs) for url in self._core.urls}
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._stop = threading.Event()
        self._checker: threading.Thread | None = None
        if self._core.watch_endpoints:
            self._checker = threading.Thread(
                target=_watch,
                args=(weakref.ref(self), self._stop, self._core.pool),
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

    @property
    def urls(self) -> tuple[str, ...]:
        return self._core.urls

    @property
    def pool(self) -> EndpointPool:
        """The endpoint pool (which endpoints are in rotation)."""
        return self._core.pool

    @property
    def options(self) -> ClientOptions:
        """The settings this client was built from."""
        return self._core.options

    # -- API ----------------------------------------------------------------------------------------------------
    def model_info(self, *, refresh: bool = False) -> ModelInfo:
        """Class names, input size, letterbox, thresholds and max batch, read once from the model config."""
        if self._core.info is None or refresh:
            config = self._call(
                lambda conn, t: conn.get_model_config(
                    self._core.infer_model, headers=self._core.headers, as_json=True, client_timeout=t
                ),
                None,
            )
            self._core.set_info(config)
        assert self._core.info is not None
        return self._core.info

    def detect(
        self,
        image: ImageInput,
        *,
        color: Color | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        timeout: float | None = None,
    ) -> list[Detection]:
        """Detections in one image, sorted by score (highest first).

        Args:
            image: a path, encoded bytes, a uint8 HxWx3 array (with ``color``) or a PIL image.
            color: channel order of an array, ``"rgb"`` or ``"bgr"`` (required for arrays).
            score_threshold: keep detections scoring at least this; may only raise the server's threshold
                (applied here, after the server's NMS, which gives the same result as applying it before).
            max_detections: keep at most this many (applied here; the server's own cap still holds).
            timeout: this call's deadline in seconds, instead of the client's.

        Raises:
            InvalidInputError: before any request, for a bad image or option.
            ServerRejectedError, ServerError, UnavailableError, DeadlineExceededError: see :mod:`yolo_client.errors`.
        """
        start = time.perf_counter()
        try:
            loaded = self._core.load(image, color)
            info = self.model_info()
            self._core.check_call(info, score_threshold, max_detections)
        except YoloClientError as err:
            self._core.record(time.perf_counter() - start, err)
            raise
        return self._infer_one(loaded, info, score_threshold, max_detections, timeout, start)

    def detect_batch(
        self,
        images: Iterable[ImageInput],
        *,
        color: Color | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        timeout: float | None = None,
    ) -> list[list[Detection]]:
        """Detections for each image, in the order given (see :meth:`detect` for the arguments).

        Every image is read and checked before the first request is sent. The first failure (in input order)
        is raised and the requests not yet started are cancelled. Client metrics time each image from the
        start of its own request. Images are read (decoded, PNG-encoded) in the same worker threads.
        """
        batch = self._core.check_batch(images)
        # reading, decoding and PNG-encoding run in the pool's threads, like the requests; the first error in
        # input order is raised
        loaded = list(self._pool().map(lambda image: self._core.load(image, color), batch))
        info = self.model_info()
        self._core.check_call(info, score_threshold, max_detections)
        futures: list[Future[list[Detection]]] = [
            self._pool().submit(self._infer_one, item, info, score_threshold, max_detections, timeout, None)
            for item in loaded
        ]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    def health(self) -> list[EndpointHealth]:
        """Liveness, readiness and model readiness of every endpoint (also updates the rotation)."""
        return [self._health(url) for url in self._core.urls]

    def models(self) -> list[RepositoryModel]:
        """The server's model repository index (from the first endpoint that answers)."""
        index = self._call(
            lambda conn, t: conn.get_model_repository_index(headers=self._core.headers, as_json=True, client_timeout=t),
            None,
        )
        return repository_models(index)

    # -- internals ----------------------------------------------------------------------------------------------
    def _infer_one(
        self,
        loaded: Loaded,
        info: ModelInfo,
        score_threshold: float | None,
        max_detections: int | None,
        timeout: float | None,
        start: float | None,
    ) -> list[Detection]:
        """One image's request; ``start`` is when its timing began (None: now, as in ``detect_batch``)."""
        start = time.perf_counter() if start is None else start
        error: BaseException | None = None
        try:
            inputs = self._core.inputs([self._core.prepare(loaded, info)])
            result = self._call(
                lambda conn, t: conn.infer(
                    self._core.infer_model, inputs, headers=self._core.headers, client_timeout=t
                ),
                timeout,
            )
            return self._core.detections(result, info, score_threshold, max_detections)
        except BaseException as err:
            error = err
            raise
        finally:
            self._core.record(time.perf_counter() - start, error)

    def _call(self, op: Callable[[Any, float], T], timeout: float | None) -> T:
        """Run ``op(connection, seconds_left)`` with the retry plan: failover, backoff, deadline."""
        plan = self._core.plan(timeout)
        while True:
            url = plan.next_endpoint()
            try:
                result = op(self._conns[url], plan.attempt_timeout())
            except Exception as exc:  # every failure is translated; none escapes raw
                err = from_exception(exc, url)
                delay = plan.on_failure(url, err)
                if delay is None:
                    raise err from None
                self._core.record_retry(err.status)
                if delay > 0:
                    time.sleep(delay)
            else:
                plan.on_success(url)
                return result

    def _health(self, url: str) -> EndpointHealth:
        return run_steps(self._core.health_steps(url), self._conns[url])

    def _probe(self, url: str) -> bool:
        return run_steps(self._core.probe_steps(url), self._conns[url])

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._core.max_in_flight, thread_name_prefix="yolo-client")
            return self._executor


YoloClient.__init__.__signature__ = constructor_signature()  # type: ignore[attr-defined]  # for help()


def _watch(ref: weakref.ref[YoloClient], stop: threading.Event, pool: EndpointPool) -> None:
    """Health-checker thread: probe due endpoints, sleep until the next is due; ends with the client."""
    while not stop.wait(min(pool.seconds_to_next_probe(), 1.0)):
        client = ref()
        if client is None:
            return
        for url in pool.due_probes():
            if stop.is_set():
                return
            pool.record_probe(url, client._probe(url))
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
