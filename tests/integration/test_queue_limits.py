"""The queue policy under a busy detector: the bound counts images, and a request that waited too long is shed.

The repository: max batch 8, queues of 16 images (2 full-batch requests), one instance of the fused model with
a 1024x1024 network on one thread, so that one batch of 8 keeps it busy for a while (about 2 s on a 2-core CI
machine). How long is measured, not assumed: a first server on that repository times one batch of 8 (the
stall), and the repository the test serves is built again with a queue timeout of half the stall. Six 8-image
requests are then sent a twentieth of the stall apart: the first runs, two wait (16 images) and outlive their
timeout, three find the queue full.
Triton rejects an expired request when the batcher next looks at the queue, i.e. when the running batch ends, so
a waiting request is only shed if it arrived more than the timeout before that end: the second waiting request
arrives a tenth of the stall after the first, four tenths before it must; the last request arrives at a quarter
of the stall, while the two still fill the queue. Every margin is a share of the measured stall, so the test
holds on a slow CPU and a fast one alike. (A SIGSTOPped stub would stall it too, but Triton then fails the
running request as "not healthy".)
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from tests.helpers.images import encode, scene
from tests.helpers.serving import TritonTestServer, build_repository, serving
from tests.helpers.triton_requests import bytes_inputs

pytestmark = pytest.mark.integration
QUEUE_IMAGES, BATCH, REQUESTS = 16, 8, 6


def test_queue_bound_in_images_and_queue_timeout(triton_server: TritonTestServer, tmp_path: Path) -> None:
    model = triton_server.model_name
    batch = bytes_inputs([encode(".jpg", scene(120, 160, seed=3))] * BATCH)

    @contextmanager
    def serve(name: str, queue_timeout_s: float) -> Iterator[grpcclient.InferenceServerClient]:
        """The repository built into tmp_path/name with ``queue_timeout_s``, served; a client of it."""
        workdir = tmp_path / name
        built = build_repository(triton_server.weights, workdir / "repository", "--size", "1024",
                                 "--max-batch-size", str(BATCH), "--detector-threads", "1", "--instances", "fused=1",
                                 "--max-queue-images", str(QUEUE_IMAGES),
                                 "--queue-timeout-us", str(round(queue_timeout_s * 1e6)))  # fmt: skip
        with serving(built, workdir, "--check-interval", "0") as url, grpcclient.InferenceServerClient(url) as client:
            yield client

    with serve("probe", 600) as client:  # the stall: one batch of 8, once warm
        client.infer(model, batch, client_timeout=300)
        start = time.monotonic()
        client.infer(model, batch, client_timeout=300)
        stall_s = time.monotonic() - start
    timeout_s, spacing_s = stall_s / 2, stall_s / 20

    with serve("served", timeout_s) as client:
        answers: queue.Queue[tuple[int, object]] = queue.Queue()
        for index in range(REQUESTS):  # one at a time, so that only the detector's queue fills
            client.async_infer(model, batch,
                               callback=lambda result, error, i=index: answers.put((i, error or "ok")))  # fmt: skip
            time.sleep(spacing_s)
        outcomes = dict(answers.get(timeout=10 * stall_s + 60) for _ in range(REQUESTS))
        messages = [str(outcomes[index]) for index in range(REQUESTS)]
        print(f"\nbatch of {BATCH}: {stall_s:.2f} s; queue timeout {timeout_s:.2f} s, requests {spacing_s:.3f} s "
              f"apart; {messages}")  # fmt: skip
        full = [m for m in messages if "Exceeds maximum queue size" in m]
        expired = [m for m in messages if "Request timeout expired" in m]
        assert len(full) + len(expired) + messages.count("ok") == REQUESTS, messages
        # one request runs (usually the first; on a starved machine the first may expire and the next run),
        # 16 images = 2 requests wait and time out, the rest is refused at once
        assert (messages.count("ok"), len(expired), len(full)) == (1, QUEUE_IMAGES // BATCH, 3), messages
        assert all("UNAVAILABLE" in m for m in full + expired)
        client.infer(model, bytes_inputs([encode(".jpg", scene(120, 160, seed=3))]), client_timeout=60)  # still fine
