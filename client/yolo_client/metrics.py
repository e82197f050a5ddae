"""Optional client-side Prometheus metrics (off by default; needs ``pip install yolo-client[metrics]``).

Families (label ``model`` is the Triton model the client calls, ``transport`` is ``bytes`` or ``tensor``):

| family | kind | labels | what |
|---|---|---|---|
| ``yolo_client_request_duration_seconds`` | histogram | model, transport | end-to-end time of one image's call: input preparation, every attempt and backoff sleep |
| ``yolo_client_requests_total`` | counter | model, transport, outcome | calls by outcome: ``ok``, ``invalid_input``, ``rejected``, ``server_error``, ``unavailable``, ``deadline_exceeded``, ``error`` |
| ``yolo_client_retries_total`` | counter | model, status | retries made, by the status that caused them |

Example:
    >>> client = YoloClient("localhost:8001", metrics=True)      # registers in prometheus_client's default registry
    >>> prometheus_client.start_http_server(9100)                 # expose them yourself
"""

from __future__ import annotations

import threading
from typing import Any

from .errors import (
    DeadlineExceededError,
    InvalidInputError,
    ServerError,
    ServerRejectedError,
    UnavailableError,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OUTCOMES = ("ok", "invalid_input", "rejected", "server_error", "unavailable", "deadline_exceeded", "error")

_shared: dict[int, ClientMetrics] = {}
_shared_lock = threading.Lock()


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ImportError("client metrics need prometheus-client: pip install 'yolo-client[metrics]'") from None
    return prometheus_client


def outcome_of(error: BaseException | None) -> str:
    """The ``outcome`` label for a finished call (None: success)."""
    if error is None:
        return "ok"
    for cls, name in (
        (InvalidInputError, "invalid_input"),
        (ServerRejectedError, "rejected"),
        (ServerError, "server_error"),
        (UnavailableError, "unavailable"),
        (DeadlineExceededError, "deadline_exceeded"),
    ):
        if isinstance(error, cls):
            return name
    return "error"


class ClientMetrics:
    """The three metric families, registered once per registry.

    Args:
        registry: a ``prometheus_client.CollectorRegistry``; None for the default registry.
    """

    def __init__(self, registry: Any = None) -> None:
        prom = _prometheus()
        kwargs = {} if registry is None else {"registry": registry}
        self.latency = prom.Histogram(
            "yolo_client_request_duration_seconds",
            "End-to-end time of one image's call (preparation, attempts, backoff)",
            ["model", "transport"],
            buckets=LATENCY_BUCKETS,
            **kwargs,
        )
        self.requests = prom.Counter(
            "yolo_client_requests", "Calls by outcome", ["model", "transport", "outcome"], **kwargs
        )
        self.retries = prom.Counter(
            "yolo_client_retries", "Retries by the status that caused them", ["model", "status"], **kwargs
        )

    @classmethod
    def shared(cls, registry: Any = None) -> ClientMetrics:
        """One instance per registry, so several clients can report into the same families."""
        if registry is None:
            registry = _prometheus().REGISTRY
        with _shared_lock:
            metrics = _shared.get(id(registry))
            if metrics is None:
                metrics = _shared[id(registry)] = cls(registry)
            return metrics

    def observe(self, model: str, transport: str, seconds: float, error: BaseException | None) -> None:
        self.latency.labels(model, transport).observe(seconds)
        self.requests.labels(model, transport, outcome_of(error)).inc()

    def retry(self, model: str, status: str | None) -> None:
        self.retries.labels(model, status or "UNKNOWN").inc()
