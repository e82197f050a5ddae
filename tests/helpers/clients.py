"""Both clients behind one blocking interface, so that one test runs over :class:`YoloClient` and
:class:`AsyncYoloClient` alike: ``open_client(kind, ...)`` takes the clients' own arguments.

The async client runs on an event loop of its own, one call at a time, each awaited to the end.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from typing import Any

from yolo_client import AsyncYoloClient, YoloClient

KINDS = ("sync", "async")


class BlockingAsyncClient:
    """An :class:`AsyncYoloClient` with the calls of :class:`YoloClient` (each coroutine run to completion)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.client = AsyncYoloClient(*args, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self.client.__aenter__())  # starts the health checker, as `async with` does

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        return lambda *args, **kwargs: self._loop.run_until_complete(attr(*args, **kwargs))

    def idle(self, seconds: float) -> None:
        """Let the client's background tasks (the health checker) run for ``seconds``."""
        self._loop.run_until_complete(asyncio.sleep(seconds))

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self.client.close())
            self._loop.close()

    def __enter__(self) -> BlockingAsyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_client(kind: str, *args: Any, **kwargs: Any) -> Any:
    """A :class:`YoloClient` (``kind="sync"``) or a blocking-wrapped :class:`AsyncYoloClient` (``"async"``)."""
    if kind == "sync":
        return YoloClient(*args, **kwargs)
    assert kind == "async", kind
    return BlockingAsyncClient(*args, **kwargs)


def idle(client: Any, seconds: float) -> None:
    """Wait ``seconds`` while the health checker of ``client`` (either kind) runs."""
    if isinstance(client, BlockingAsyncClient):
        client.idle(seconds)
    else:
        time.sleep(seconds)


# bound and never listening, for the whole session: a port released at once could be taken by a server a test
# starts later, and a request meant to fail would reach it
_DEAD_SOCKETS: list[socket.socket] = []


def dead_url() -> str:
    """A local ``host:port`` nothing listens on, nor can (a request there fails UNAVAILABLE at once)."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    _DEAD_SOCKETS.append(held)
    return f"127.0.0.1:{held.getsockname()[1]}"
