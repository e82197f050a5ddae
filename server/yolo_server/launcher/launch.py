"""``yolo-server serve``: run tritonserver until SIGTERM/SIGINT, forwarding the signal for a graceful drain.

Finding the binary is :mod:`~yolo_server.launcher.installation`, the argv :mod:`~yolo_server.launcher.options`,
the processes :mod:`~yolo_server.launcher.process` (tritonserver) and :mod:`~yolo_server.launcher.front` (nginx);
this module is the glue: signals, readiness, supervision.

Example:
    >>> code = serve(ServeOptions(Path("model_repository"), grpc_port=8001))
"""

from __future__ import annotations

import signal
import subprocess
import sys

from yolo_server.launcher.canary import image_models
from yolo_server.launcher.installation import TritonError
from yolo_server.launcher.options import ServeOptions
from yolo_server.launcher.process import TritonServer
from yolo_server.launcher.supervise import FAULT_EXIT_CODE, Supervision, Supervisor


def serve(options: ServeOptions) -> int:
    """Run until SIGTERM/SIGINT (forwarded to Triton for a graceful drain); returns the exit code."""
    server = TritonServer(options)
    print("yolo-server: " + "\n".join(server.plan.lines()), flush=True)
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
                return 1  # the finally below stops it: exactly once
        else:
            _print_endpoints(server)
            fault = _supervise(server, options.supervision, received)
            if fault is not None:
                print(
                    f"yolo-server serve: {fault}; stopping tritonserver (exit {FAULT_EXIT_CODE})",
                    file=sys.stderr,
                    flush=True,
                )
                server.kill()
                return FAULT_EXIT_CODE
        code = server.wait()
        if code != 0 and not received:
            print(f"yolo-server serve: tritonserver exited with code {code}:\n{server.error_text()}", file=sys.stderr)
        return code
    finally:
        server.stop()  # the one stop on every path (after kill() too: it removes the backend directory)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _supervise(server: TritonServer, supervision: Supervision, received: list[int]) -> str | None:
    """Check the running server until it exits or a signal arrives; returns the fault that ended it, if any.

    The front is watched even with supervision off: without it no request reaches Triton.
    """
    supervisor = None
    if supervision.enabled and server.pid is not None:
        models = image_models(server.options.repository)
        supervisor = Supervisor(server.pid, server.local_http, models, supervision)
        print(
            f"yolo-server: supervising {len(supervisor.stubs)} Python-backend stubs, canary {', '.join(models)}",
            flush=True,
        )
    while server.poll() is None and not received:
        fault = server.front_fault() or (supervisor.check() if supervisor is not None else None)
        if fault is not None and not received:  # a drain stops the stubs: that is no fault
            return fault
        try:
            server.wait(supervision.check_interval_s if supervisor is not None else 1.0)
        except subprocess.TimeoutExpired:
            pass
    return None


def _print_endpoints(server: TritonServer) -> None:
    e, front = server.endpoints, server.front
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
