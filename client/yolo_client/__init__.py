"""Client SDK for the YOLOv4 Triton server (no torch, no server code).

Example:
    >>> from yolo_client import YoloClient
    >>> with YoloClient("localhost:8001", model="yolov4_tiny") as client:
    ...     detections = client.detect("dog.jpg")

``import yolo_client`` stays light: the clients (and tritonclient/gRPC) load on first use of a name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

_EXPORTS = {
    "YoloClient": "client",
    "AsyncYoloClient": "aio",
    "ClientOptions": "options",
    "Detection": "types",
    "ModelInfo": "contract",
    "RetryPolicy": "types",
    "TlsConfig": "types",
    "ChannelOptions": "types",
    "HealthCheckOptions": "types",
    "EndpointHealth": "types",
    "RepositoryModel": "types",
    "YoloClientError": "errors",
    "InvalidInputError": "errors",
    "VideoSourceError": "errors",
    "ServerRejectedError": "errors",
    "ServerError": "errors",
    "UnavailableError": "errors",
    "DeadlineExceededError": "errors",
    "ClientMetrics": "metrics",
    "draw_detections": "draw",
    "FrameResult": "video",
    "VideoInfo": "video",
    "VideoOptions": "video",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    from .aio import AsyncYoloClient
    from .client import YoloClient
    from .contract import ModelInfo
    from .draw import draw_detections
    from .errors import (
        DeadlineExceededError,
        InvalidInputError,
        ServerError,
        ServerRejectedError,
        UnavailableError,
        VideoSourceError,
        YoloClientError,
    )
    from .metrics import ClientMetrics
    from .options import ClientOptions
    from .types import (
        ChannelOptions,
        Detection,
        EndpointHealth,
        HealthCheckOptions,
        RepositoryModel,
        RetryPolicy,
        TlsConfig,
    )
    from .video import FrameResult, VideoInfo, VideoOptions


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'yolo_client' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
