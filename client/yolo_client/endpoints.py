"""Endpoints: URL parsing, the round-robin pool with failover, and gRPC channel settings.

Shared by the sync and async clients; nothing here does I/O except reading PEM files.

Example:
    >>> pool = EndpointPool(["a:8001", "b:8001"])
    >>> pool.pick(), pool.pick()
    ('a:8001', 'b:8001')
    >>> pool.mark_down("a:8001")          # an UNAVAILABLE answer or a failed readiness probe
    >>> pool.pick(), pool.pick()
    ('b:8001', 'b:8001')
    >>> pool.record_probe("a:8001", ok=True)   # the health checker saw it ready again
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import InvalidInputError
from .types import ChannelOptions, HealthCheckOptions, PemSource, TlsConfig

if TYPE_CHECKING:  # pragma: no cover
    import grpc

Clock = Callable[[], float]

_HEADER_NAME = re.compile(r"^[0-9a-z_.\-]+$")


def parse_urls(url_or_urls: str | Iterable[str]) -> tuple[tuple[str, ...], bool]:
    """``host:port`` targets and whether a ``grpcs://`` scheme asked for TLS.

    Accepts ``host:port``, ``grpc://host:port`` and ``grpcs://host:port``, alone or in a list.
    """
    urls = [url_or_urls] if isinstance(url_or_urls, str) else list(url_or_urls)
    if not urls:
        raise InvalidInputError("at least one server URL is needed")
    targets: list[str] = []
    schemes: set[str] = set()
    for url in urls:
        if not isinstance(url, str) or not url.strip():
            raise InvalidInputError(f"bad server URL {url!r}")
        scheme, sep, rest = url.strip().partition("://")
        if not sep:
            scheme, rest = "grpc", scheme
        if scheme not in ("grpc", "grpcs"):
            raise InvalidInputError(f"{url!r}: only grpc:// and grpcs:// URLs are supported (this is a gRPC client)")
        rest = rest.rstrip("/")
        if not rest or "/" in rest:
            raise InvalidInputError(f"{url!r}: expected host:port")
        if rest in targets:
            raise InvalidInputError(f"{url!r} is listed twice")
        schemes.add(scheme)
        targets.append(rest)
    if len(schemes) > 1:
        raise InvalidInputError("mixing grpc:// and grpcs:// URLs is not supported")
    return tuple(targets), schemes == {"grpcs"}


@dataclass
class _State:
    up: bool = True
    down_since: float = 0.0
    next_probe: float = 0.0
    held_until: float = 0.0  # probes do not put it back before this time


class EndpointPool:
    """Round-robin over healthy endpoints, with failover and re-admission (thread-safe).

    An endpoint is taken out by :meth:`mark_down` (the client saw ``UNAVAILABLE``) or a failed probe, and put
    back by a passing probe or a successful call. :meth:`due_probes` tells the health checker which endpoints
    to probe now: every endpoint each ``options.interval`` seconds, one that is out each
    ``options.recheck_interval`` seconds. When every endpoint is out, :meth:`pick` still returns one (the one
    out the longest) rather than failing without trying.
    """

    def __init__(self, urls: Iterable[str], options: HealthCheckOptions | None = None, clock: Clock = time.monotonic):
        self.urls = tuple(urls)
        if not self.urls:
            raise InvalidInputError("at least one endpoint is needed")
        self.options = options or HealthCheckOptions()
        self._clock = clock
        now = clock()
        self._state = {url: _State(next_probe=now) for url in self.urls}
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, avoid: Collection[str] = ()) -> str:
        """Next endpoint in rotation: up and not in ``avoid``, else up, else the one out the longest."""
        with self._lock:
            n = len(self.urls)
            order = [(self._next + i) % n for i in range(n)]
            chosen = next((i for i in order if self._state[self.urls[i]].up and self.urls[i] not in avoid), None)
            if chosen is None:
                chosen = next((i for i in order if self._state[self.urls[i]].up), None)
            if chosen is None:
                fresh = [i for i in order if self.urls[i] not in avoid] or order
                chosen = min(fresh, key=lambda i: self._state[self.urls[i]].down_since)
            self._next = (chosen + 1) % n
            return self.urls[chosen]

    def up(self) -> list[str]:
        with self._lock:
            return [url for url in self.urls if self._state[url].up]

    def is_up(self, url: str) -> bool:
        with self._lock:
            return self._state[url].up

    def mark_down(self, url: str, hold: bool = False) -> None:
        """Take ``url`` out of rotation; ``hold``: keep it out for ``options.fault_hold`` s whatever probes say."""
        with self._lock:
            state = self._state[url]
            now = self._clock()
            if state.up:
                state.up = False
                state.down_since = now
            if hold:
                state.held_until = now + self.options.fault_hold
            state.next_probe = max(now + self.options.recheck_interval, state.held_until)

    def mark_up(self, url: str) -> None:
        with self._lock:
            state = self._state[url]
            state.held_until = 0.0  # it answered: whatever held it out is over
            if not state.up:
                state.up = True
                state.next_probe = self._clock() + self.options.interval

    def record_probe(self, url: str, ok: bool) -> None:
        """Result of a readiness probe: puts the endpoint back or takes it out, and schedules the next probe."""
        if not ok:
            self.mark_down(url)
            return
        with self._lock:
            state = self._state[url]
            now = self._clock()
            if now < state.held_until:
                state.next_probe = state.held_until
                return
            state.up = True
            state.next_probe = now + self.options.interval

    def due_probes(self) -> list[str]:
        """Endpoints whose probe is due now."""
        with self._lock:
            now = self._clock()
            return [url for url in self.urls if self._state[url].next_probe <= now]

    def seconds_to_next_probe(self) -> float:
        with self._lock:
            return max(0.0, min(s.next_probe for s in self._state.values()) - self._clock())


def read_pem(source: PemSource | None, what: str) -> bytes | None:
    """PEM bytes from a path or from the bytes themselves."""
    if source is None or isinstance(source, bytes):
        return source
    try:
        with open(os.fspath(source), "rb") as f:
            return f.read()
    except OSError as err:
        raise InvalidInputError(f"cannot read the TLS {what} {os.fspath(source)!r}: {err.strerror or err}") from None


def credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    """gRPC channel credentials for server TLS, or mutual TLS when a key and chain are given."""
    import grpc

    if (tls.private_key is None) != (tls.certificate_chain is None):
        raise InvalidInputError("mutual TLS needs both private_key and certificate_chain")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(tls.root_certificates, "root certificates"),
        private_key=read_pem(tls.private_key, "private key"),
        certificate_chain=read_pem(tls.certificate_chain, "certificate chain"),
    )


def channel_args(options: ChannelOptions, tls: TlsConfig | None = None) -> list[tuple[str, Any]]:
    """Every channel argument the clients set (tritonclient uses none of its defaults once these are given)."""
    args: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", options.max_send_message_bytes),
        ("grpc.max_receive_message_length", options.max_receive_message_bytes),
        ("grpc.keepalive_time_ms", options.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", options.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(options.keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", options.max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", options.initial_reconnect_backoff_ms),
        ("grpc.min_reconnect_backoff_ms", options.initial_reconnect_backoff_ms),
        ("grpc.max_reconnect_backoff_ms", options.max_reconnect_backoff_ms),
        ("grpc.primary_user_agent", f"yolo-client/{__version__}"),
    ]
    if tls is not None and tls.server_name:
        args.append(("grpc.ssl_target_name_override", tls.server_name))
    return args


def connection_kwargs(options: ChannelOptions, tls: TlsConfig | None) -> dict[str, Any]:
    """Keyword arguments for ``tritonclient.grpc(.aio).InferenceServerClient(url, **kwargs)``."""
    kwargs: dict[str, Any] = {"channel_args": channel_args(options, tls)}
    if tls is not None:
        kwargs["creds"] = credentials(tls)
    return kwargs


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """gRPC metadata to send on every call (lower-case names, string values; e.g. ``authorization``)."""
    checked: dict[str, str] = {}
    for name, value in (headers or {}).items():
        key = str(name).lower()
        if not _HEADER_NAME.match(key) or key.startswith("grpc-"):
            raise InvalidInputError(f"bad header name {name!r}: use lower-case letters, digits, '-', '_', '.'")
        if not isinstance(value, str) or any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
            raise InvalidInputError(f"header {name!r} must be printable ASCII text")
        checked[key] = value
    return checked
