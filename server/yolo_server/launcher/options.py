"""What to run: :class:`ServeOptions` for one model repository, and the tritonserver argv they become.

Example:
    >>> options = ServeOptions(Path("model_repository"), grpc_port=8001)
    >>> triton = Ports("127.0.0.1", 18000, 18001, 18002)
    >>> argv = tritonserver_argv(options, Path("/opt/tritonserver/bin/tritonserver"), Access("k" * 16), "yolo_", triton)
    >>> # serve runs the repository staged for this machine (launcher.staging): tritonserver_argv(..., repository=staged)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolo_client.contract import GRPC_PORT, HTTP_PORT, METRICS_PORT
from yolo_server.flags import flag, nested
from yolo_server.launcher.access import Access
from yolo_server.launcher.front import Ports
from yolo_server.launcher.supervise import Supervision

# Triton keeps this many gRPC request objects for reuse, each holding the buffers of the largest request it
# carried (protobuf keeps capacity): at its default of 8, requests near the cap left Triton ~400 MiB larger for
# good (bench/bench_oversized.py). 0 frees each request's buffers with it.
GRPC_REQUEST_POOL_SIZE = 0


@dataclass(frozen=True)
class ServeOptions:
    """How to run Triton on one model repository (ports 0 are not allowed: Triton needs them fixed).

    ``front``: nginx listens on ``host`` and the ports, capping each request at ``max_request_bytes`` (None: the
    repository's largest request, :func:`~yolo_server.launcher.front.request_cap`), and Triton on loopback only
    behind it. Without it Triton listens there itself, uncapped.
    """

    repository: Path = flag("repository", "model repository", parse=Path, kind="positional", by_hand=True)
    # a container's: HOST defaults to all its addresses (docker/entrypoint.sh); with host networking (several
    # servers on one host) the ports are set too
    host: str = flag("--host", "bind address of all endpoints", default="127.0.0.1")
    http_port: int = flag("--http-port", "HTTP endpoint", default=HTTP_PORT, parse=int)
    grpc_port: int = flag("--grpc-port", "gRPC endpoint", default=GRPC_PORT, parse=int)
    metrics_port: int = flag("--metrics-port", "Prometheus metrics endpoint", default=METRICS_PORT, parse=int)
    exit_timeout_s: int = flag(
        "--exit-timeout", "seconds to drain in-flight requests on SIGTERM (keep it under the stop grace period)",
        default=30, parse=int,
    )  # fmt: skip
    ready_timeout_s: float = flag("--ready-timeout", "seconds to wait for every model", default=600.0, parse=float)
    shm_default_bytes: int = flag(
        "--shm-bytes", "Python-backend shared memory per instance (/dev/shm) and its growth step",
        default=32 << 20, parse=int,
    )  # fmt: skip
    shm_growth_bytes: int | None = None  # None: shm_default_bytes
    log_verbose: int = flag("--log-verbose", "Triton's log verbosity", default=0, parse=int)
    access: Access | None = nested(None)  # None: admin APIs behind a random key nobody knows, no TLS
    supervision: Supervision = nested(default_factory=Supervision)
    front: bool = flag(
        "--front", "nginx on the ports clients reach, capping request sizes, with tritonserver on loopback behind it "
        "(--no-front: tritonserver's own ports, uncapped: put a capping proxy in front yourself)", default=True,
        kind="toggle", variable=None,  # always on in a container: Triton itself has no request cap
    )  # fmt: skip
    max_request_bytes: int | None = flag(
        "--max-request-bytes", "the front's cap on one request (default: the largest request the repository's "
        "models accept)", default=None, parse=int,
    )  # fmt: skip
    tuning: Path | None = flag(
        "--tuning", "settings `yolo-server tune` chose, applied whatever machine they were measured on (default: "
        "the repository's tuning.json where it was measured on the same CPUs and ISA as this machine)", default=None,
        parse=Path, metavar="FILE", in_models=True,
    )  # fmt: skip
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
    listen: Ports,
    backend_directory: Path | None = None,
    repository: Path | None = None,
) -> list[str]:
    """tritonserver's argv, listening on ``listen``; with TLS flags only without a front (else TLS ends there).

    ``repository``: what Triton loads, the staged copy of ``options.repository`` (:mod:`.staging`), else that.
    """
    o = options
    argv = [
        str(binary),
        f"--model-repository={Path(repository or o.repository).resolve()}",
        "--model-control-mode=none",
        "--strict-readiness=true",  # ready only once every model is, which wait_ready relies on
        "--exit-on-error=true",
        "--disable-auto-complete-config",
        f"--http-address={listen.host if o.front else access.http_host(listen.host)}",
        f"--http-port={listen.http}",
        f"--grpc-address={listen.host}",
        f"--grpc-port={listen.grpc}",
        f"--grpc-infer-allocation-pool-size={GRPC_REQUEST_POOL_SIZE}",
        "--allow-metrics=true",
        f"--metrics-address={listen.host}",
        f"--metrics-port={listen.metrics}",
        "--metrics-config=summary_latencies=true",
        f"--exit-timeout-secs={o.exit_timeout_s}",
        f"--log-verbose={o.log_verbose}",
        f"--backend-config=python,shm-default-byte-size={o.shm_default_bytes}",
        f"--backend-config=python,shm-growth-byte-size={o.shm_growth_bytes or o.shm_default_bytes}",
        # a per-process prefix, so that kill() can remove exactly the regions this server left behind
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        *access.restricted_args(),
        *([] if o.front else access.tls_args()),
    ]
    if backend_directory is not None:
        argv.append(f"--backend-directory={backend_directory}")
    return argv + list(o.extra_args)
