"""One real tritonserver per test session, serving yolov4-tiny on calibrated random weights.

Use the ``triton_server`` fixture (session scope), a ``TritonTestServer`` (tests/helpers/serving.py, with the
process helpers that start, wait for and stop servers); its fields are a stable interface for every integration
test (serving, client SDK, metrics):

    grpc_url           "127.0.0.1:PORT" (tritonclient.grpc / yolo_client)
    http_url           "127.0.0.1:PORT" (tritonclient.http, no scheme)
    metrics_url        "http://127.0.0.1:PORT/metrics" (Prometheus text)
    model_name         the image entry point (IMAGE in): the fused cpu model, "yolov4_tiny"
    tensor_model_name  the tensor ensemble (INPUT + RESIZE in)
    repository         Path of the built model repository
    cfg, weights, names  Paths of the darknet cfg, the .weights file served, the class names
    input_width, input_height, max_batch_size, max_pixels   what the repository was built with
    detector           in-process ``yolo_server.Detector`` on the same weights, thresholds and served artifact
                       (the oracle: the detector's OpenVINO IR at the precision the server resolved)
    pid                pid of the ``yolo-server serve`` process (stopped by the fixture)
    admin_headers      gRPC metadata with the admin key: what the repository, shared-memory, trace and logging APIs
                       ask for (admin_http_headers: the same over HTTP)

The server is built at 320x256 (non-square on purpose, small for CPU) with max
batch 8, bound to 127.0.0.1 on free ports, unsupervised (no canary traffic), and
stopped by pid at the end.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.helpers.serving import (
    CFG,
    INPUT_HEIGHT,
    INPUT_WIDTH,
    MAX_BATCH_SIZE,
    MAX_PIXELS,
    NAMES,
    READY_TIMEOUT_S,
    TritonTestServer,
    build_repository,
    start_serve,
    stop_process,
    wait_ready,
    write_random_weights,
)
from yolo_client.contract import ADMIN_KEY_HEADER, GRPC_ADMIN_KEY_HEADER

if TYPE_CHECKING:
    import tritonclient.grpc as grpcclient


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonTestServer]:
    from yolo_server import Detector
    from yolo_server.darknet import load_spec
    from yolo_server.ops.config import postprocess_config_for
    from yolo_server.triton.runtime import OpenVINORunner

    workdir = tmp_path_factory.mktemp("triton")
    weights = write_random_weights(workdir / "yolov4-tiny-random.weights")
    # every pixel decoded (the darknet-parity path), so that the Detector on a full decode is its exact oracle;
    # the default reduced-scale JPEG decode is served against Detector.detect_encoded by test_demo_model and
    # tests/docker
    repository = build_repository(weights, workdir / "model_repository", "--size", f"{INPUT_WIDTH}x{INPUT_HEIGHT}",
                                  "--target", "cpu", "--max-batch-size", str(MAX_BATCH_SIZE),
                                  "--max-pixels", str(MAX_PIXELS), "--jpeg-decode", "full")  # fmt: skip
    admin_key = secrets.token_hex(24)
    (workdir / "admin-key").write_text(admin_key + "\n")
    # no supervision: its canary inferences would add to the counts and metrics that tests compare
    # (tests/integration/test_supervision.py runs it)
    process, (http_port, grpc_port, metrics_port) = start_serve(
        repository, workdir / "serve.log", "--admin-key-file", str(workdir / "admin-key"), "--check-interval", "0"
    )
    try:
        grpc_url = f"127.0.0.1:{grpc_port}"
        wait_ready(grpc_url, process, workdir / "serve.log", READY_TIMEOUT_S)
        spec = load_spec(CFG, (INPUT_WIDTH, INPUT_HEIGHT))
        detector = Detector(
            CFG, weights, NAMES, input_size=(INPUT_WIDTH, INPUT_HEIGHT), config=postprocess_config_for(spec),
            network=OpenVINORunner(repository / "yolov4_tiny_detector" / "1" / "model.xml", num_threads=1),
        )  # fmt: skip
        yield TritonTestServer(
            grpc_url=grpc_url,
            http_url=f"127.0.0.1:{http_port}",
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            model_name="yolov4_tiny",
            tensor_model_name="yolov4_tiny_tensor",
            repository=repository,
            cfg=CFG,
            weights=weights,
            names=NAMES,
            input_width=INPUT_WIDTH,
            input_height=INPUT_HEIGHT,
            max_batch_size=MAX_BATCH_SIZE,
            max_pixels=MAX_PIXELS,
            detector=detector,
            pid=process.pid,
            admin_headers={GRPC_ADMIN_KEY_HEADER: admin_key},
            admin_http_headers={ADMIN_KEY_HEADER: admin_key},
        )
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def client(triton_server: TritonTestServer) -> Iterator[grpcclient.InferenceServerClient]:
    """A bare ``tritonclient.grpc`` client of the shared server."""
    import tritonclient.grpc

    with tritonclient.grpc.InferenceServerClient(triton_server.grpc_url) as connection:
        yield connection
