"""``yolo-server serve``: find tritonserver, build its argv and environment, run it, wait ready, drain.

The binary comes from ``$TRITONSERVER_BIN``, else ``tritonserver`` on ``PATH``
(the NGC container), else the one bundled in the ``nvidia-pytriton`` wheel.
The wheel keeps one Python-backend stub per Python version; it is linked
beside ``libtriton_python.so`` in a private backend directory for this run.

Example:
    >>> with TritonServer(ServeOptions(Path("model_repository"), grpc_port=8001)) as server:
    ...     server.wait_ready()
    ...     print(server.endpoints.grpc)
"""

from __future__ import annotations

import collections
import ctypes
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Sequence

from yolo_server.triton.access import LOOPBACK, Access, read_admin_key
from yolo_server.triton.canary import image_ensembles, server_ready
from yolo_server.triton.supervise import FAULT_EXIT_CODE, STUB_NAME, Supervision, Supervisor

WHEEL_PACKAGE = "pytriton"
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


class TritonError(RuntimeError):
    """tritonserver could not start or exited; the message carries Triton's own error lines."""


@dataclass(frozen=True)
class ServeOptions:
    """How to run Triton on one model repository (ports 0 are not allowed: Triton needs them fixed)."""

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
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
    http: str
    grpc: str
    metrics: str


@dataclass(frozen=True)
class TritonInstallation:
    """A tritonserver binary; ``python_backend`` and ``stub`` are set for the pytriton wheel."""

    binary: Path
    python_backend: Path | None = None
    stub: Path | None = None
    library_dirs: tuple[Path, ...] = ()


def find_tritonserver() -> TritonInstallation:
    """``$TRITONSERVER_BIN``, then ``tritonserver`` on PATH, then the pytriton wheel's."""
    explicit = os.environ.get("TRITONSERVER_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise TritonError(f"TRITONSERVER_BIN={explicit} is not an executable file")
        return _wheel_installation(Path(explicit)) or TritonInstallation(Path(explicit))
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstallation(Path(on_path))
    import importlib.util

    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TritonError("no tritonserver: set TRITONSERVER_BIN, use the NGC container, or pip install nvidia-pytriton")
    binary = Path(list(spec.submodule_search_locations)[0]) / "tritonserver" / "bin" / "tritonserver"
    installation = _wheel_installation(binary)
    if installation is None:
        raise TritonError(f"the pytriton package has no tritonserver binary at {binary}")
    return installation


def _wheel_installation(binary: Path) -> TritonInstallation | None:
    """The wheel layout around ``binary`` (…/pytriton/tritonserver/bin/tritonserver), if it is one."""
    root = binary.resolve().parent.parent
    backend = root / "backends" / "python"
    if not (binary.is_file() and (backend / "libtriton_python.so").is_file()):
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / STUB_NAME
    if not stub.is_file():
        raise TritonError(f"the pytriton wheel has no Python-backend stub for Python {version} ({stub})")
    return TritonInstallation(binary, backend, stub, (root.parent.parent / "nvidia_pytriton.libs",))


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports on ``host`` (held open together so they differ; tests, benchmarks)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def python_paths() -> list[str]:
    """What the Python models must import: this interpreter's site-packages and the yolo packages' roots.

    Editable installs are found through ``.pth`` hooks that ``PYTHONPATH`` entries
    do not run, so the package roots are listed explicitly.
    """
    import yolo_client
    import yolo_server

    roots = [str(Path(module.__file__).resolve().parent.parent) for module in (yolo_server, yolo_client)]
    return list(dict.fromkeys([*roots, *site.getsitepackages()]))


class TritonServer:
    """Owns one tritonserver process: start, wait until every model is ready, stop (drain)."""

    def __init__(self, options: ServeOptions, installation: TritonInstallation | None = None) -> None:
        self.options = options
        self.installation = installation or find_tritonserver()
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_tail: collections.deque[str] = collections.deque(maxlen=400)
        self._pump: threading.Thread | None = None
        self.access = options.access or Access(read_admin_key(None))
        self.shm_prefix = f"yolo_server_{os.getpid()}_{id(self):x}_"

    @property
    def http_host(self) -> str:
        return self.access.http_host(self.options.host)

    @property
    def endpoints(self) -> Endpoints:
        o = self.options
        return Endpoints(f"{self.http_host}:{o.http_port}", f"{o.host}:{o.grpc_port}", f"http://{o.host}:{o.metrics_port}/metrics")

    @property
    def local_http(self) -> str:
        """``host:port`` where this machine reaches the HTTP endpoint (the canary's and readiness' way in)."""
        host = self.http_host
        return f"{LOOPBACK if host in ('0.0.0.0', '::', '') else host}:{self.options.http_port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def command(self, backend_directory: Path | None = None) -> list[str]:
        """tritonserver argv."""
        o = self.options
        argv = [
            str(self.installation.binary),
            f"--model-repository={Path(o.repository).resolve()}",
            "--model-control-mode=none",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--disable-auto-complete-config",
            f"--http-address={self.http_host}",
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
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *self.access.tritonserver_args(),
        ]
        if backend_directory is not None:
            argv.append(f"--backend-directory={backend_directory}")
        return argv + list(o.extra_args)

    def environment(self) -> dict[str, str]:
        """The child's environment: libpython and wheel libraries on LD_LIBRARY_PATH, our packages on PYTHONPATH."""
        env = dict(os.environ)
        libdirs = [str(d) for d in self.installation.library_dirs]
        libdir = sysconfig.get_config_var("LIBDIR")
        if libdir:
            libdirs.append(libdir)
        env["LD_LIBRARY_PATH"] = _join([*libdirs, env.get("LD_LIBRARY_PATH", "")])
        env["PYTHONPATH"] = _join([*python_paths(), env.get("PYTHONPATH", "")])
        env["PATH"] = _join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def _backend_directory(self) -> Path | None:
        """For the wheel: a private backends/python with the stub beside libtriton_python.so."""
        inst = self.installation
        if inst.python_backend is None or inst.stub is None:
            return None
        self._workdir = Path(tempfile.mkdtemp(prefix="yolo-server-triton-"))
        python_dir = self._workdir / "backends" / "python"
        python_dir.mkdir(parents=True)
        for name in PYTHON_BACKEND_FILES:
            (python_dir / name).symlink_to(inst.python_backend / name)
        (python_dir / STUB_NAME).symlink_to(inst.stub)
        return self._workdir / "backends"

    def start(self, stream: IO[str] | None = sys.stdout) -> None:
        """Start tritonserver; its output goes to ``stream`` (and a tail is kept for error messages)."""
        if self._process is not None:
            raise TritonError(f"tritonserver already started (pid {self._process.pid})")
        self._process = subprocess.Popen(
            self.command(self._backend_directory()),
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            process_group=0,  # a terminal's Ctrl-C reaches only us; we forward it once
            preexec_fn=_die_with_parent,
        )
        self._pump = threading.Thread(target=self._copy_output, args=(stream,), daemon=True)
        self._pump.start()

    def _copy_output(self, stream: IO[str] | None) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.decode("utf-8", errors="replace")
            self._log_tail.append(line)
            if stream is not None:
                stream.write(line)
                stream.flush()

    def error_text(self) -> str:
        """Triton's own error lines from its output (glog ``E…`` lines, model status, ``error:``)."""
        self._join_output(timeout=5)
        lines = [
            line.rstrip()
            for line in self._log_tail
            if line[:1] == "E" and line[1:2].isdigit() or "UNAVAILABLE" in line or line.startswith("error:")
        ]
        return "\n".join(lines or [line.rstrip() for line in list(self._log_tail)[-20:]])

    def _join_output(self, timeout: float) -> None:
        if self._pump is not None:
            self._pump.join(timeout)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until the server and every model in the repository are ready.

        Raises:
            TritonError: tritonserver exited (with its error text) or the timeout passed.
        """
        timeout_s = timeout_s if timeout_s is not None else self.options.ready_timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.poll()
            if code is not None:
                raise TritonError(f"tritonserver exited with code {code}:\n{self.error_text()}")
            if time.monotonic() > deadline:
                raise TritonError(f"tritonserver not ready after {timeout_s}s:\n{self.error_text()}")
            # --strict-readiness: ready only once every model in the repository is
            if server_ready(self.local_http, timeout_s=2.0):
                return
            time.sleep(0.5)

    def poll(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def signal(self, signum: int) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for tritonserver to exit; returns its exit code."""
        if self._process is None:
            raise TritonError("tritonserver was not started")
        code = self._process.wait(timeout_s)
        self._join_output(timeout=5)
        return code

    def kill(self) -> int | None:
        """SIGKILL tritonserver's process group (its stubs too) and remove the shared memory it leaves."""
        code = None
        if self._process is not None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = self.wait(30)
        for leftover in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            leftover.unlink(missing_ok=True)
        return code

    def stop(self) -> int | None:
        """SIGTERM (Triton drains in-flight requests for up to exit_timeout_s), then SIGKILL; cleans up.

        Triton 2.51 stops every model from taking new requests at SIGTERM, the ensembles' composing models
        included: an ensemble request caught between two steps is answered UNAVAILABLE ("Server is stopping"),
        which clients retry on another replica. Deployments take the replica out of rotation first (the k8s
        preStop delay), so that nothing is in flight by then.
        """
        code = None
        if self._process is not None:
            self.signal(signal.SIGTERM)
            try:
                code = self.wait(self.options.exit_timeout_s + 15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                code = self.wait(30)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def __enter__(self) -> "TritonServer":
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def serve(options: ServeOptions) -> int:
    """Run until SIGTERM/SIGINT (forwarded to Triton for a graceful drain); returns the exit code."""
    server = TritonServer(options)
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        server.signal(signum if len(received) == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        try:
            server.wait_ready()
        except TritonError as exc:
            if not received:
                print(f"yolo-server serve: {exc}", file=sys.stderr, flush=True)
                server.stop()
                return 1
        else:
            _print_endpoints(server)
            fault = _supervise(server, options.supervision, received)
            if fault is not None:
                print(f"yolo-server serve: {fault}; stopping tritonserver (exit {FAULT_EXIT_CODE})", file=sys.stderr, flush=True)
                server.kill()
                return FAULT_EXIT_CODE
        code = server.wait()
        if code != 0 and not received:
            print(f"yolo-server serve: tritonserver exited with code {code}:\n{server.error_text()}", file=sys.stderr)
        return code
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _supervise(server: TritonServer, supervision: Supervision, received: list[int]) -> str | None:
    """Check the running server until it exits or a signal arrives; returns the fault that ended it, if any."""
    if not supervision.enabled or server.pid is None:
        return None
    models = image_ensembles(server.options.repository)
    supervisor = Supervisor(server.pid, server.local_http, models, supervision)
    print(f"yolo-server: supervising {len(supervisor.stubs)} Python-backend stubs, canary {', '.join(models)}", flush=True)
    while server.poll() is None and not received:
        fault = supervisor.check()
        if fault is not None and not received:  # a drain stops the stubs: that is no fault
            return fault
        try:
            server.wait(supervision.check_interval_s)
        except subprocess.TimeoutExpired:
            pass
    return None


def _print_endpoints(server: TritonServer) -> None:
    e = server.endpoints
    print(
        f"yolo-server: all models ready (tritonserver pid {server.pid})\n"
        f"  gRPC     {e.grpc}\n  HTTP     http://{e.http}\n  metrics  {e.metrics}",
        flush=True,
    )


def _join(parts: Sequence[str]) -> str:
    return os.pathsep.join(part for part in parts if part)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the launching process dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
