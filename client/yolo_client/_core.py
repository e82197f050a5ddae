"""What the sync and async clients share apart from I/O: options, endpoints, retries, requests, metrics.

Each client holds one :class:`ClientCore` and adds only its own way of waiting (threads or asyncio).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Union

import numpy as np

from . import images, protocol
from .endpoints import EndpointPool, check_headers, connection_kwargs, parse_urls
from .errors import InvalidInputError
from .geometry import ResizeParams, letterbox
from .metrics import ClientMetrics
from .retry import CallPlan, RetryBudget
from .types import (
    ChannelOptions,
    Color,
    Detection,
    HealthCheckOptions,
    ModelInfo,
    RepositoryModel,
    RetryPolicy,
    TlsConfig,
    Transport,
)

if TYPE_CHECKING:  # pragma: no cover
    from tritonclient.grpc import InferInput, InferResult

Loaded = Union[bytes, np.ndarray]  # encoded image (bytes transport) or uint8 RGB pixels (tensor transport)
Prepared = Union[bytes, tuple[np.ndarray, ResizeParams]]
DEFAULT_URL = "localhost:8001"
DEFAULT_MODEL = "yolov4_tiny_shapes"  # what `make serve` serves by default
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_IN_FLIGHT = 16


class ClientCore:
    """Validated options and the shared, I/O-free parts of a client (see :class:`yolo_client.YoloClient`)."""

    def __init__(
        self,
        url_or_urls: str | Iterable[str],
        model: str,
        *,
        transport: Transport,
        timeout: float,
        retries: RetryPolicy | None,
        tls: TlsConfig | None,
        headers: Mapping[str, str] | None,
        metrics: bool | ClientMetrics,
        channel: ChannelOptions | None,
        health_check: HealthCheckOptions | None,
        max_in_flight: int,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise InvalidInputError(f"model must be a non-empty name, got {model!r}")
        self.urls, grpcs = parse_urls(url_or_urls)
        self.timeout = check_timeout(timeout)
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise InvalidInputError(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
        self.max_in_flight = max_in_flight
        self.model = model
        self.transport: Transport = transport
        self.infer_model = protocol.model_for(model, transport)
        self.tls = tls if tls is not None else (TlsConfig() if grpcs else None)
        self.connection_kwargs = connection_kwargs(channel or ChannelOptions(), self.tls)
        self.headers = check_headers(headers)
        self.policy = retries if retries is not None else RetryPolicy()
        self.budget = RetryBudget(self.policy)
        self.pool = EndpointPool(self.urls, health_check)
        self.metrics: ClientMetrics | None = ClientMetrics.shared() if metrics is True else (metrics or None)
        self.info: ModelInfo | None = None

    @property
    def watch_endpoints(self) -> bool:
        """Whether a background health checker runs (only useful with more than one endpoint)."""
        return len(self.urls) > 1

    def plan(self, timeout: float | None) -> CallPlan:
        return CallPlan(self.policy, self.budget, self.pool, self.timeout if timeout is None else check_timeout(timeout))

    # -- model info ---------------------------------------------------------------------------------------------
    def set_info(self, config: Mapping[str, Any]) -> ModelInfo:
        self.info = protocol.parse_model_info(self.infer_model, config)
        return self.info

    # -- requests -----------------------------------------------------------------------------------------------
    def check_call(self, info: ModelInfo, score_threshold: float | None, max_detections: int | None) -> None:
        protocol.check_limits(info, score_threshold, max_detections)

    def load(self, image: images.ImageInput, color: Color | None) -> Loaded:
        """Read and check one input, before any request: encoded bytes (bytes transport) or RGB pixels (tensor)."""
        if isinstance(image, (list, tuple)):
            raise InvalidInputError("detect() takes one image; use detect_batch() for several")
        images.check_color(color)
        if self.transport == "bytes":
            return images.to_bytes(image, color=color)
        return images.to_rgb(image, color=color)

    def prepare(self, loaded: Loaded, info: ModelInfo) -> Prepared:
        """What goes on the wire: the bytes as they are, or the letterboxed tensor and its params."""
        if isinstance(loaded, bytes):
            return loaded
        return letterbox(loaded, info.input_width, info.input_height, info.letterbox)

    def blocking_load(self, image: images.ImageInput) -> bool:
        """Whether loading ``image`` is CPU work worth moving off the event loop (decoding or PNG encoding)."""
        return self.transport == "tensor" or not isinstance(image, (bytes, bytearray, memoryview, str, os.PathLike))

    def inputs(self, prepared: Sequence[Prepared]) -> list["InferInput"]:
        if self.transport == "bytes":
            return protocol.bytes_inputs(prepared)  # type: ignore[arg-type]
        tensors = [p[0] for p in prepared]  # type: ignore[index]
        params = [p[1] for p in prepared]  # type: ignore[index]
        return protocol.tensor_inputs(tensors, params)

    def detections(
        self, result: "InferResult", info: ModelInfo, score_threshold: float | None, max_detections: int | None
    ) -> list[Detection]:
        found = protocol.parse_result(result, info)[0]
        return protocol.apply_limits(found, score_threshold, max_detections)

    def check_batch(self, items: Iterable[images.ImageInput]) -> list[images.ImageInput]:
        if isinstance(items, (str, bytes, bytearray, memoryview, np.ndarray)) or images._is_pil(items):
            raise InvalidInputError("detect_batch() takes a list of images; use detect() for one")
        batch = list(items)
        if not batch:
            raise InvalidInputError("detect_batch() needs at least one image")
        return batch

    # -- metrics ------------------------------------------------------------------------------------------------
    def record(self, seconds: float, error: BaseException | None) -> None:
        if self.metrics is not None:
            self.metrics.observe(self.infer_model, self.transport, seconds, error)

    def record_retry(self, status: str | None) -> None:
        if self.metrics is not None:
            self.metrics.retry(self.infer_model, status)


def check_timeout(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def repository_models(index: Mapping[str, Any]) -> list[RepositoryModel]:
    """Entries of ``get_model_repository_index(as_json=True)``."""
    return [
        RepositoryModel(
            name=str(m.get("name", "")),
            version=str(m.get("version", "")),
            state=str(m.get("state", "")),
            reason=str(m.get("reason", "")),
        )
        for m in index.get("models", [])
    ]
