"""The settings of a client, written once for :class:`yolo_client.YoloClient` and :class:`yolo_client.AsyncYoloClient`.

Example:
    >>> from yolo_client import ClientOptions, YoloClient
    >>> options = ClientOptions("localhost:8001", model="yolov4_tiny", timeout=5)
    >>> client = YoloClient(options=options)  # the same as YoloClient("localhost:8001", model="yolov4_tiny", timeout=5)
    >>> fast = YoloClient(options=options, timeout=1)  # keywords override the options' fields
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .contract import DEFAULT_MODEL, DEFAULT_URL
from .types import ChannelOptions, HealthCheckOptions, ModelInfo, RetryPolicy, TlsConfig, Transport

if TYPE_CHECKING:  # pragma: no cover
    from .metrics import ClientMetrics

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_IN_FLIGHT = 16
POSITIONAL = ("url_or_urls", "model")  # the constructors' positional parameters; every other one is keyword-only


@dataclass(frozen=True)
class ClientOptions:
    """Every setting of a client; see :class:`yolo_client.YoloClient` for what each one does.

    Values are checked when a client is built from them (an :class:`~yolo_client.InvalidInputError` then).
    ``model_info``, when given, is used instead of reading the model's config from the server (until
    ``model_info(refresh=True)``).
    """

    url_or_urls: str | Iterable[str] = DEFAULT_URL
    model: str = DEFAULT_MODEL
    transport: Transport = "bytes"
    timeout: float = DEFAULT_TIMEOUT
    retries: RetryPolicy | None = None
    tls: TlsConfig | None = None
    headers: Mapping[str, str] | None = None
    metrics: bool | ClientMetrics = False
    channel: ChannelOptions | None = None
    health_check: HealthCheckOptions | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    model_info: ModelInfo | None = None

    def __post_init__(self) -> None:
        urls = self.url_or_urls
        if not isinstance(urls, (str, bytes)) and isinstance(
            urls, collections.abc.Iterable
        ):  # a generator is read once, here
            object.__setattr__(self, "url_or_urls", tuple(urls))

    @classmethod
    def resolve(
        cls, args: tuple[Any, ...], kwargs: dict[str, Any], options: ClientOptions | None = None
    ) -> ClientOptions:
        """The options of a constructor call ``Client(*args, options=options, **kwargs)``.

        ``args`` are ``url_or_urls`` and ``model``; ``args`` and ``kwargs`` override the fields of ``options``
        (default: :class:`ClientOptions`'s defaults). Wrong arguments raise ``TypeError``, as for any call.
        """
        if len(args) > len(POSITIONAL):
            raise TypeError(f"takes at most {len(POSITIONAL)} positional arguments ({len(args)} given)")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - fields)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
        given = dict(zip(POSITIONAL, args, strict=False))  # args may give fewer than all the positionals
        twice = sorted(set(given) & set(kwargs))
        if twice:
            raise TypeError(f"got multiple values for argument {twice[0]!r}")
        given.update(kwargs)
        if options is None:
            return cls(**given)
        if not isinstance(options, cls):
            raise TypeError(f"options must be a ClientOptions, got {type(options).__name__}")
        return dataclasses.replace(options, **given) if given else options


def constructor_signature() -> inspect.Signature:
    """What ``help()`` and ``inspect.signature`` show for the clients' ``__init__`` (built from the fields)."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for f in dataclasses.fields(ClientOptions):
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if f.name in POSITIONAL else inspect.Parameter.KEYWORD_ONLY
        params.append(inspect.Parameter(f.name, kind, default=f.default, annotation=f.type))
    params.append(
        inspect.Parameter("options", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="ClientOptions | None")
    )
    return inspect.Signature(params, return_annotation="None")
