"""Every client call written once, as coroutines; each client supplies only its I/O.

:class:`ClientBase` holds the calls (retries and failover, model info, one image's request, health checks)
as ``async`` methods over three primitives a client defines: :meth:`ClientBase._perform` (a call on an
endpoint's connection), :meth:`ClientBase._sleep` and :meth:`ClientBase._work` (CPU work). The async client
awaits them on its event loop. The sync client makes them blocking calls, so its coroutines never suspend, and
:func:`run_blocking` runs them to the end in the caller's thread, with no event loop.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

from ._core import ClientCore, Loaded, Prepared, repository_models
from .endpoints import EndpointPool
from .errors import YoloClientError, from_exception
from .images import ImageInput
from .options import ClientOptions, constructor_signature
from .types import Color, Detection, DetectOptions, EndpointHealth, ModelInfo, RepositoryModel

T = TypeVar("T")
Operation = Callable[[Any, float], Any]  # (connection, seconds left) -> the gRPC call's result, or its awaitable


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
        self._core = ClientCore(options)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = vars(cls).get("__init__")
        if init is not None:  # it takes (*args, options=None, **kwargs): help() shows ClientOptions' fields instead
            init.__signature__ = constructor_signature()

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
        plan = self._core.plan(timeout)
        while True:
            url = plan.next_endpoint()
            try:
                result = await self._perform(url, lambda conn: op(conn, plan.attempt_timeout()))
            except Exception as exc:  # every failure is translated; none escapes raw
                err = from_exception(exc, url)
                delay = plan.on_failure(url, err)
                if delay is None:
                    raise err from None
                self._core.record_retry(err.status)
                if delay > 0:
                    await self._sleep(delay)
            else:
                plan.on_success(url)
                return result

    async def _fetch_model_info(self, refresh: bool) -> ModelInfo:
        info = self._core.info
        if info is None or refresh:
            info = self._core.set_info(await self._fetch_model_config())
        return info

    async def _fetch_model_config(self) -> dict[str, Any]:
        core = self._core
        config: Mapping[str, Any] = await self._call(
            lambda conn, t: conn.get_model_config(
                core.infer_model, headers=core.headers, as_json=True, client_timeout=t
            ),
            None,
        )
        return dict(config.get("config", config))

    async def _fetch_models(self) -> list[RepositoryModel]:
        headers = self._core.headers
        index: Mapping[str, Any] = await self._call(
            lambda conn, t: conn.get_model_repository_index(headers=headers, as_json=True, client_timeout=t), None
        )
        return repository_models(index)

    async def _load(self, image: ImageInput, color: Color | None) -> Loaded:
        if self._core.blocking_load(image):
            return await self._work(lambda: self._core.load(image, color))
        return self._core.load(image, color)

    async def _checked_info(self, options: DetectOptions) -> ModelInfo:
        """The model's info, with ``options`` checked against it (before any inference request)."""
        info = await self._fetch_model_info(False)
        self._core.check_call(info, options)
        return info

    async def _detect_one(self, image: ImageInput, options: DetectOptions) -> list[Detection]:
        self._core.check_options(options)
        start = time.perf_counter()
        try:
            loaded = await self._load(image, options.get("color"))
            info = await self._checked_info(options)
        except YoloClientError as err:
            self._core.record(time.perf_counter() - start, err)
            raise
        return await self._infer_one(loaded, info, options, start)

    async def _infer_one(
        self, loaded: Loaded, info: ModelInfo, options: DetectOptions, start: float | None
    ) -> list[Detection]:
        """One image's request; ``start`` is when its timing began (None: now, as in ``detect_batch``)."""
        start = time.perf_counter() if start is None else start
        error: BaseException | None = None
        core = self._core
        try:
            prepared: Prepared = (
                loaded if isinstance(loaded, bytes) else await self._work(lambda: core.prepare(loaded, info))
            )
            inputs = core.inputs(prepared)
            result = await self._call(
                lambda conn, t: conn.infer(core.infer_model, inputs, headers=core.headers, client_timeout=t),
                options.get("timeout"),
            )
            return core.detections(result, info, options)
        except BaseException as err:
            error = err
            raise
        finally:
            core.record(time.perf_counter() - start, error)

    # -- endpoint checks ----------------------------------------------------------------------------------------
    async def _check_health(self, url: str) -> EndpointHealth:
        """Liveness, readiness and model readiness of ``url``, recorded in the pool (down on any failure)."""
        core, headers, t = self._core, self._core.headers, self._core.timeout
        try:
            live = await self._perform(url, lambda conn: conn.is_server_live(headers=headers, client_timeout=t))
            ready = await self._perform(url, lambda conn: conn.is_server_ready(headers=headers, client_timeout=t))
            model_ready = await self._model_ready(url, t)
        except Exception as exc:
            core.pool.mark_down(url)
            return EndpointHealth(url, False, False, False, str(from_exception(exc, url)))
        core.pool.record_probe(url, bool(ready) and model_ready)
        return EndpointHealth(url, bool(live), bool(ready), model_ready)

    async def _probe(self, url: str) -> bool:
        """The health checker's probe: server and model ready within the probe timeout (False on any failure)."""
        headers, t = self._core.headers, self._core.pool.options.probe_timeout
        try:
            if not await self._perform(url, lambda conn: conn.is_server_ready(headers=headers, client_timeout=t)):
                return False
            return await self._model_ready(url, t)
        except Exception:
            return False

    async def _model_ready(self, url: str, timeout: float) -> bool:
        headers, model = self._core.headers, self._core.infer_model
        return bool(
            await self._perform(url, lambda conn: conn.is_model_ready(model, headers=headers, client_timeout=timeout))
        )
