"""The one exception hierarchy of the SDK.

Every error the clients raise is a :class:`YoloClientError`; tritonclient's
``InferenceServerException`` and raw ``grpc.RpcError`` are translated by
:func:`from_exception` and never escape.

    YoloClientError
    ├── InvalidInputError        bad input or options, raised before any request (also a ValueError)
    │   └── VideoSourceError     a video source that cannot be opened or read (a truncated file: after its results)
    ├── ServerRejectedError      the server refused the request (INVALID_ARGUMENT, NOT_FOUND, an admin API without
    │                            its key, ...)
    ├── ServerError              the server failed (INTERNAL, UNKNOWN, DATA_LOSS)
    ├── UnavailableError         no server could be reached or all were overloaded (UNAVAILABLE, RESOURCE_EXHAUSTED)
    └── DeadlineExceededError    the call's deadline passed (also a TimeoutError)

Example:
    >>> try:
    ...     client.detect("photo.jpg")
    ... except ServerRejectedError as err:
    ...     print(err.status, err.message)        # "INVALID_ARGUMENT", the server's own words
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "YoloClientError",
    "InvalidInputError",
    "VideoSourceError",
    "ServerRejectedError",
    "ServerError",
    "UnavailableError",
    "DeadlineExceededError",
    "from_exception",
    "status_name",
    "is_overloaded",
    "is_endpoint_fault",
    "is_dead_model",
    "is_too_large",
    "is_restricted",
]

# Triton's words for a request it shed while healthy: a full queue, or the queue policy's timeout (REJECT)
OVERLOAD_MESSAGES = ("Exceeds maximum queue size", "Request timeout expired")
# Triton 2.51's answer once a Python-backend stub died: the model is broken on that server until it restarts
STUB_UNHEALTHY_MESSAGE = re.compile(r"Stub process '[^']*' is not healthy")
# an admin API (model repository, shared memory, trace, logging) called without the server's key: Triton answers
# UNAVAILABLE although the endpoint is up
RESTRICTED_MESSAGE = "This protocol is restricted"
# a model that was loaded and is not now: Triton answers this while a stopping replica unloads it (a model that
# never existed is "... is not found")
UNLOADED_MODEL_MESSAGE = re.compile(r"Request for unknown model: '[^']*' has no available versions")


class YoloClientError(Exception):
    """Base of all SDK errors.

    Attributes:
        message: what went wrong, in the server's words when it answered.
        status: the gRPC status name (``"UNAVAILABLE"``), or None for client-side errors.
        endpoint: the URL the failing attempt went to, when there was one.
        debug_details: gRPC's debug string, kept for logs (never part of ``str(err)``).
        attempts: how many attempts the call made before giving up.
    """

    def __init__(
        self, message: str, *, status: str | None = None, endpoint: str | None = None, debug_details: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.endpoint = endpoint
        self.debug_details = debug_details
        self.attempts = 1

    def __str__(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"[{self.status}{where}] {self.message}" if self.status else self.message


class InvalidInputError(YoloClientError, ValueError):
    """Bad input or options, found on the client before anything was sent."""


class VideoSourceError(InvalidInputError):
    """A video source that cannot be opened (missing file, not a video, a URL that refuses or times out), or
    that broke off (a truncated file): raised before any request, or for a break, once every frame read before it
    has its result."""


class ServerRejectedError(YoloClientError):
    """The server refused the request (bad image, unknown model, auth...); retrying will not help."""


class ServerError(YoloClientError):
    """The server failed while handling a valid request (INTERNAL, UNKNOWN, DATA_LOSS)."""


class UnavailableError(YoloClientError):
    """No server could take the request: unreachable, not ready, TLS handshake failed, or overloaded."""


class DeadlineExceededError(YoloClientError, TimeoutError):
    """The call's deadline passed before an answer came."""


_BY_STATUS: dict[str, type[YoloClientError]] = {
    "UNAVAILABLE": UnavailableError,
    "RESOURCE_EXHAUSTED": UnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "INVALID_ARGUMENT": ServerRejectedError,
    "NOT_FOUND": ServerRejectedError,
    "ALREADY_EXISTS": ServerRejectedError,
    "PERMISSION_DENIED": ServerRejectedError,
    "UNAUTHENTICATED": ServerRejectedError,
    "FAILED_PRECONDITION": ServerRejectedError,
    "OUT_OF_RANGE": ServerRejectedError,
    "UNIMPLEMENTED": ServerRejectedError,
    "ABORTED": ServerError,
    "CANCELLED": ServerError,
    "INTERNAL": ServerError,
    "UNKNOWN": ServerError,
    "DATA_LOSS": ServerError,
}


def status_name(status: Any) -> str | None:
    """Normalise a status (``"StatusCode.UNAVAILABLE"``, ``grpc.StatusCode.UNAVAILABLE``, ``"UNAVAILABLE"``)."""
    if status is None:
        return None
    name = getattr(status, "name", None) or str(status)
    name = name.rsplit(".", 1)[-1].strip().upper()
    return name or None


def from_exception(exc: BaseException, endpoint: str | None = None) -> YoloClientError:
    """Translate any exception raised by a tritonclient/gRPC call into the SDK's hierarchy.

    ``YoloClientError`` passes through (with ``endpoint`` filled in when missing); tritonclient's
    ``InferenceServerException`` and ``grpc.RpcError`` map by status; anything else becomes a plain
    :class:`YoloClientError` naming the original type.
    """
    if isinstance(exc, YoloClientError):
        if exc.endpoint is None:
            exc.endpoint = endpoint
        return exc
    status, message, debug = _unpack(exc)
    if status is None:
        if isinstance(exc, TimeoutError):
            return DeadlineExceededError(message or "deadline exceeded", endpoint=endpoint)
        return YoloClientError(f"{type(exc).__name__}: {message}" if message else type(exc).__name__, endpoint=endpoint)
    cls = _BY_STATUS.get(status, YoloClientError)
    if _restricted(status, message):
        cls, message = ServerRejectedError, f"{message} (an admin API: it needs the server's admin key)"
    if cls is UnavailableError and ("ssl" in message.lower() or "handshake" in message.lower()):
        message += " (TLS: check the root certificate and the server name)"
    return cls(message or status.lower(), status=status, endpoint=endpoint, debug_details=debug)


def is_overloaded(error: YoloClientError) -> bool:
    """The server shed the request because it is busy (it stays in rotation; the retry backs off)."""
    return error.status in ("UNAVAILABLE", "RESOURCE_EXHAUSTED") and any(m in error.message for m in OVERLOAD_MESSAGES)


def is_too_large(error: YoloClientError) -> bool:
    """A message over a size cap (gRPC's own, a server's front or the load balancer's): sending it again cannot
    succeed."""
    return error.status == "RESOURCE_EXHAUSTED" and "larger than" in error.message


def is_restricted(error: YoloClientError) -> bool:
    """An admin API called without the server's admin key: the endpoint is fine, and no retry gets the key."""
    return _restricted(error.status, error.message)


def _restricted(status: str | None, message: str) -> bool:
    return status == "UNAVAILABLE" and RESTRICTED_MESSAGE in message


def is_dead_model(error: YoloClientError) -> bool:
    """A model's stub died on that endpoint; Triton still reports it ready, so probes cannot tell."""
    return error.status == "INTERNAL" and STUB_UNHEALTHY_MESSAGE.search(error.message) is not None


def is_unloaded_model(error: YoloClientError) -> bool:
    """The model has no version loaded on that endpoint: the replica is stopping (or failed to load it)."""
    return error.status == "NOT_FOUND" and UNLOADED_MODEL_MESSAGE.search(error.message) is not None


def is_endpoint_fault(error: YoloClientError) -> bool:
    """The endpoint cannot serve now: unreachable, stopping (its model unloading), or a model's stub is dead
    (fail over to another)."""
    return (
        is_dead_model(error)
        or is_unloaded_model(error)
        or (error.status == "UNAVAILABLE" and not is_overloaded(error) and not is_restricted(error))
    )


def _unpack(exc: BaseException) -> tuple[str | None, str, str | None]:
    """(status name, message, debug details) of a tritonclient or gRPC exception."""
    # tritonclient.utils.InferenceServerException: status() -> "StatusCode.X", message(), debug_details()
    # (duck-typed: the SDK imports neither class here, and both libraries are untyped)
    status, message, details = (getattr(exc, name, None) for name in ("status", "message", "debug_details"))
    if callable(status) and callable(message):
        return status_name(status()), str(message() or ""), details() if callable(details) else None
    # grpc.RpcError / grpc.aio.AioRpcError: code(), details()
    code, text, debug = (getattr(exc, name, None) for name in ("code", "details", "debug_error_string"))
    if callable(code) and callable(text):
        return status_name(code()), str(text() or ""), debug() if callable(debug) else None
    return None, str(exc), None
