"""``yolo-server serve``: run tritonserver and its front until SIGTERM/SIGINT, forwarding the signal for a drain.

Finding the binary is :mod:`~yolo_server.launcher.installation`, the argv :mod:`~yolo_server.launcher.options`;
each process has an object of its own: :class:`~yolo_server.launcher.process.TritonServer` (tritonserver) and
:class:`~yolo_server.launcher.front_process.Front` (nginx). This module is the glue: :class:`Serving` orders the
two, :func:`serve` adds signals, readiness and supervision, :func:`loopback_server` serves for a block of code.

Example:
    >>> code = serve(ServeOptions(Path("model_repository"), grpc_port=8001))
    >>> with loopback_server(Path("model_repository"), front=False) as serving:
    ...     print(serving.endpoints.grpc)
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from yolo_server.launcher.canary import image_models
from yolo_server.launcher.front_process import FRONT_READY_TIMEOUT_S, Front
from yolo_server.launcher.installation import TritonError
from yolo_server.launcher.options import Endpoints, ServeOptions
from yolo_server.launcher.ports import free_ports
from yolo_server.launcher.process import InContext, TritonServer
from yolo_server.launcher.supervise import FAULT_EXIT_CODE, Supervision, Supervisor


class Serving(InContext):
    """tritonserver and, with ``options.front``, the nginx front before it: the two processes of one server.

    Each process is owned by its own object (:attr:`server`, :attr:`front`); this only orders them: the front
    starts first and quits first (from the first signal on, no new request reaches a draining Triton), and stops
    last, once Triton has answered what was in flight; the death of either ends the wait for the other.
    """

    def __init__(self, options: ServeOptions) -> None:
        self.server = TritonServer(options)
        self.front = Front.before(self.server)  # a missing nginx is said here, before anything starts

    @property
    def endpoints(self) -> Endpoints:
        """Where clients connect: the front's ports, or tritonserver's own without a front."""
        return self.server.endpoints

    def start(self, stream: IO[str] | None = sys.stdout) -> None:
        """Start the front, then tritonserver (its output goes to ``stream``)."""
        if self.front is not None:
            self.front.start()
        self.server.start(stream=stream)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until tritonserver and every model are ready, and, with a front, ready through it.

        Raises:
            TritonError: either process exited, or a timeout passed (:meth:`TritonServer.wait_ready`).
        """
        self.server.wait_ready(timeout_s, fault=self.front_fault)
        if self.front is not None:
            self.front.wait_ready(FRONT_READY_TIMEOUT_S, behind=self.server.fault)

    def front_fault(self) -> str | None:
        """Why the front is gone (no request reaches Triton any more), or None; always None without a front."""
        return None if self.front is None else self.front.fault()

    def signal(self, signum: int) -> None:
        """``signum`` to tritonserver; the front quits gracefully (SIGKILL: both at once)."""
        if self.front is not None and signum == signal.SIGKILL:
            self.front.kill()
        elif self.front is not None:
            self.front.quit()
        self.server.signal(signum)

    def kill(self) -> int | None:
        """SIGKILL both (tritonserver with its stubs); returns tritonserver's exit code."""
        if self.front is not None:
            self.front.kill()
        return self.server.kill()

    def stop(self) -> int | None:
        """Drain and stop tritonserver (:meth:`TritonServer.stop`), the front asked to quit first and stopped last;
        returns tritonserver's exit code."""
        if self.front is not None:
            self.front.quit()
        code = self.server.stop()
        if self.front is not None:
            self.front.stop()
        return code


@contextmanager
def loopback_server(repository: Path, stream: IO[str] | None = None, **options: Any) -> Iterator[Serving]:
    """A ready :class:`Serving` of ``repository`` on free loopback ports until the block ends, with ``options``
    (:class:`ServeOptions` fields) on top; its output goes to ``stream`` (``tune``'s trials, the benches).
    """
    http, grpc, metrics = free_ports(3)
    serving = Serving(ServeOptions(repository, http_port=http, grpc_port=grpc, metrics_port=metrics, **options))
    try:
        serving.start(stream=stream)
        serving.wait_ready()
        yield serving
    finally:
        serving.stop()


def serve(options: ServeOptions) -> int:
    """Run until SIGTERM/SIGINT (forwarded to Triton for a graceful drain); returns the exit code."""
    serving = Serving(options)
    server = serving.server
    print("yolo-server: " + "\n".join(server.plan.lines()), flush=True)
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        serving.signal(signum if len(received) == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        serving.start()
        try:
            serving.wait_ready()
        except TritonError as exc:
            if not received:
                print(f"yolo-server serve: {exc}", file=sys.stderr, flush=True)
                return 1  # the finally below stops it: exactly once
        else:
            _print_endpoints(serving)
            fault = _supervise(serving, options.supervision, received)
            if fault is not None:
                print(
                    f"yolo-server serve: {fault}; stopping tritonserver (exit {FAULT_EXIT_CODE})",
                    file=sys.stderr,
                    flush=True,
                )
                serving.kill()
                return FAULT_EXIT_CODE
        code = server.wait()
        if code != 0 and not received:
            print(f"yolo-server serve: tritonserver exited with code {code}:\n{server.error_text()}", file=sys.stderr)
        return code
    finally:
        serving.stop()  # the one stop on every path (after kill() too: it removes the work directories)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _supervise(serving: Serving, supervision: Supervision, received: list[int]) -> str | None:
    """Check the running server until it exits or a signal arrives; returns the fault that ended it, if any.

    The front is watched even with supervision off: without it no request reaches Triton.
    """
    server, supervisor = serving.server, None
    if supervision.enabled and server.pid is not None:
        models = image_models(server.options.repository)
        supervisor = Supervisor(server.pid, server.local_http, models, supervision)
        print(
            f"yolo-server: supervising {len(supervisor.stubs)} Python-backend stubs, canary {', '.join(models)}",
            flush=True,
        )
    while server.poll() is None and not received:
        fault = serving.front_fault() or (supervisor.check() if supervisor is not None else None)
        if fault is not None and not received:  # a drain stops the stubs: that is no fault
            return fault
        try:
            server.wait(supervision.check_interval_s if supervisor is not None else 1.0)
        except subprocess.TimeoutExpired:
            pass
    code = server.poll()
    if code is None or code >= 0 or received:
        return None
    # killed by a signal nobody here sent: a crash (Triton 2.51 may abort when a stub dies under load, before the
    # next check sees the stub), a fault as the check's would be, not an exit status of 128 + signal
    try:
        how = f"tritonserver was killed by {signal.Signals(-code).name}"
    except ValueError:
        how = f"tritonserver was killed by signal {-code}"
    stubs = supervisor.stubs_fault() if supervisor is not None else None
    return how if stubs is None else f"{how} ({stubs})"


def _print_endpoints(serving: Serving) -> None:
    server, e, front = serving.server, serving.endpoints, serving.front
    guard = (
        f"nginx (pid {front.pid}) caps requests at {front.config.cap_text}; tritonserver listens on loopback only"
        if front is not None
        else "none: tritonserver's own ports, requests uncapped (--no-front)"
    )
    print(
        f"yolo-server: all models ready (tritonserver pid {server.pid})\n"
        f"  gRPC     {e.grpc}\n  HTTP     http://{e.http}\n  metrics  {e.metrics}\n  front    {guard}",
        flush=True,
    )
