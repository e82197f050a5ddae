"""Every client call written once, as coroutines; each client supplies only its I/O.

:class:`ClientBase` holds the calls (retries and failover, model info, one image's request, health checks)
as ``async`` methods over three primitives a client defines: :meth:`ClientBase._perform` (a call on an
endpoint's connection), :meth:`ClientBase._sleep` and :meth:`ClientBase._work` (CPU work). The async client
awaits them on its event loop. The sync client makes them blocking calls, so its coroutines never suspend, and
:func:`run_blocking` runs them to the end in the caller's thread, with no event loop.

It also holds what the calls share: the options checked once at construction, the endpoint pool and retry
budget, the model info, reading images and recording metrics. What goes on the wire and what comes back (the
request tensors, the response parsing, the per-call limits) is :mod:`yolo_client.protocol`'s, with no state.
"""

from __future__ import annotations

import abc
import math
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar, cast

import numpy as np

from . import images, protocol
from .endpoints import EndpointPool, check_headers, connection_kwargs, parse_urls
from .errors import InvalidInputError, YoloClientError, from_exception
from .geometry import letterbox
from .images import ImageInput
from .metrics import ClientMetrics
from .options import ClientOptions, constructor_signature
from .protocol import Prepared
from .retry import CallPlan, RetryBudget
from .types import (
    ChannelOptions,
    Color,
    Detection,
    DetectOptions,
    EndpointHealth,
    ModelInfo,
    RepositoryModel,
    RetryPolicy,
    TlsConfig,
    Transport,
)

T = TypeVar("T")
Operation = Callable[[Any, float], Any]  # (connection, seconds left) -> the gRPC call's result, or its awaitable
Loaded = bytes | np.ndarray  # one image read and checked: encoded (bytes transport) or uint8 RGB pixels (tensor)


def run_blocking(call: Coroutine[Any, Any, T]) -> T:
    """Run ``call``, whose awaits all complete at once (the sync client's blocking primitives), to its end."""
    try:
        call.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    call.close()
    raise RuntimeError("a blocking client call was suspended: it awaited something other than its client's I/O")


class ClientBase(abc.ABC):
    """What :class:`yolo_client.YoloClient` and :class:`yolo_client.AsyncYoloClient` share."""

    def __init__(self, options: ClientOptions) -> None:
        """Check every option here, so that a bad one fails the constructor rather than the first call."""
        model, max_in_flight = options.model, options.max_in_flight
        if not isinstance(model, str) or not model:
            raise InvalidInputError(f"model must be a non-empty name, got {model!r}")
        self._options = options
        self._urls, grpcs = parse_urls(options.url_or_urls)
        self._timeout = check_timeout(options.timeout)
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise InvalidInputError(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
        self._max_in_flight = max_in_flight
        self._transport: Transport = options.transport
        self._infer_model = protocol.model_for(model, options.transport)
        tls = options.tls if options.tls is not None else (TlsConfig() if grpcs else None)
        self._connection_kwargs = connection_kwargs(options.channel or ChannelOptions(), tls)
        self._headers = check_headers(options.headers)
        self._policy = options.retries if options.retries is not None else RetryPolicy()
        self._budget = RetryBudget(self._policy)
        self._endpoints = EndpointPool(self._urls, options.health_check)
        metrics = options.metrics
        self._metrics: ClientMetrics | None = ClientMetrics.shared() if metrics is True else (metrics or None)
        self._info: ModelInfo | None = options.model_info

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = vars(cls).get("__init__")
        if init is not None:  # it takes (*args, options=None, **kwargs): help() shows ClientOptions' fields instead
            init.__signature__ = constructor_signature()

    @property
    def urls(self) -> tuple[str, ...]:
        return self._urls

    @property
    def pool(self) -> EndpointPool:
        """The endpoint pool (which endpoints are in rotation)."""
        return self._endpoints

    @property
    def options(self) -> ClientOptions:
        """The settings this client was built from."""
        return self._options

    @property
    def _watch_endpoints(self) -> bool:
        """Whether a background health checker runs (only useful with more than one endpoint)."""
        return len(self._urls) > 1

    # -- the client's I/O ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def _perform(self, url: str, call: Callable[[Any], Any]) -> Any:
        """``call(connection)`` on ``url``'s connection."""

    @abc.abstractmethod
    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a backoff between attempts)."""

    @abc.abstractmethod
    async def _work(self, fn: Callable[[], T]) -> T:
        """``fn()``: CPU work (decoding, encoding, letterboxing), which the async client keeps off its loop."""

    # -- the calls ----------------------------------------------------------------------------------------------
    async def _call(self, op: Operation, timeout: float | None) -> Any:
        """Run ``op(connection, seconds_left)`` with the retry plan: failover, backoff, deadline."""
        deadline = self._timeout if timeout is None else check_timeout(timeout)
        plan = CallPlan(self._policy, self._budget, self._endpoints, deadline)
        while True:
            url = plan.next_endpoint()
            try:
                result = await self._perform(url, lambda conn: op(conn, plan.attempt_timeout()))
            except Exception as exc:  # every failure is translated; none escapes raw
                err = from_exception(exc, url)
                delay = plan.on_failure(url, err)
                if delay is None:
                    raise err from None
                if self._metrics is not None:
                    self._metrics.retry(self._infer_model, err.status)
                if delay > 0:
                    await self._sleep(delay)
            else:
                plan.on_success(url)
                return result

    async def _fetch_model_info(self, refresh: bool) -> ModelInfo:
        info = self._info
        if info is None or refresh:
            info = self._info = protocol.parse_model_info(self._infer_model, await self._fetch_model_config())
        return info

    async def _fetch_model_config(self) -> dict[str, Any]:
        model, headers = self._infer_model, self._headers
        config: Mapping[str, Any] = await self._call(
            lambda conn, t: conn.get_model_config(model, headers=headers, as_json=True, client_timeout=t), None
        )
        return dict(config.get("config", config))

    async def _fetch_models(self) -> list[RepositoryModel]:
        headers = self._headers
        index: Mapping[str, Any] = await self._call(
            lambda conn, t: conn.get_model_repository_index(headers=headers, as_json=True, client_timeout=t), None
        )
        return protocol.repository_models(index)

    async def _load(self, image: ImageInput, color: Color | None) -> Loaded:
        """Read and check one input, before any request: encoded bytes (bytes transport) or RGB pixels (tensor).

        Decoding and PNG encoding are CPU work, done through :meth:`_work`; encoded bytes and paths need neither
        and are read in place.
        """
        if isinstance(image, (list, tuple)):
            raise InvalidInputError("detect() takes one image; use detect_batch() for several")
        images.check_color(color)
        if self._transport == "tensor":
            return await self._work(lambda: images.to_rgb(image, color=color))
        if not isinstance(image, (bytes, bytearray, memoryview, str, os.PathLike)):
            return await self._work(lambda: images.to_bytes(image, color=color))
        return images.to_bytes(image, color=color)

    async def _checked_info(self, options: DetectOptions) -> ModelInfo:
        """The model's info, with ``options`` checked against it (before any inference request)."""
        info = await self._fetch_model_info(False)
        protocol.check_limits(info, options.get("score_threshold"), options.get("max_detections"))
        return info

    async def _detect_one(self, image: ImageInput, options: DetectOptions) -> list[Detection]:
        check_options(options)
        start = time.perf_counter()
        try:
            loaded = await self._load(image, options.get("color"))
            info = await self._checked_info(options)
        except YoloClientError as err:
            self._record(time.perf_counter() - start, err)
            raise
        return await self._infer_one(loaded, info, options, start)

    async def _infer_one(
        self, loaded: Loaded, info: ModelInfo, options: DetectOptions, start: float | None
    ) -> list[Detection]:
        """One image's request; ``start`` is when its timing began (None: now, as in ``detect_batch``)."""
        start = time.perf_counter() if start is None else start
        error: BaseException | None = None
        model, headers = self._infer_model, self._headers
        try:
            prepared: Prepared = (
                loaded
                if isinstance(loaded, bytes)
                else await self._work(lambda: letterbox(loaded, info.input_width, info.input_height, info.letterbox))
            )
            inputs = protocol.image_inputs(prepared)
            result = await self._call(
                lambda conn, t: conn.infer(model, inputs, headers=headers, client_timeout=t), options.get("timeout")
            )
            found = protocol.parse_result(result, info)[0]
            return protocol.apply_limits(found, options.get("score_threshold"), options.get("max_detections"))
        except BaseException as err:
            error = err
            raise
        finally:
            self._record(time.perf_counter() - start, error)

    def _record(self, seconds: float, error: BaseException | None) -> None:
        """One image's call in the client metrics, if the client keeps any (failed calls included)."""
        if self._metrics is not None:
            self._metrics.observe(self._infer_model, self._transport, seconds, error)

    # -- endpoint checks ----------------------------------------------------------------------------------------
    async def _check_health(self, url: str) -> EndpointHealth:
        """Liveness, readiness and model readiness of ``url``, recorded in the pool (down on any failure)."""
        headers, t = self._headers, self._timeout
        try:
            live = await self._perform(url, lambda conn: conn.is_server_live(headers=headers, client_timeout=t))
            ready = await self._perform(url, lambda conn: conn.is_server_ready(headers=headers, client_timeout=t))
            model_ready = await self._model_ready(url, t)
        except Exception as exc:
            self._endpoints.mark_down(url)
            return EndpointHealth(url, False, False, False, str(from_exception(exc, url)))
        self._endpoints.record_probe(url, bool(ready) and model_ready)
        return EndpointHealth(url, bool(live), bool(ready), model_ready)

    async def _probe(self, url: str) -> bool:
        """The health checker's probe: server and model ready within the probe timeout (False on any failure)."""
        headers, t = self._headers, self._endpoints.options.probe_timeout
        try:
            if not await self._perform(url, lambda conn: conn.is_server_ready(headers=headers, client_timeout=t)):
                return False
            return await self._model_ready(url, t)
        except Exception:
            return False

    async def _model_ready(self, url: str, timeout: float) -> bool:
        headers, model = self._headers, self._infer_model
        return bool(
            await self._perform(url, lambda conn: conn.is_model_ready(model, headers=headers, client_timeout=timeout))
        )


def check_timeout(timeout: Any) -> float:
    """A deadline in seconds, the client's or a call's (a bool is not one, though Python counts it an int)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def check_options(options: DetectOptions) -> None:
    """Unknown keywords raise ``TypeError``, as in any call (``DetectOptions`` types them, nothing checks)."""
    unknown = sorted(set(options) - DetectOptions.__optional_keys__)
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")


def check_batch(items: Iterable[ImageInput], options: DetectOptions) -> list[ImageInput]:
    """``detect_batch``'s images as a list, with its keywords checked (one image is :meth:`detect`'s)."""
    check_options(options)
    if isinstance(items, (str, bytes, bytearray, memoryview, np.ndarray)) or images._is_pil(items):
        raise InvalidInputError("detect_batch() takes a list of images; use detect() for one")
    batch = list(items)
    if not batch:
        raise InvalidInputError("detect_batch() needs at least one image")
    return batch
