"""Liveness that means something: watch the Python-backend stubs and send canaries; on a fault, exit non-zero.

Triton 2.51 never restarts a Python-backend stub, and its readiness stays true after one dies, so a dead or
hung model would keep receiving traffic. ``yolo-server serve`` therefore checks, every ``check_interval_s``:

- the stub processes that were up when the server became ready: each must still exist and must not be a
  zombie or stopped (``/proc/PID/stat``);
- every ``canary_interval_s``, one small image through each image model (:mod:`.canary`); a ``busy``
  answer (queue full, queue timeout) is a loaded server, not a fault, and ``canary_failures`` failures in a
  row (an error, or no answer before ``canary_timeout_s``) are one.

On a fault the launcher SIGKILLs tritonserver's process group and exits with :data:`FAULT_EXIT_CODE`. Restarting
is left to the orchestrator (k8s ``restartPolicy``, compose ``restart: unless-stopped``), on purpose: it already
restarts with backoff, counts restarts where operators look (``kube_pod_container_status_restarts_total``) and
takes the replica out of its Services meanwhile; a second restart loop inside the container would hide crash
loops from it and need supervising itself. A SIGKILL rather than Triton's drain, because a dead stub makes
Triton wait out its whole exit timeout and what was in flight is failing anyway.

``yolo-server probe`` (compose and k8s health checks) runs the same canary from outside the launcher.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolo_server.flags import flag
from yolo_server.launcher.canary import CanaryResult, check_canary, server_ready

FAULT_EXIT_CODE = 3
STUB_NAME = "triton_python_backend_stub"
_DEAD_STATES = {"Z": "a zombie (it died)", "X": "dead", "T": "stopped (SIGSTOP)", "t": "stopped by a tracer"}


@dataclass(frozen=True)
class Supervision:
    """How often and how hard a running server is checked.

    Attributes:
        check_interval_s: seconds between looks at the stub processes (0: no supervision at all).
        canary_interval_s: seconds between canary images through each image model.
        canary_timeout_s: how long a canary may take before it counts as a failure.
        canary_failures: failures in a row that make a fault.
    """

    check_interval_s: float = flag(
        "--check-interval", "seconds between checks of the Python-backend stubs (0: no supervision)", default=1.0,
        parse=float,
    )  # fmt: skip
    canary_interval_s: float = flag(
        "--canary-interval", "seconds between canary inferences through each image model", default=5.0, parse=float,
    )  # fmt: skip
    canary_timeout_s: float = flag("--canary-timeout", "deadline of one canary inference", default=15.0, parse=float)
    canary_failures: int = 2

    def __post_init__(self) -> None:
        if self.check_interval_s < 0 or self.canary_interval_s <= 0 or self.canary_timeout_s <= 0:
            raise ValueError("supervision intervals and the canary timeout must be positive")
        if self.canary_failures < 1:
            raise ValueError("canary_failures must be at least 1")

    @property
    def enabled(self) -> bool:
        return self.check_interval_s > 0


def stub_processes(parent: int, proc: Path = Path("/proc")) -> dict[int, str]:
    """``{pid: state}`` of the Python-backend stubs whose parent is ``parent`` (state as in ``/proc/PID/stat``)."""
    found = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
        state, ppid = stat[stat.rfind(")") + 2 :].split()[:2]
        if int(ppid) == parent and (os.path.basename(argv0.decode(errors="replace")) == STUB_NAME or state == "Z"):
            found[int(entry.name)] = state
    return found


def stub_fault(expected: Iterable[int], current: dict[int, str]) -> str | None:
    """Why the stubs seen at ready time are no longer healthy, or None."""
    for pid in sorted(expected):
        if pid not in current:
            return f"Python-backend stub {pid} is gone"
        if current[pid] in _DEAD_STATES:
            return f"Python-backend stub {pid} is {_DEAD_STATES[current[pid]]}"
    return None


class Supervisor:
    """The checks of one running server; :meth:`check` returns a fault, or None while all is well.

    Args:
        triton_pid: the tritonserver process, parent of the stubs.
        http_url: ``host:port`` of its HTTP endpoint (loopback).
        models: the image models to canary.
        supervision: intervals and thresholds.
        canary: the canary call (a fake in unit tests).
        clock: monotonic clock.
    """

    def __init__(
        self,
        triton_pid: int,
        http_url: str,
        models: Sequence[str],
        supervision: Supervision,
        canary: Callable[[str, str, float], CanaryResult] = check_canary,
        clock: Callable[[], float] = time.monotonic,
        proc: Path = Path("/proc"),
    ) -> None:
        self.triton_pid = triton_pid
        self.http_url = http_url
        self.models = tuple(models)
        self.supervision = supervision
        self._canary = canary
        self._clock = clock
        self._proc = proc
        self.stubs = tuple(stub_processes(triton_pid, proc))
        self._next_canary = clock() + supervision.canary_interval_s
        self._failures = 0

    def stubs_fault(self) -> str | None:
        """Why the stubs seen at ready time are no longer healthy, or None (no canary)."""
        return stub_fault(self.stubs, stub_processes(self.triton_pid, self._proc))

    def check(self) -> str | None:
        fault = self.stubs_fault()
        if fault is not None or self._clock() < self._next_canary:
            return fault
        for model in self.models:
            result = self._canary(self.http_url, model, self.supervision.canary_timeout_s)
            if result.kind == "failed":
                self._failures += 1
                if self._failures >= self.supervision.canary_failures:
                    return f"canary failed {self._failures} times in a row, last: {result.detail}"
                break
            if result.kind == "ok":
                self._failures = 0
        self._next_canary = self._clock() + self.supervision.canary_interval_s
        return None


def probe(http_url: str, models: Sequence[str], timeout_s: float) -> tuple[bool, list[str]]:
    """Health in one call: the server is ready and every model answers a canary (``busy`` counts as alive).

    Returns whether it is healthy, and one line per check for the log.
    """
    deadline = time.monotonic() + timeout_s
    if not server_ready(http_url, timeout_s):
        return False, [f"{http_url}: not ready (GET /v2/health/ready)"]
    if not models:
        return False, [f"{http_url}: no image model to send a canary to"]
    lines, healthy = [], True
    for model in models:
        result = check_canary(http_url, model, max(0.1, deadline - time.monotonic()))
        healthy &= result.kind != "failed"
        lines.append(f"{result.kind}: {result.detail} ({result.seconds * 1000:.0f} ms)")
    return healthy, lines
