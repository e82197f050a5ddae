"""The I/O-free part of a client: validated options, endpoints, retry plans, requests, checks, metrics.

:class:`yolo_client._base.ClientBase` holds one and writes the calls over it once for both clients.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import images, protocol
from .endpoints import EndpointPool, check_headers, connection_kwargs, parse_urls
from .errors import InvalidInputError
from .geometry import ResizeParams, letterbox
from .metrics import ClientMetrics
from .options import ClientOptions
from .retry import CallPlan, RetryBudget
from .types import (
    ChannelOptions,
    Color,
    Detection,
    DetectOptions,
    ModelInfo,
    RepositoryModel,
    RetryPolicy,
    TlsConfig,
    Transport,
)

if TYPE_CHECKING:  # pragma: no cover
    from tritonclient.grpc import InferInput, InferResult

Loaded = bytes | np.ndarray  # encoded image (bytes transport) or uint8 RGB pixels (tensor transport)
Prepared = bytes | tuple[np.ndarray, ResizeParams]


class ClientCore:
    """Validated options and the shared, I/O-free parts of a client (see :class:`yolo_client.YoloClient`)."""

    def __init__(self, options: ClientOptions) -> None:
        model, max_in_flight = options.model, options.max_in_flight
        if not isinstance(model, str) or not model:
            raise InvalidInputError(f"model must be a non-empty name, got {model!r}")
        self.options = options
        self.urls, grpcs = parse_urls(options.url_or_urls)
        self.timeout = check_timeout(options.timeout)
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise InvalidInputError(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
        self.max_in_flight = max_in_flight
        self.model = model
        self.transport: Transport = options.transport
        self.infer_model = protocol.model_for(model, options.transport)
        self.tls = options.tls if options.tls is not None else (TlsConfig() if grpcs else None)
        self.connection_kwargs = connection_kwargs(options.channel or ChannelOptions(), self.tls)
        self.headers = check_headers(options.headers)
        self.policy = options.retries if options.retries is not None else RetryPolicy()
        self.budget = RetryBudget(self.policy)
        self.pool = EndpointPool(self.urls, options.health_check)
        metrics = options.metrics
        self.metrics: ClientMetrics | None = ClientMetrics.shared() if metrics is True else (metrics or None)
        self.info: ModelInfo | None = options.model_info

    @property
    def watch_endpoints(self) -> bool:
        """Whether a background health checker runs (only useful with more than one endpoint)."""
        return len(self.urls) > 1

    def plan(self, timeout: float | None) -> CallPlan:
        return CallPlan(
            self.policy, self.budget, self.pool, self.timeout if timeout is None else check_timeout(timeout)
        )

    # -- model info ---------------------------------------------------------------------------------------------
    def set_info(self, config: Mapping[str, Any]) -> ModelInfo:
        self.info = protocol.parse_model_info(self.infer_model, config)
        return self.info

    # -- requests -----------------------------------------------------------------------------------------------
    def check_options(self, options: DetectOptions) -> None:
        """Unknown keywords raise ``TypeError``, as in any call (``DetectOptions`` types them, nothing checks)."""
        unknown = sorted(set(options) - DetectOptions.__optional_keys__)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")

    def check_call(self, info: ModelInfo, options: DetectOptions) -> None:
        protocol.check_limits(info, options.get("score_threshold"), options.get("max_detections"))

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

    def inputs(self, prepared: Prepared) -> list[InferInput]:
        """One image's request inputs."""
        if isinstance(prepared, bytes):
            return protocol.bytes_inputs([prepared])
        tensor, params = prepared
        return protocol.tensor_inputs([tensor], [params])

    def detections(self, result: InferResult, info: ModelInfo, options: DetectOptions) -> list[Detection]:
        found = protocol.parse_result(result, info)[0]
        return protocol.apply_limits(found, options.get("score_threshold"), options.get("max_detections"))

    def check_batch(self, items: Iterable[images.ImageInput], options: DetectOptions) -> list[images.ImageInput]:
        self.check_options(options)
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
