"""`yolo-server serve` as a process: Triton's own error text on a failed load, a graceful drain on SIGTERM."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from tests.integration.conftest import stop_process, wait_ready
from tests.integration.serving_support import burst, bytes_inputs, encode, scene, split_result
from yolo_server.triton.launch import free_ports

pytestmark = pytest.mark.integration


def serve_command(repository: Path, *extra: str) -> tuple[list[str], str]:
    """argv of `yolo-server serve` on free loopback ports, and its gRPC url."""
    http_port, grpc_port, metrics_port = free_ports(3)
    argv = [sys.executable, "-m", "yolo_server.cli", "serve", str(repository), "--host", "127.0.0.1",
            "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port), *extra]  # fmt: skip
    return argv, f"127.0.0.1:{grpc_port}"


def test_serve_fails_with_tritons_error_when_a_model_does_not_load(triton_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "repository"
    shutil.copytree(triton_server.repository, broken)
    (broken / f"{triton_server.model_name}_detector" / "1" / "model.pt").unlink()
    argv, _ = serve_command(broken, "--ready-timeout", "240")
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    assert "yolo-server serve: tritonserver exited with code" in completed.stderr
    assert f"{triton_server.model_name}_detector" in completed.stderr
    assert "model.pt" in completed.stderr, completed.stderr[-2000:]


def test_sigterm_answers_every_in_flight_request_and_exits_cleanly(triton_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    argv, url = serve_command(triton_server.repository, "--exit-timeout", "60")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(url, process, log, 240)
        calls = [(triton_server.model_name, bytes_inputs([encode(".jpg", scene(240, 320, seed=3))]))] * 12
        answers: list[object] = []
        with grpcclient.InferenceServerClient(url) as client:
            sender = threading.Thread(target=lambda: answers.extend(burst(client, calls)))
            sender.start()
            time.sleep(0.5)  # the burst is queued and partly running
            process.send_signal(signal.SIGTERM)
            sender.join(120)
        assert len(answers) == len(calls)  # every request answered, none left hanging
        # Triton 2.51 stops each composing model from taking *new* requests at SIGTERM: an ensemble request still
        # between two steps is answered UNAVAILABLE "Server is stopping" (the SDK retries it on another replica);
        # whatever a model had taken finishes. Nothing else may fail.
        failed = [f"{a.status()}: {a.message()}" for a in answers if isinstance(a, Exception)]  # type: ignore[attr-defined]
        assert all(f.startswith("StatusCode.UNAVAILABLE") and "Server is stopping" in f for f in failed), failed
        for answer in answers:
            if not isinstance(answer, Exception):
                assert len(split_result(answer)[0]) > 0  # type: ignore[arg-type]
        assert process.wait(90) == 0, log.read_text()[-3000:]
    finally:
        stop_process(process)
