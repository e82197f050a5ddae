"""Asyncio client over ``tritonclient.grpc.aio``: the same API as :class:`yolo_client.YoloClient`, awaited.

Example:
    >>> from yolo_client import AsyncYoloClient
    >>> async with AsyncYoloClient("localhost:8001") as client:
    ...     detections = await client.detect("dog.jpg")
    ...     batches = await client.detect_batch(["a.jpg", "b.jpg"])

Channels are opened on first use inside the running event loop; use the client from one loop. Decoding and
letterboxing (tensor transport) and PNG-encoding arrays run in worker threads (``asyncio.to_thread``) so the
loop is never blocked by image work. ``detect_batch`` keeps up to ``max_in_flight`` requests in flight.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from ._core import ClientCore, Loaded, Prepared, arun_steps, repository_models
from .endpoints import EndpointPool
from .errors import YoloClientError, from_exception
from .images import ImageInput
from .options import ClientOptions, constructor_signature
from .types import Color, Detection, EndpointHealth, ModelInfo, RepositoryModel

T = TypeVar("T")


class AsyncYoloClient:
    """Asyncio twin of :class:`yolo_client.YoloClient` (same arguments, same errors)."""

    def __init__(self, *args: Any, options: ClientOptions | None = None, **kwargs: Any) -> None:
        self._core = ClientCore(ClientOptions.resolve(args, kwargs, options))
        self._conns: dict[str, Any] = {}
        self._checker: asyncio.Task[None] | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------------------------
    async def __aenter__(self) -> AsyncYoloClient:
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the health checker and close the channels (idempotent)."""
        self._closed = True
        if self._checker is not None:
            self._checker.cancel()
            try:
                await self._checker
            except asyncio.CancelledError:
                pass
            self._checker = None
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            await conn.close()

    @property
    def urls(self) -> tuple[str, ...]:
        return self._core.urls

    @property
    def pool(self) -> EndpointPool:
        return self._core.pool

    @property
    def options(self) -> ClientOptions:
        """The settings this client was built from."""
        return self._core.options

    # -- API ----------------------------------------------------------------------------------------------------
    async def model_info(self, *, refresh: bool = False) -> ModelInfo:
        """See :meth:`yolo_client.YoloClient.model_info`."""
        if self._core.info is None or refresh:
            config = await self._call(
                lambda conn, t: conn.get_model_config(
                    self._core.infer_model, headers=self._core.headers, as_json=True, client_timeout=t
                ),
                None,
            )
            self._core.set_info(config)
        assert self._core.info is not None
        return self._core.info

    async def detect(
        self,
        image: ImageInput,
        *,
        color: Color | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        timeout: float | None = None,
    ) -> list[Detection]:
        """See :meth:`yolo_client.YoloClient.detect`."""
        start = time.perf_counter()
        try:
            loaded = await self._load(image, color)
            info = await self.model_info()
            self._core.check_call(info, score_threshold, max_detections)
        except YoloClientError as err:
            self._core.record(time.perf_counter() - start, err)
            raise
        return await self._infer_one(loaded, info, score_threshold, max_detections, timeout, start)

    async def detect_batch(
        self,
        images: Iterable[ImageInput],
        *,
        color: Color | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        timeout: float | None = None,
    ) -> list[list[Detection]]:
        """See :meth:`yolo_client.YoloClient.detect_batch`."""
        batch = self._core.check_batch(images)
        loaded = await asyncio.gather(*(self._load(image, color) for image in batch))
        info = await self.model_info()
        self._core.check_call(info, score_threshold, max_detections)
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._core.max_in_flight)
        semaphore = self._semaphore

        async def one(item: Loaded) -> list[Detection]:
            async with semaphore:
                return await self._infer_one(item, info, score_threshold, max_detections, timeout, None)

        tasks = [asyncio.ensure_future(one(item)) for item in loaded]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def health(self) -> list[EndpointHealth]:
        """See :meth:`yolo_client.YoloClient.health`."""
        return list(await asyncio.gather(*(self._health(url) for url in self._core.urls)))

    async def models(self) -> list[RepositoryModel]:
        """See :meth:`yolo_client.YoloClient.models`."""
        index = await self._call(
            lambda conn, t: conn.get_model_repository_index(headers=self._core.headers, as_json=True, client_timeout=t),
            None,
        )
        return repository_models(index)

    # -- internals ----------------------------------------------------------------------------------------------
    async def _load(self, image: ImageInput, color: Color | None) -> Loaded:
        if self._core.blocking_load(image):
            return await asyncio.to_thread(self._core.load, image, color)
        return self._core.load(image, color)

    async def _infer_one(
        self,
        loaded: Loaded,
        info: ModelInfo,
        score_threshold: float | None,
        max_detections: int | None,
        timeout: float | None,
        start: float | None,
    ) -> list[Detection]:
        start = time.perf_counter() if start is None else start
        error: BaseException | None = None
        try:
            if isinstance(loaded, bytes):
                prepared: Prepared = loaded
            else:  # letterboxing is CPU work: off the event loop
                prepared = await asyncio.to_thread(self._core.prepare, loaded, info)
            inputs = self._core.inputs([prepared])
            result = await self._call(
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

    async def _call(self, op: Callable[[Any, float], Awaitable[T]], timeout: float | None) -> T:
        """See :meth:`yolo_client.YoloClient._call`; the same plan, awaited."""
        self._start()
        plan = self._core.plan(timeout)
        while True:
            url = plan.next_endpoint()
            try:
                result = await op(self._conn(url), plan.attempt_timeout())
            except Exception as exc:  # every failure is translated; none escapes raw
                err = from_exception(exc, url)
                delay = plan.on_failure(url, err)
                if delay is None:
                    raise err from None
                self._core.record_retry(err.status)
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                plan.on_success(url)
                return result

    async def _health(self, url: str) -> EndpointHealth:
        return await arun_steps(self._core.health_steps(url), self._conn(url))

    async def _probe(self, url: str) -> bool:
        return await arun_steps(self._core.probe_steps(url), self._conn(url))

    def _conn(self, url: str) -> Any:
        conn = self._conns.get(url)
        if conn is None:
            if self._closed:
                raise YoloClientError("the client is closed")
            from tritonclient.grpc.aio import InferenceServerClient

            conn = self._conns[url] = InferenceServerClient(url, **self._core.connection_kwargs)
        return conn

    def _start(self) -> None:
        if self._core.watch_endpoints and self._checker is None and not self._closed:
            self._checker = asyncio.get_running_loop().create_task(_watch(weakref.ref(self), self._core.pool))


AsyncYoloClient.__init__.__signature__ = constructor_signature()  # type: ignore[attr-defined]  # for help()


async def _watch(ref: weakref.ref[AsyncYoloClient], pool: EndpointPool) -> None:
    """Health-checker task: probe due endpoints, sleep until the next is due; ends with the client."""
    while True:
        await asyncio.sleep(min(pool.seconds_to_next_probe(), 1.0))
        client = ref()
        if client is None:
            return
        due = pool.due_probes()
        results = await asyncio.gather(*(client._probe(url) for url in due))
        for url, ok in zip(due, results):
            pool.record_probe(url, ok)
        del client
