"""Dynamic batching is real: concurrent clients are served in shared executions of the network (on the cpu
target, of the fused image model, which runs it)."""

from __future__ import annotations

import threading

import pytest
import tritonclient.grpc as grpcclient

from tests.helpers.images import encode, scene
from tests.helpers.serving import TritonTestServer
from tests.helpers.triton_requests import bytes_inputs, split_result

pytestmark = pytest.mark.integration
CLIENTS = 16
REQUESTS_PER_CLIENT = 3


def detector_counts(client: grpcclient.InferenceServerClient, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) of a model from Triton's statistics API."""
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def test_sixteen_concurrent_clients_share_network_executions(triton_server: TritonTestServer) -> None:
    detector_model = triton_server.model_name
    image = encode(".jpg", scene(360, 480, seed=31))
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        inferences_before, executions_before = detector_counts(client, detector_model)
    failures: list[BaseException] = []
    start = threading.Barrier(CLIENTS)

    def one_client() -> None:
        try:
            with grpcclient.InferenceServerClient(triton_server.grpc_url) as own:
                start.wait()
                for _ in range(REQUESTS_PER_CLIENT):
                    [found] = split_result(own.infer(triton_server.model_name, bytes_inputs([image])))
                    assert len(found) > 0
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=one_client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not failures, failures[:3]
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        inferences_after, executions_after = detector_counts(client, detector_model)
    inferences, executions = inferences_after - inferences_before, executions_after - executions_before
    assert inferences == CLIENTS * REQUESTS_PER_CLIENT
    assert inferences / executions > 2, f"{inferences} images in {executions} executions"
