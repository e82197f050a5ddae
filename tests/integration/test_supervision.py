"""Faults injected into a real server under load: a Python-backend stub SIGKILLed, and one SIGSTOPped.

Triton 2.51 itself keeps answering ready through both. ``yolo-server serve`` must notice (stub state, canary),
SIGKILL tritonserver's process group, clean its shared memory and exit 3 within a bound; ``yolo-server probe``
must be red from the fault on. The load counts what was sent, answered and failed (printed: ``pytest -s`` shows it).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.helpers.images import encode, scene
from tests.helpers.serving import (
    TritonTestServer,
    model_stubs,
    start_serve,
    stop_process,
    triton_pid,
    wait_ready,
    wait_until,
)
from tests.helpers.triton_requests import bytes_inputs
from yolo_server.launcher.process import shm_prefix
from yolo_server.launcher.supervise import FAULT_EXIT_CODE, probe

pytestmark = pytest.mark.integration
READY_TIMEOUT_S = 180.0
EXIT_BOUND_S = 15.0  # check interval 1 s; the canary's 2 failures x 3 s deadline + 5 s interval for a hang


@dataclass
class Load:
    """``threads`` clients sending one image at a time until stopped; counts each outcome."""

    grpc_url: str
    model: str
    image: bytes
    threads: int = 4
    sent: int = 0
    answered: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def _run(self) -> None:
        with grpcclient.InferenceServerClient(self.grpc_url) as client:
            while not self._stop.is_set():
                with self._lock:
                    self.sent += 1
                try:
                    client.infer(self.model, bytes_inputs([self.image]), client_timeout=10)
                except Exception as exc:  # counted by status
                    status = str(exc.status()) if isinstance(exc, InferenceServerException) else type(exc).__name__
                    with self._lock:
                        self.failed[status] = self.failed.get(status, 0) + 1
                    time.sleep(0.05)
                else:
                    with self._lock:
                        self.answered += 1

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)
        assert not any(worker.is_alive() for worker in self._workers), "a load thread hung"


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["sigkill", "sigstop"])
def test_a_dead_or_stopped_stub_turns_the_probe_red_and_the_server_exits(
    triton_server: TritonTestServer, tmp_path: Path, fault: signal.Signals
) -> None:
    log = tmp_path / "serve.log"
    process, (http_port, grpc_port, _) = start_serve(
        triton_server.repository, log, "--check-interval", "1", "--canary-interval", "5", "--canary-timeout", "3"
    )
    http, grpc = f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"
    model = triton_server.model_name
    load = Load(grpc, model, encode(".jpg", scene(240, 320, seed=11)))
    stubs: list[int] = []
    try:
        wait_ready(grpc, process, log, READY_TIMEOUT_S)
        healthy, lines = probe(http, [model], timeout_s=10)
        assert healthy, lines
        triton = triton_pid(log)
        stubs = model_stubs(triton, model)  # every instance of the fused image model, so that no canary gets through
        load.start()
        wait_until(lambda: load.answered >= 20, 60, "a steady load: 20 answers", process, log, interval_s=0.1)
        for stub in stubs:
            os.kill(stub, fault)
        faulted = time.monotonic()
        healthy, lines = probe(http, [model], timeout_s=2)
        assert not healthy, f"the probe stayed green after {fault.name}: {lines}"
        code = process.wait(EXIT_BOUND_S + 10)
        exited_after = time.monotonic() - faulted
    finally:
        load.stop()
        if fault == signal.SIGSTOP and process.poll() is None:
            for stub in stubs:
                os.kill(stub, signal.SIGCONT)
        stop_process(process)
    text = log.read_text()
    print(f"{fault.name}: exit {code} after {exited_after:.1f} s; sent {load.sent}, answered {load.answered}, "
          f"failed {load.failed}")  # fmt: skip
    assert code == FAULT_EXIT_CODE, text[-3000:]
    assert exited_after < EXIT_BOUND_S
    assert any(f"Python-backend stub {stub} is" in text for stub in stubs), text[-3000:]
    for stub in stubs:
        assert not Path(f"/proc/{stub}").exists() or Path(f"/proc/{stub}/stat").read_text().split()[2] == "Z"
    assert not list(Path("/dev/shm").glob(f"{shm_prefix(process.pid)}*")), "shared memory left behind"
    assert load.answered >= 20 and load.sent == load.answered + sum(load.failed.values())
    assert not listening(http), "tritonserver still answers after the launcher exited"


def listening(http: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{http}/v2/health/live", timeout=2):
            return True
    except OSError:
        return False
