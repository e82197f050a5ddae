"""What to run: :class:`ServeOptions` for one model repository, and the tritonserver argv they become.

Example:
    >>> options = ServeOptions(Path("model_repository"), grpc_port=8001)
    >>> argv = tritonserver_argv(options, Path("/opt/tritonserver/bin/tritonserver"), Access("k" * 16), "yolo_")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolo_client.contract import GRPC_PORT, HTTP_PORT, METRICS_PORT
from yolo_server.triton.access import Access
from yolo_server.triton.supervise import Supervision


@dataclass(frozen=True)
class ServeOptions:
    """How to run Triton on one model repository (ports 0 are not allowed: Triton needs them fixed)."""

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = HTTP_PORT
    grpc_port: int = GRPC_PORT
    metrics_port: int = METRICS_PORT
    exit_timeout_s: int = 30
    ready_timeout_s: float = 600.0
    shm_default_bytes: int = 32 << 20  # per Python model instance; grows by shm_growth_bytes
    shm_growth_bytes: int = 32 << 20
    log_verbose: int = 0
    access: Access | None = None  # None: admin APIs behind a random key nobody knows, no TLS
    supervision: Supervision = Supervision()
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoints:
    """Where clients reach a running server: gRPC and HTTP as ``host:port``, metrics as a URL."""

    http: str
    grpc: str
    metrics: str


def tritonserver_argv(
    options: ServeOptions,
    binary: Path,
    access: Access,
    shm_prefix: str,
    http_host: str | None = None,
    backend_directory: Path | None = None,
) -> list[str]:
    """tritonserver's argv; ``http_host`` defaults to what ``access`` makes of ``options.host``."""
    o = options
    http_host = access.http_host(o.host) if http_host is None else http_host
    argv = [
        str(binary),
        f"--model-repository={Path(o.repository).resolve()}",
        "--model-control-mode=none",
        "--strict-readiness=true",  # ready only once every model is, which wait_ready relies on
        "--exit-on-error=true",
        "--disable-auto-complete-config",
        f"--http-address={http_host}",
        f"--http-port={o.http_port}",
        f"--grpc-address={o.host}",
        f"--grpc-port={o.grpc_port}",
        "--allow-metrics=true",
        f"--metrics-address={o.host}",
        f"--metrics-port={o.metrics_port}",
        "--metrics-config=summary_latencies=true",
        f"--exit-timeout-secs={o.exit_timeout_s}",
        f"--log-verbose={o.log_verbose}",
        f"--backend-config=python,shm-default-byte-size={o.shm_default_bytes}",
        f"--backend-config=python,shm-growth-byte-size={o.shm_growth_bytes}",
        # a per-process prefix, so that kill() can remove exactly the regions this server left behind
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        *access.tritonserver_args(),
    ]
    if backend_directory is not None:
        argv.append(f"--backend-directory={backend_directory}")
    return argv + list(o.extra_args)
