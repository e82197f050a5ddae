"""The front: nginx on every port a client can reach, tritonserver behind it on loopback only.

Triton takes gRPC messages of up to 2 GiB and has no option to lower that (2.51, and 2.62 of the NGC 25.10
image). It reads a request whole before any model sees it, so a 1 GiB image took 6-26 s to refuse, and it
left Triton and a stub holding about 1 GiB more each time: Triton's request buffers, and the Python backend's
shared-memory pool, which grows to fit a request and never shrinks (``bench/bench_oversized.py``). nginx counts
a request's bytes as they arrive and refuses it once they pass the cap: RESOURCE_EXHAUSTED on gRPC, 413 on
HTTP, within a second, and Triton never sees more than the cap. The cap also bounds the shared-memory pools.

The cap defaults to the largest request the repository's models accept (:func:`request_cap`): one encoded
image of the models' ``max_bytes``, or a full batch of tensors, whichever is larger.

TLS, when asked for, ends here (gRPC; HTTP then listens on loopback only, as before), with a client
certificate checked when a client CA is given; the hop to Triton stays on the loopback interface.

Example:
    >>> config = FrontConfig(public=Ports("0.0.0.0", 8000, 8001, 8002), triton=Ports(LOOPBACK, 18000, 18001, 18002),
    ...                      max_request_bytes=request_cap(Path("model_repository")))
    >>> (workdir / "nginx.conf").write_text(nginx_conf(config, workdir))  # nginx.conf.template filled in

The nginx process itself is :class:`~yolo_server.launcher.front_process.Front`.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as pb

from yolo_server.launcher.access import LOOPBACK, TlsFiles
from yolo_server.launcher.staging import parameters_of, read_configs
from yolo_server.triton.settings import PreprocessSettings

NGINX_PACKAGE = "nginx"  # Debian and Ubuntu (the images and `make serve` install it)
REQUEST_OVERHEAD_BYTES = 1 << 20  # a request's protobuf framing and metadata beyond its tensors
UPSTREAM_TIMEOUT_S = 300  # nginx's wait for Triton between two reads or writes; clients keep their own deadlines
MAX_OPEN_FILES = 65536  # the front's own ceiling; each request in flight holds two (client and Triton side)
TEMPLATE = "nginx.conf.template"  # beside this module (package data): the front's nginx.conf, ${value}s to fill
_DTYPE_BYTES = {"TYPE_BOOL": 1, "TYPE_UINT8": 1, "TYPE_INT8": 1, "TYPE_FP16": 2, "TYPE_BF16": 2, "TYPE_INT16": 2,
                "TYPE_UINT16": 2, "TYPE_FP32": 4, "TYPE_INT32": 4, "TYPE_UINT32": 4}  # fmt: skip


@dataclass(frozen=True)
class Ports:
    """Where one party listens: a host and its HTTP, gRPC and metrics ports."""

    host: str
    http: int
    grpc: int
    metrics: int


@dataclass(frozen=True)
class FrontConfig:
    """The front of one server: ``public`` is where clients connect, ``triton`` where tritonserver listens.

    ``http_host`` is the public HTTP endpoint's host (loopback when gRPC is TLS: HTTP has no TLS here).
    ``open_files``: nginx raises its limit to this (by default the process' hard limit, up to
    :data:`MAX_OPEN_FILES`) and takes as many connections, client and Triton sides together.
    """

    public: Ports
    triton: Ports
    max_request_bytes: int
    tls: TlsFiles | None = None
    http_host: str | None = None
    open_files: int = field(default_factory=lambda: open_file_limit())

    def __post_init__(self) -> None:
        if self.max_request_bytes < 1 << 20:
            raise ValueError(f"the request cap must be at least 1 MiB, not {self.max_request_bytes} bytes")

    @property
    def cap_text(self) -> str:
        """The cap as people read it, e.g. ``65 MiB``."""
        return f"{self.max_request_bytes / (1 << 20):g} MiB"


def open_file_limit() -> int:
    """How many files nginx may open: this process' hard limit (it can raise its soft one to that), capped."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)


def request_cap(repository: Path) -> int:
    """The largest request any model of ``repository`` accepts, plus framing: the default cap
    (:func:`largest_request` of its configs)."""
    return largest_request(read_configs(repository).values(), str(repository))


def largest_request(configs: Iterable[pb.ModelConfig], where: str = "the repository") -> int:
    """The largest request any of ``configs`` accepts, plus framing.

    A model that takes encoded images accepts one of up to its ``max_bytes`` parameter; a model that takes
    fixed-shape tensors, a full batch of them. A request of several images shares the cap.
    """
    largest = 0
    for config in configs:
        batch = max(1, config.max_batch_size)
        tensors = 0
        for tensor in config.input:
            dtype = pb.DataType.Name(tensor.data_type)
            if dtype == "TYPE_STRING":
                largest = max(largest, _image_bytes(parameters_of(config)))
            elif all(dim > 0 for dim in tensor.dims):
                tensors += batch * math.prod(tensor.dims) * _DTYPE_BYTES.get(dtype, 8)
        largest = max(largest, tensors)
    if largest == 0:
        raise ValueError(f"{where}: no model input bounds a request; give the cap (--max-request-bytes)")
    return largest + REQUEST_OVERHEAD_BYTES


def _image_bytes(parameters: dict[str, str]) -> int:
    """The largest encoded image a model decodes (its preprocess settings), 0 for one that only passes images on."""
    try:
        return PreprocessSettings.from_parameters(parameters).max_bytes
    except ValueError:  # an ensemble: its preprocess step says it
        return 0


def nginx_conf(config: FrontConfig, workdir: Path) -> str:
    """nginx.conf of the front: :data:`TEMPLATE` filled in; its pid file and temporary folders go in ``workdir``.

    The config is a file of its own, so that it reads as nginx config; only the values and the TLS lines are code.
    """
    public, triton = config.public, config.triton
    tls, client_errors = _tls_lines(config.tls)
    template = string.Template(resources.files("yolo_server.launcher").joinpath(TEMPLATE).read_text())
    return template.substitute(
        open_files=config.open_files,
        worker_connections=config.open_files - 32,
        workdir=workdir,
        max_request_bytes=config.max_request_bytes,
        triton_host=triton.host,
        triton_grpc=triton.grpc,
        triton_http=triton.http,
        triton_metrics=triton.metrics,
        grpc_listen=_address(public.host, public.grpc) + (" ssl" if config.tls else ""),
        grpc_tls=tls,
        grpc_client_errors=client_errors,
        upstream_timeout_s=UPSTREAM_TIMEOUT_S,
        too_large=f"request larger than the {config.cap_text} cap of this server",
        http_listen=_address(config.http_host or public.host, public.http),
        metrics_listen=_address(public.host, public.metrics),
    )


def _tls_lines(tls: TlsFiles | None) -> tuple[str, str]:
    """The gRPC server's TLS directives, and its answer to a client certificate missing or refused (a client CA
    only), each line led by a newline and indented as the template places them."""
    if tls is None:
        return "", ""
    directives = [f"ssl_certificate {Path(tls.cert).resolve()};", f"ssl_certificate_key {Path(tls.key).resolve()};",
                  "ssl_protocols TLSv1.2 TLSv1.3;"]  # fmt: skip
    client_errors = ""
    if tls.client_ca is not None:
        directives += [f"ssl_client_certificate {Path(tls.client_ca).resolve()};", "ssl_verify_client on;"]
        # 495: a certificate that does not verify, 496: none sent (nginx's own codes, before any proxying)
        client_errors = "\n        error_page 495 496 = @unauthenticated;"
    return "".join(f"\n        {line}" for line in directives), client_errors


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reachable(host: str, port: int) -> str:
    """``host:port`` where this machine reaches a port listening on ``host`` (a wildcard: through loopback)."""
    return f"{LOOPBACK if host in ('0.0.0.0', '::', '') else host}:{port}"


def find_nginx() -> Path:
    """The nginx binary (PATH, then /usr/sbin, where Debian puts it and a non-root PATH may not look)."""
    found = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found is None:
        raise FileNotFoundError(
            "nginx not found: yolo-server serve puts it in front of Triton to cap request sizes (README: "
            f"'When things go wrong'). Install it (Debian/Ubuntu: apt-get install {NGINX_PACKAGE}; `make serve` "
            "does), or pass --no-front to expose Triton's own ports, uncapped"
        )
    return Path(found)
