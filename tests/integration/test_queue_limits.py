"""The queue policy under a busy detector: the bound counts images, and a request that waited too long is shed.

A repository of its own: max batch 8, queues of 16 images (2 full-batch requests) that time out after 1.2 s, and
one instance of the fused model with a 1408x1408 network on one thread, so that one batch of 8 keeps it busy for
about 5 s. Six 8-image requests are sent 0.1 s apart: the first runs, two wait (16 images) and outlive their
timeout, three find the queue full. (Through the ensemble, the preprocess spread the requests' arrivals at the
detector's queue over most of a second on a loaded 2-core machine: with 0.5 s, a slot freed before the last
arrived. 1.2 s leaves that room still.)
Triton rejects an expired request when the batcher next looks at the queue, i.e. when the running batch ends, so
a waiting request is only shed if it arrived more than the timeout before that end: at 1024x1024 (a 3 s batch)
the second waiting request sometimes arrived too late and ran; a 5 s batch leaves it about 3.5 s to arrive.
(A SIGSTOPped stub would stall it too, but Triton then fails the running request as "not healthy".)
"""

from __future__ import annotations

import queue
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from tests.helpers.images import encode, scene
from tests.helpers.serving import CFG, NAMES, TritonTestServer, start_serve, stop_process, wait_ready
from tests.helpers.triton_requests import bytes_inputs

pytestmark = pytest.mark.integration
QUEUE_IMAGES, BATCH, QUEUE_TIMEOUT_US = 16, 8, 1_200_000


def test_queue_bound_in_images_and_queue_timeout(triton_server: TritonTestServer, tmp_path: Path) -> None:
    from yolo_server.cli import main as cli_main

    repository = tmp_path / "repository"
    built = cli_main(
        ["build", "--cfg", str(CFG), "--weights", str(triton_server.weights), "--names", str(NAMES),
         "--size", "1408", "--max-batch-size", str(BATCH), "--detector-threads", "1", "--instances", "fused=1",
         "--max-queue-images", str(QUEUE_IMAGES), "--queue-timeout-us", str(QUEUE_TIMEOUT_US),
         "--output", str(repository)]
    )  # fmt: skip
    assert built == 0
    log = tmp_path / "serve.log"
    process, (_, grpc_port, _) = start_serve(repository, log, "--check-interval", "0")
    grpc = f"127.0.0.1:{grpc_port}"
    image = encode(".jpg", scene(120, 160, seed=3))
    model = triton_server.model_name
    try:
        wait_ready(grpc, process, log, 180)
        with grpcclient.InferenceServerClient(grpc) as client:
            start = time.monotonic()
            client.infer(model, bytes_inputs([image] * BATCH), client_timeout=120)
            batch_s = time.monotonic() - start
            assert batch_s > 2 * QUEUE_TIMEOUT_US / 1e6, f"a batch of 8 took only {batch_s:.2f} s: nothing would wait"
            answers: queue.Queue[tuple[int, object]] = queue.Queue()
            for index in range(6):  # one at a time, so that only the detector's queue fills
                client.async_infer(model, bytes_inputs([image] * BATCH),
                                   callback=lambda result, error, i=index: answers.put((i, error or "ok")))  # fmt: skip
                time.sleep(0.1)
            outcomes = dict(answers.get(timeout=120) for _ in range(6))
            messages = [str(outcomes[index]) for index in range(6)]
            print(f"batch of 8: {batch_s:.2f} s; {messages}")
            full = [m for m in messages if "Exceeds maximum queue size" in m]
            expired = [m for m in messages if "Request timeout expired" in m]
            assert len(full) + len(expired) + messages.count("ok") == 6, messages
            # one request runs (usually the first; on a starved machine the first may expire and the next run),
            # 16 images = 2 requests wait and time out, the rest is refused at once
            assert (messages.count("ok"), len(expired), len(full)) == (1, QUEUE_IMAGES // BATCH, 3), messages
            assert all("UNAVAILABLE" in m for m in full + expired)
            client.infer(model, bytes_inputs([image]), client_timeout=60)  # the server is fine
    finally:
        stop_process(process)
