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
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, Unpack

from ._base import ClientBase, Loaded, check_batch
from .endpoints import EndpointPool
from .errors import YoloClientError
from .images import ImageInput
from .options import ClientOptions
from .sources import FrameSource, VideoInput
from .streaming import AsyncVideoStream, prepare
from .types import Detection, DetectOptions, EndpointHealth, ModelInfo, RepositoryModel
from .video import VideoDetectOptions

T = TypeVar("T")


class AsyncYoloClient(ClientBase):
    """Asyncio twin of :class:`yolo_client.YoloClient` (same arguments, same errors)."""

    def __init__(self, *args: Any, options: ClientOptions | None = None, **kwargs: Any) -> None:
        super().__init__(ClientOptions.resolve(args, kwargs, options))
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

    # -- API ----------------------------------------------------------------------------------------------------
    async def model_info(self, *, refresh: bool = False) -> ModelInfo:
        """See :meth:`yolo_client.YoloClient.model_info`."""
        return await self._fetch_model_info(refresh)

    async def model_config(self) -> dict[str, Any]:
        """See :meth:`yolo_client.YoloClient.model_config`."""
        return await self._fetch_model_config()

    async def detect(self, image: ImageInput, **options: Unpack[DetectOptions]) -> list[Detection]:
        """See :meth:`yolo_client.YoloClient.detect`."""
        return await self._detect_one(image, options)

    async def detect_batch(
        self, images: Iterable[ImageInput], **options: Unpack[DetectOptions]
    ) -> list[list[Detection]]:
        """See :meth:`yolo_client.YoloClient.detect_batch`."""
        batch = check_batch(images, options)
        loaded = await asyncio.gather(*(self._load(image, options.get("color")) for image in batch))
        info = await self._checked_info(options)
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._max_in_flight)
        semaphore = self._semaphore

        async def one(item: Loaded) -> list[Detection]:
            async with semaphore:
                return await self._infer_one(item, info, options, None)

        tasks = [asyncio.ensure_future(one(item)) for item in loaded]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def detect_video(self, source: VideoInput | FrameSource, **options: Unpack[VideoDetectOptions]) -> AsyncVideoStream:
        """See :meth:`yolo_client.YoloClient.detect_video`: ``async for result in client.detect_video(...)``.

        The source is opened (in a worker thread) on entering ``async with`` or at the first result, so its errors
        are raised there; cancelling the task that iterates cancels the requests in flight and stops the reader.
        """
        return AsyncVideoStream(lambda: prepare(self, source, options))

    async def health(self) -> list[EndpointHealth]:
        """See :meth:`yolo_client.YoloClient.health`."""
        return list(await asyncio.gather(*(self._check_health(url) for url in self.urls)))

    async def models(self) -> list[RepositoryModel]:
        """See :meth:`yolo_client.YoloClient.models`."""
        return await self._fetch_models()

    # -- I/O: awaited on the running loop -------------------------------------------------------------------------
    async def _perform(self, url: str, call: Callable[[Any], Any]) -> Any:
        return await call(self._conn(url))

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _work(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)

    def _conn(self, url: str) -> Any:
        self._start()
        conn = self._conns.get(url)
        if conn is None:
            if self._closed:
                raise YoloClientError("the client is closed")
            from tritonclient.grpc.aio import InferenceServerClient

            conn = self._conns[url] = InferenceServerClient(url, **self._connection_kwargs)
        return conn

    def _start(self) -> None:
        if self._watch_endpoints and self._checker is None and not self._closed:
            self._checker = asyncio.get_running_loop().create_task(_watch(weakref.ref(self), self.pool))


async def _watch(ref: weakref.ref[AsyncYoloClient], pool: EndpointPool) -> None:
    """Health-checker task: probe due endpoints, sleep until the next is due; ends with the client."""
    while True:
        await asyncio.sleep(min(pool.seconds_to_next_probe(), 1.0))
        client = ref()
        if client is None:
            return
        due = pool.due_probes()
        results = await asyncio.gather(*(client._probe(url) for url in due))
        for url, ok in zip(due, results, strict=True):
            pool.record_probe(url, ok)
        del client
