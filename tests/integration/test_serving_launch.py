"""`yolo-server serve` as a process: Triton's own error text on a failed load, a graceful drain on SIGTERM."""

from __future__ import annotations

import math
import shutil
import signal
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.helpers.images import encode, scene
from tests.helpers.serving import (
    READY_TIMEOUT_S,
    TritonTestServer,
    build_repository,
    metric_value,
    start_serve,
    stop_process,
    wait_ready,
    wait_until,
)
from tests.helpers.triton_requests import Answer, assert_same_detections, bytes_inputs, split_result

pytestmark = pytest.mark.integration
QUEUED_S = 2.0  # work queued ahead of SIGTERM: Triton's count is read well before the queue runs dry
MAX_REQUESTS = 64  # the bound on a very fast CPU
QUEUE_TIMEOUT_S = 600  # a bound no queued request reaches, however slow the CPU
EXIT_TIMEOUT_S = 120


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
    """Requests waiting in the image model's queue when SIGTERM arrives are all answered, then the server exits 0.

    A repository of its own holds requests in a queue: one fused instance on one thread, max batch 1 (each
    request a batch of its own) at a 640x640 network, no queue timeout that a slow CPU could reach. One request's
    time is measured first; as many requests as make QUEUED_S of work are sent, and SIGTERM follows once Triton's
    own count shows them delivered and waiting (so none is still in the client or the front). Every request then
    has a send time before the signal; those answered after it were in flight, and at least one must be.
    """
    repository = build_repository(triton_server.weights, tmp_path / "repository", "--size", "640",
                                  "--instances", "fused=1", "--detector-threads", "1", "--max-batch-size", "1",
                                  "--queue-timeout-us", str(QUEUE_TIMEOUT_S * 1_000_000))  # fmt: skip
    log = tmp_path / "serve.log"
    process, (_, grpc_port, metrics_port) = start_serve(repository, log, "--check-interval", "0",
                                                        exit_timeout_s=EXIT_TIMEOUT_S)  # fmt: skip
    url, metrics_url = f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{metrics_port}/metrics"
    model = triton_server.model_name
    inputs = bytes_inputs([encode(".jpg", scene(240, 320, seed=3))])
    try:
        wait_ready(url, process, log, READY_TIMEOUT_S)
        with grpcclient.InferenceServerClient(url) as client:
            client.infer(model, inputs, client_timeout=120)  # warm: first-inference allocations
            start = time.monotonic()
            expected = split_result(client.infer(model, inputs, client_timeout=120))
            one_s = time.monotonic() - start
            count = min(MAX_REQUESTS, max(3, math.ceil(QUEUED_S / one_s) + 1))
            assert count * one_s < EXIT_TIMEOUT_S / 4, f"one request takes {one_s:.2f} s: the drain would not fit"
            sent: list[float] = []
            answered: dict[int, tuple[float, Answer]] = {}
            for index in range(count):
                client.async_infer(model, inputs, client_timeout=EXIT_TIMEOUT_S,
                                   callback=lambda result, error, i=index: answered.setdefault(
                                       i, (time.monotonic(), error if error is not None else result)))  # fmt: skip
                sent.append(time.monotonic())

            pending = 0

            def queued() -> bool:
                """One request running, every other delivered: waiting in Triton's queue (one at least) or answered."""
                nonlocal pending
                pending = int(metric_value(metrics_url, "nv_inference_pending_request_count", model))
                return pending >= 1 and pending + len(answered) >= count - 1

            wait_until(queued, count * one_s + 30, f"{count} requests queued", process, log, interval_s=0.01)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            after_signal = time.monotonic()
            wait_until(lambda: len(answered) == count, EXIT_TIMEOUT_S, "every request answered")
        code = process.wait(EXIT_TIMEOUT_S + 30)
        exited = time.monotonic() - signalled
    finally:
        stop_process(process)
    in_flight = [i for i in range(count) if sent[i] < signalled and answered[i][0] > after_signal]
    last = max(at for at, _ in answered.values()) - after_signal
    print(f"\none request {one_s:.3f} s; {count} sent before SIGTERM, {pending} of them waiting in Triton's queue "
          f"then, {len(in_flight)} answered after it (the last {last:.2f} s after); exit {code} after {exited:.2f} s")  # fmt: skip
    assert in_flight, f"nothing was in flight at SIGTERM: {pending} waiting then, {count} sent"
    for index in range(count):  # every request was sent before the signal: each answered in full
        answer = answered[index][1]
        assert not isinstance(answer, InferenceServerException), f"request {index}: {answer}"
        assert_same_detections(split_result(answer)[0], expected[0])
    assert code == 0, log.read_text()[-3000:]
