"""`yolo-server serve` as a process: Triton's own error text on a failed load, a graceful drain on SIGTERM."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.helpers.images import encode, scene
from tests.helpers.serving import TritonTestServer, start_serve, stop_process, wait_ready
from tests.helpers.triton_requests import Answer, burst, bytes_inputs, split_result

pytestmark = pytest.mark.integration


def test_serve_fails_with_tritons_error_when_a_model_does_not_load(
    triton_server: TritonTestServer, tmp_path: Path
) -> None:
    broken = tmp_path / "repository"
    shutil.copytree(triton_server.repository, broken)
    (broken / f"{triton_server.model_name}_detector" / "1" / "model.xml").unlink()
    log = tmp_path / "serve.log"
    process, _ = start_serve(broken, log, "--ready-timeout", "240")
    try:
        assert process.wait(300) != 0
    finally:
        stop_process(process)
    output = log.read_text()
    assert "yolo-server serve: tritonserver exited with code" in output
    assert f"{triton_server.model_name}_detector" in output
    assert "model.xml" in output, output[-2000:]


def test_sigterm_answers_every_in_flight_request_and_exits_cleanly(
    triton_server: TritonTestServer, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    process, (_, grpc_port, _) = start_serve(triton_server.repository, log, exit_timeout_s=60)
    url = f"127.0.0.1:{grpc_port}"
    try:
        wait_ready(url, process, log, 240)
        calls = [(triton_server.model_name, bytes_inputs([encode(".jpg", scene(240, 320, seed=3))]))] * 12
        answers: list[Answer] = []
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
        failed = [f"{a.status()}: {a.message()}" for a in answers if isinstance(a, InferenceServerException)]
        assert all(f.startswith("StatusCode.UNAVAILABLE") and "Server is stopping" in f for f in failed), failed
        for answer in answers:
            if not isinstance(answer, InferenceServerException):
                assert len(split_result(answer)[0]) > 0
        assert process.wait(90) == 0, log.read_text()[-3000:]
    finally:
        stop_process(process)
