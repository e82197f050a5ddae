"""One server: tritonserver and its nginx front; start them, wait until every model is ready, stop (drain), kill.

Example:
    >>> with TritonServer(ServeOptions(Path("model_repository"), grpc_port=8001)) as server:
    ...     server.wait_ready()
    ...     print(server.endpoints.grpc)
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

from yolo_server.launcher.access import LOOPBACK, Access, read_admin_key
from yolo_server.launcher.canary import server_ready
from yolo_server.launcher.front import FrontConfig, NginxFront, Ports, find_nginx, largest_request
from yolo_server.launcher.installation import (
    TritonError,
    TritonInstallation,
    backend_directory,
    child_environment,
    die_with_parent,
    find_tritonserver,
)
from yolo_server.launcher.options import Endpoints, ServeOptions, tritonserver_argv
from yolo_server.launcher.ports import free_ports
from yolo_server.launcher.staging import plan_serving


class ServerProcess(Protocol):
    """What :class:`TritonServer` uses of its child: a ``subprocess.Popen[bytes]`` with stdout piped."""

    @property
    def pid(self) -> int: ...

    @property
    def stdout(self) -> IO[bytes] | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


def shm_prefix(launcher_pid: int) -> str:
    """How the Python-backend shared-memory regions of every server a launcher starts begin."""
    return f"yolo_server_{launcher_pid}_"


def workdir_prefix(launcher_pid: int) -> str:
    """How the work directories (backend directory, front config) of a launcher's servers begin."""
    return f"yolo-server-triton-{launcher_pid}-"


# argv, environment -> the started process
Spawn = Callable[[list[str], dict[str, str]], ServerProcess]


def spawn_tritonserver(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start tritonserver in its own process group, output piped, killed when this process dies."""
    return subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        process_group=0,  # a terminal's Ctrl-C reaches only us; we forward it once
        preexec_fn=die_with_parent,
    )


class TritonServer:
    """Owns one tritonserver process and its front: start, wait until every model is ready, stop (drain).

    With ``options.front``, nginx (:mod:`.front`) listens where the options say and tritonserver on free loopback
    ports behind it; without, tritonserver listens there itself. ``spawn`` starts tritonserver from its argv and
    environment (:func:`spawn_tritonserver`; tests pass a fake). Triton runs :attr:`plan`, the repository sized
    and tuned for this machine (:func:`~yolo_server.launcher.staging.plan_serving`), staged in the work directory.
    """

    def __init__(
        self,
        options: ServeOptions,
        installation: TritonInstallation | None = None,
        spawn: Spawn = spawn_tritonserver,
    ) -> None:
        self.options = options
        self.plan = plan_serving(options.repository, tuning=options.tuning)
        self._staged: Path | None = None
        self.installation = installation or find_tritonserver()
        self._spawn = spawn
        self._process: ServerProcess | None = None
        self._workdir: Path | None = None
        self._log_tail: collections.deque[str] = collections.deque(maxlen=400)
        self._pump: threading.Thread | None = None
        self.access = options.access or Access(read_admin_key(None))
        self.shm_prefix = f"{shm_prefix(os.getpid())}{id(self):x}_"
        o = options
        self.public = Ports(o.host, o.http_port, o.grpc_port, o.metrics_port)
        public_ports = (o.http_port, o.grpc_port, o.metrics_port)
        self.triton_ports = Ports(LOOPBACK, *free_ports(3, exclude=public_ports)) if o.front else self.public
        self._nginx = find_nginx() if o.front else None  # missing: said before anything starts
        self._front: NginxFront | None = None

    @property
    def http_host(self) -> str:
        return self.access.http_host(self.options.host)

    @property
    def endpoints(self) -> Endpoints:
        o = self.options
        return Endpoints(
            f"{self.http_host}:{o.http_port}", f"{o.host}:{o.grpc_port}", f"http://{o.host}:{o.metrics_port}/metrics"
        )

    @property
    def local_http(self) -> str:
        """``host:port`` where this machine reaches the HTTP endpoint (the canary's and readiness' way in)."""
        host = self.http_host
        return f"{LOOPBACK if host in ('0.0.0.0', '::', '') else host}:{self.options.http_port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def front(self) -> NginxFront | None:
        return self._front

    def command(self, backend_directory: Path | None = None) -> list[str]:
        """tritonserver argv."""
        return tritonserver_argv(
            self.options,
            self.installation.binary,
            self.access,
            self.shm_prefix,
            self.triton_ports,
            backend_directory,
            self._staged,
        )

    def front_config(self) -> FrontConfig:
        """What the front listens on and caps (the largest request the staged models accept unless the options give
        a cap)."""
        configs = self.plan.staged_configs.values()
        cap = self.options.max_request_bytes or largest_request(configs, str(self.options.repository))
        return FrontConfig(self.public, self.triton_ports, cap, self.access.tls, self.http_host)

    def environment(self) -> dict[str, str]:
        """The child's environment (see :func:`child_environment`)."""
        return child_environment(self.installation)

    def _backend_directory(self) -> Path | None:
        """For the wheel: a private backends/python with the stub beside libtriton_python.so."""
        if self._workdir is None or self.installation.python_backend is None or self.installation.stub is None:
            return None
        return backend_directory(self.installation, self._workdir)

    def start(self, stream: IO[str] | None = sys.stdout) -> None:
        """Start tritonserver; its output goes to ``stream`` (and a tail is kept for error messages)."""
        if self._process is not None:
            raise TritonError(f"tritonserver already started (pid {self._process.pid})")
        # stop() removes it; the pid in the name tells whose it is after a crash
        self._workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix(os.getpid())))
        self._staged = self.plan.stage(self._workdir / "models")
        if self._nginx is not None:
            self._front = NginxFront(self.front_config(), self._workdir / "front", self._nginx)
            self._front.start()
        self._process = self._spawn(self.command(self._backend_directory()), self.environment())
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
        # a separate name, so that the message always gives the limit actually used, never "None"
        limit_s = self.options.ready_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit_s
        while True:
            code = self.poll()
            if code is not None:
                raise TritonError(f"tritonserver exited with code {code}:\n{self.error_text()}")
            fault = self.front_fault()
            if fault is not None:
                raise TritonError(f"{fault} (its errors are above)")
            if time.monotonic() > deadline:
                raise TritonError(f"tritonserver not ready after {limit_s}s:\n{self.error_text()}")
            # --strict-readiness: ready only once every model in the repository is
            if server_ready(self.local_http, timeout_s=2.0):
                return
            time.sleep(0.5)

    def poll(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def front_fault(self) -> str | None:
        """Why the front is gone while tritonserver runs, or None."""
        if self._front is None or (code := self._front.poll()) is None:
            return None
        return f"the nginx front (pid {self._front.pid}) exited with code {code}"

    def signal(self, signum: int) -> None:
        """``signum`` to tritonserver; the front quits gracefully (SIGKILL: at once)."""
        if self._front is not None and signum == signal.SIGKILL:
            self._front.kill()
        elif self._front is not None:
            self._front.quit()
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
        """SIGKILL tritonserver's process group (its stubs too) and the front; remove the shared memory left."""
        code = None
        if self._front is not None:
            self._front.kill()
        if self._process is not None:
            self._kill_group()
            code = self.wait(30)
        self._remove_leftovers()
        return code

    def _kill_group(self) -> None:
        """SIGKILL tritonserver's process group: itself and its stubs, which run in its group."""
        assert self._process is not None
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _remove_leftovers(self) -> None:
        for leftover in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            leftover.unlink(missing_ok=True)

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
            # a stub whose unload outlived Triton's exit timeout stays behind it, in its group, with its shared
            # memory (seen under load): nothing of this server may outlive stop()
            self._kill_group()
            self._remove_leftovers()
        if self._front is not None:
            self._front.stop(timeout_s=15)  # asked to quit with the SIGTERM above: its requests have answers now
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


@contextmanager
def loopback_server(repository: Path, stream: IO[str] | None = None, **options: Any) -> Iterator[TritonServer]:
    """A ready :class:`TritonServer` on ``repository`` on free loopback ports until the block ends, with
    ``options`` (:class:`ServeOptions` fields) on top; its output goes to ``stream`` (``tune``'s trials, the benches).
    """
    http, grpc, metrics = free_ports(3)
    server = TritonServer(ServeOptions(repository, http_port=http, grpc_port=grpc, metrics_port=metrics, **options))
    try:
        server.start(stream=stream)
        server.wait_ready()
        yield server
    finally:
        server.stop()
