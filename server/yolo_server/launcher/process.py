"""The tritonserver process of one server: start it, wait until every model is ready, stop (drain), kill.

The nginx front before it is a process of its own (:class:`~yolo_server.launcher.front_process.Front`); ``serve``
composes the two (:class:`~yolo_server.launcher.launch.Serving`). Here the front shows only as where Triton
listens: with ``options.front``, on free loopback ports behind it.

Example:
    >>> with TritonServer(ServeOptions(Path("model_repository"), grpc_port=8001, front=False)) as server:
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
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

from yolo_server.launcher.access import LOOPBACK, Access, read_admin_key
from yolo_server.launcher.canary import server_ready
from yolo_server.launcher.front import Ports, reachable
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


class InContext:
    """``with`` starts it and stops it, whatever happens inside."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> int | None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


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
    """How the work directories of a launcher's processes begin (tritonserver's staged models and backend
    directory, the front's config)."""
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


class TritonServer(InContext):
    """Owns one tritonserver process: start, wait until every model is ready, signals, stop (drain), kill.

    With ``options.front``, tritonserver listens on free loopback ports (:attr:`triton_ports`) behind the front,
    which listens where the options say (:class:`~yolo_server.launcher.front_process.Front`, started by whoever
    composes the two); without, tritonserver listens there itself. ``spawn`` starts tritonserver from its argv and
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
        """``host:port`` where this machine reaches the HTTP endpoint clients use (the canary's way in; the front's
        with one)."""
        return reachable(self.http_host, self.options.http_port)

    @property
    def triton_http(self) -> str:
        """``host:port`` where this machine reaches tritonserver's own HTTP endpoint (its readiness' way in)."""
        return reachable(self.triton_ports.host, self.triton_ports.http) if self.options.front else self.local_http

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

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

    def wait_ready(self, timeout_s: float | None = None, fault: Callable[[], str | None] = lambda: None) -> None:
        """Block until tritonserver and every model in the repository are ready, on tritonserver's own HTTP port.

        ``fault``: why a process the server's clients depend on (its front) is gone, or None: once it is, no
        client would reach the server, so waiting ends.

        Raises:
            TritonError: tritonserver exited (with its error text), ``fault`` gave one, or the timeout passed.
        """
        # a separate name, so that the message always gives the limit actually used, never "None"
        limit_s = self.options.ready_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit_s
        while True:
            exited = self.fault()
            if exited is not None:
                raise TritonError(exited)
            other = fault()
            if other is not None:
                raise TritonError(f"{other} (its errors are above)")
            if time.monotonic() > deadline:
                raise TritonError(f"tritonserver not ready after {limit_s}s:\n{self.error_text()}")
            # --strict-readiness: ready only once every model in the repository is
            if server_ready(self.triton_http, timeout_s=2.0):
                return
            time.sleep(0.5)

    def poll(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def fault(self) -> str | None:
        """Why tritonserver is gone (its exit code and error lines), or None while it runs (or before it starts)."""
        code = self.poll()
        return None if code is None else f"tritonserver exited with code {code}:\n{self.error_text()}"

    def signal(self, signum: int) -> None:
        """``signum`` to tritonserver (SIGTERM, SIGINT: a graceful drain; SIGKILL: at once)."""
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
        """SIGKILL tritonserver's process group (its stubs too); remove the shared memory left."""
        code = None
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
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code
