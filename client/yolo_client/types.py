"""Public value types: detections, model metadata and client options.

All are frozen dataclasses, so they can be shared between threads and used as
dict keys.

Example:
    >>> det = Detection(box=(10.0, 20.0, 110.0, 220.0), score=0.9, class_id=0, label="person")
    >>> det.width, det.height
    (100.0, 200.0)
    >>> policy = RetryPolicy(max_attempts=5)          # per-call attempts, first one included
    >>> tls = TlsConfig(root_certificates="ca.pem")   # server TLS; add private_key/certificate_chain for mTLS
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, Union

from .contract import ModelInfo

__all__ = ["ModelInfo"]  # the contract's, beside the SDK's other value types

Box = tuple[float, float, float, float]
Transport = Literal["bytes", "tensor"]
Color = Literal["rgb", "bgr"]
PemSource = Union[str, "os.PathLike[str]", bytes]  # a file path, or the PEM bytes themselves

# statuses worth another attempt: the server (or the path to it) is down or overloaded
RETRYABLE_STATUSES: frozenset[str] = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})


@dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in original-image pixels, clipped to the image.
        score: objectness x class probability, in [0, 1].
        class_id: index into :attr:`ModelInfo.class_names`.
        label: the class name (``"class_<id>"`` when the server has no name for it).
        track_id: the id of the object it follows across a video's frames, with ``detect_video(..., track=True)``
            (None elsewhere, and while the tracker has not confirmed a track for it).
    """

    box: Box
    score: float
    class_id: int
    label: str
    track_id: int | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"box": [x1, y1, x2, y2], "score": ..., "class_id": ..., "label": ...}``, and
        ``"track_id"`` when it has one."""
        out = {"box": list(self.box), "score": self.score, "class_id": self.class_id, "label": self.label}
        return out if self.track_id is None else {**out, "track_id": self.track_id}


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a call is retried.

    A call is retried only on :data:`retry_on` statuses, at most ``max_attempts`` attempts in all, and never past
    the call's deadline. Between attempts it sleeps with exponential backoff and full jitter:
    ``uniform(0, min(max_backoff, initial_backoff * multiplier ** (n - 1)))`` before retry ``n``; a retry that moves
    to another healthy endpoint after ``UNAVAILABLE`` goes at once. Client-wide, a retry budget keeps retries to
    ``budget_ratio`` of the calls made plus a reserve of ``budget_reserve`` retries that refills over
    ``budget_window`` seconds, so an outage cannot multiply the load on the remaining servers.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0
    retry_on: frozenset[str] = RETRYABLE_STATUSES
    budget_ratio: float = 0.2
    budget_reserve: float = 20.0
    budget_window: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")
        if self.budget_ratio < 0 or self.budget_reserve < 0 or self.budget_window <= 0:
            raise ValueError("budget_ratio and budget_reserve must be >= 0, budget_window > 0")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """One attempt, no retries."""
        return cls(max_attempts=1)


@dataclass(frozen=True)
class TlsConfig:
    """gRPC TLS settings. Each PEM is a file path or the PEM bytes.

    ``root_certificates`` alone (or nothing, for the system roots) gives server-authenticated TLS; adding
    ``private_key`` and ``certificate_chain`` gives mutual TLS. ``server_name`` overrides the name checked
    against the server certificate (``grpc.ssl_target_name_override``), for certificates issued to a name the
    URL does not use.
    """

    root_certificates: PemSource | None = None
    private_key: PemSource | None = None
    certificate_chain: PemSource | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class ChannelOptions:
    """gRPC channel settings, all passed explicitly (tritonclient drops its defaults once any are given).

    Keepalive: a ping every ``keepalive_time_ms`` while a call is in flight finds a dead connection (a
    half-open TCP session behind a load balancer) within ``keepalive_time_ms + keepalive_timeout_ms``. With
    pings only during calls and at most ``max_pings_without_data`` pings without data, the client stays inside
    Triton's default ping policy (5 min between data-less pings, 2 strikes), so it is never sent GOAWAY.
    Reconnect backoff is capped at ``max_reconnect_backoff_ms`` (gRPC's default is 120 s) so a restarted server
    is seen again within seconds. Message sizes bound what one request and one response may carry.
    """

    max_send_message_bytes: int = 256 * 1024 * 1024
    max_receive_message_bytes: int = 64 * 1024 * 1024
    keepalive_time_ms: int = 60_000
    keepalive_timeout_ms: int = 20_000
    keepalive_permit_without_calls: bool = False
    max_pings_without_data: int = 2
    initial_reconnect_backoff_ms: int = 200
    max_reconnect_backoff_ms: int = 2_000


@dataclass(frozen=True)
class EndpointHealth:
    """One endpoint's answer to :meth:`YoloClient.health`.

    Attributes:
        url: the endpoint, as given to the client.
        live: the server answers (``is_server_live``).
        ready: the server is ready (``is_server_ready``).
        model_ready: the client's model is loaded and ready there.
        error: why the endpoint could not be asked (then every flag is False), else None.
    """

    url: str
    live: bool
    ready: bool
    model_ready: bool
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.live and self.ready and self.model_ready


@dataclass(frozen=True)
class RepositoryModel:
    """One entry of the server's model repository index."""

    name: str
    version: str = ""
    state: str = ""
    reason: str = ""


class DetectOptions(TypedDict, total=False):
    """The keywords of ``detect`` and ``detect_batch``, in both clients (see :meth:`yolo_client.YoloClient.detect`).

    Attributes:
        color: channel order of an array, ``"rgb"`` or ``"bgr"`` (required for arrays).
        score_threshold: keep detections scoring above this (strictly, as the server cuts at its own); may only
            raise the server's threshold (applied by the client, after the server's NMS, which gives the same
            result as applying it before).
        max_detections: keep at most this many (applied by the client; the server's own cap still holds).
        timeout: this call's deadline in seconds, instead of the client's.
    """

    color: Color | None
    score_threshold: float | None
    max_detections: int | None
    timeout: float | None


@dataclass(frozen=True)
class HealthCheckOptions:
    """How endpoints are watched when there are several.

    Every endpoint is probed (model readiness) every ``interval`` seconds; one taken out of rotation (a failed
    probe or an ``UNAVAILABLE`` answer) is probed every ``recheck_interval`` seconds and put back once ready.
    One taken out because a model's stub died there stays out for ``fault_hold`` seconds whatever its readiness
    says: Triton keeps reporting ready with a dead stub (``yolo-server serve`` exits and is restarted meanwhile).
    """

    interval: float = 5.0
    recheck_interval: float = 1.0
    probe_timeout: float = 1.0
    fault_hold: float = 30.0
