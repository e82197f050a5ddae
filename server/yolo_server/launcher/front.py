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
    >>> front = NginxFront(config, workdir)
    >>> front.start()
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as pb

from yolo_server.launcher.access import TlsFiles
from yolo_server.launcher.installation import die_with_parent
from yolo_server.launcher.staging import parameters_of, read_configs
from yolo_server.triton.settings import PreprocessSettings

NGINX_PACKAGE = "nginx"  # Debian and Ubuntu (the images and `make serve` install it)
REQUEST_OVERHEAD_BYTES = 1 << 20  # a request's protobuf framing and metadata beyond its tensors
UPSTREAM_TIMEOUT_S = 300  # nginx's wait for Triton between two reads or writes; clients keep their own deadlines
MAX_OPEN_FILES = 65536  # the front's own ceiling; each request in flight holds two (client and Triton side)
_GRPC_RESOURCE_EXHAUSTED, _GRPC_UNAUTHENTICATED, _GRPC_UNAVAILABLE = 8, 16, 14
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
    """nginx.conf of the front; its pid file and temporary folders go in ``workdir``."""
    public, triton, cap = config.public, config.triton, config.max_request_bytes
    too_large = f"request larger than the {config.cap_text} cap of this server"
    grpc_tls, grpc_errors = "", ""
    if config.tls is not None:
        grpc_tls = (
            f"        ssl_certificate {Path(config.tls.cert).resolve()};\n"
            f"        ssl_certificate_key {Path(config.tls.key).resolve()};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        )
        if config.tls.client_ca is not None:
            grpc_tls += (
                f"        ssl_client_certificate {Path(config.tls.client_ca).resolve()};\n"
                "        ssl_verify_client on;\n"
            )
            # 495: a certificate that does not verify, 496: none sent (nginx's own codes, before any proxying)
            grpc_errors = "        error_page 495 496 = @unauthenticated;\n"
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# Generated by yolo-server serve (yolo_server.launcher.front) for this run only.
worker_processes 1;
worker_rlimit_nofile {config.open_files};
error_log stderr warn;
pid {workdir / "nginx.pid"};

events {{
    worker_connections {config.open_files - 32};  # client and Triton sides together; the rest: listeners, logs
}}

http {{
    access_log off;
{temp}
    client_max_body_size {cap};

    upstream triton_grpc {{
        server {triton.host}:{triton.grpc};
        keepalive 64;
    }}
    upstream triton_http {{
        server {triton.host}:{triton.http};
        keepalive 16;
    }}

    # gRPC: bodies stream through (nginx never buffers gRPC), and stop at the cap as they arrive
    server {{
        listen {_address(public.host, public.grpc)}{" ssl" if config.tls else ""} http2;
{grpc_tls}        error_page 413 = @too_large;
        error_page 502 503 504 = @unavailable;
{grpc_errors}
        location / {{
            grpc_pass grpc://triton_grpc;
            grpc_read_timeout {UPSTREAM_TIMEOUT_S}s;
            grpc_send_timeout {UPSTREAM_TIMEOUT_S}s;
            grpc_socket_keepalive on;
        }}
        # gRPC statuses in a trailers-only answer (HTTP 200, Content-Length 0), as every gRPC client reads them
{_grpc_status("too_large", _GRPC_RESOURCE_EXHAUSTED, too_large)}
{_grpc_status("unavailable", _GRPC_UNAVAILABLE, "tritonserver is not answering behind the front")}
{_grpc_status("unauthenticated", _GRPC_UNAUTHENTICATED, "a client certificate from the server's client CA is required")}
    }}

    # HTTP/REST: bodies stream through too; answers are not written to disk
    server {{
        listen {_address(config.http_host or public.host, public.http)};
        error_page 413 = @too_large;
        location / {{
            proxy_pass http://triton_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout {UPSTREAM_TIMEOUT_S}s;
            proxy_send_timeout {UPSTREAM_TIMEOUT_S}s;
        }}
        location @too_large {{
            default_type application/json;
            return 413 '{{"error":"{too_large}"}}';
        }}
    }}

    # metrics: Prometheus' GETs
    server {{
        listen {_address(public.host, public.metrics)};
        client_max_body_size 16k;
        location / {{
            proxy_pass http://{triton.host}:{triton.metrics};
        }}
    }}
}}
"""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _grpc_status(name: str, code: int, message: str) -> str:
    return (
        f"        location @{name} {{\n"
        "            default_type application/grpc;\n"
        f"            add_header grpc-status {code} always;\n"
        f'            add_header grpc-message "{message}" always;\n'
        '            return 200 "";\n'
        "        }"
    )


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


class NginxFront:
    """Owns the nginx process of one front: start, poll, graceful quit, kill."""

    def __init__(self, config: FrontConfig, workdir: Path, binary: Path | None = None) -> None:
        self.config = config
        self.workdir = workdir
        self.binary = binary or find_nginx()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def argv(self) -> list[str]:
        conf = self.workdir / "nginx.conf"
        # -e: the log nginx opens before it reads the config (the compiled-in /var/log/nginx may not be writable)
        return [str(self.binary), "-e", "stderr", "-p", str(self.workdir), "-c", str(conf), "-g", "daemon off;"]

    def start(self) -> None:
        """Write the config and start nginx in the foreground (its errors go to this process' stderr)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "nginx.conf").write_text(nginx_conf(self.config, self.workdir))
        self._process = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, process_group=0, preexec_fn=die_with_parent
        )

    def poll(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def quit(self) -> None:
        """SIGQUIT: stop accepting, finish what is in flight, exit."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGQUIT)

    def stop(self, timeout_s: float) -> int | None:
        """Quit gracefully within ``timeout_s``, else kill."""
        if self._process is None:
            return None
        self.quit()
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL the master and its workers (their process group)."""
        if self._process is None:
            return None
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self._process.wait(30)
