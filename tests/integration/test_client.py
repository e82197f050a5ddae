"""The client SDK and CLI against the session's real server, checked against the in-process Detector."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from tests.helpers.images import decode_rgb, encode, scene
from tests.helpers.serving import TritonTestServer
from tests.helpers.triton_requests import as_found, assert_same_detections
from yolo_client import (
    AsyncYoloClient,
    DeadlineExceededError,
    Detection,
    InvalidInputError,
    RetryPolicy,
    ServerRejectedError,
    UnavailableError,
    YoloClient,
)
from yolo_client.contract import above_score_threshold

if TYPE_CHECKING:
    from yolo_server.pipeline import LabeledDetections

pytestmark = pytest.mark.integration

# (width, height, format): landscape, portrait, larger than the network, tiny, exactly the network size
SIZES = [(640, 480, ".jpg"), (300, 500, ".png"), (1280, 720, ".jpg"), (97, 61, ".png"), (320, 256, ".png")]


def _encoded(width: int, height: int, ext: str, seed: int) -> bytes:
    return encode(ext, scene(height, width, seed))


@pytest.fixture(scope="module")
def encoded_images() -> list[bytes]:
    return [_encoded(w, h, ext, seed) for seed, (w, h, ext) in enumerate(SIZES)]


def _oracle(triton_server: TritonTestServer, encoded: bytes) -> LabeledDetections:
    return triton_server.detector.detect([decode_rgb(encoded)])[0]


def assert_matches_oracle(found: list[Detection], oracle: LabeledDetections) -> None:
    """Same detections as the in-process Detector (boxes within 1e-3 relative, scores within 1e-4, same classes,
    matched one to one since near-equal scores may swap places), each labelled with its class's name."""
    assert_same_detections(as_found(found), oracle)
    names = dict(zip((int(c) for c in oracle.class_ids), oracle.labels, strict=True))
    assert all(d.label == names.get(d.class_id, d.label) for d in found)


@pytest.fixture(scope="module")
def oracles(triton_server: TritonTestServer, encoded_images: list[bytes]) -> list[LabeledDetections]:
    return [_oracle(triton_server, data) for data in encoded_images]


def test_model_info_comes_from_the_server(triton_server) -> None:
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        info = client.model_info()
    names = [line.strip() for line in triton_server.names.read_text().splitlines() if line.strip()]
    assert info.class_names == tuple(names)
    assert (info.input_width, info.input_height) == (triton_server.input_width, triton_server.input_height)
    assert info.max_batch_size == triton_server.max_batch_size
    assert info.score_threshold == pytest.approx(triton_server.detector.config.score_threshold)
    assert info.max_detections == triton_server.detector.config.max_detections
    assert info.trained and len(info.weights) == 64  # a weights file was served: its SHA-256


@pytest.mark.parametrize("transport", ["bytes", "tensor"])
def test_sync_client_matches_the_in_process_detector(triton_server, encoded_images, oracles, transport) -> None:
    with YoloClient(triton_server.grpc_url, triton_server.model_name, transport=transport) as client:
        for data, oracle in zip(encoded_images, oracles, strict=True):
            assert_matches_oracle(client.detect(data), oracle)
        # a decoded array, in either channel order, is the same image
        rgb = decode_rgb(encoded_images[1])
        assert_matches_oracle(client.detect(np.ascontiguousarray(rgb[:, :, ::-1]), color="bgr"), oracles[1])
        assert_matches_oracle(client.detect(rgb, color="rgb"), oracles[1])


@pytest.mark.parametrize("transport", ["bytes", "tensor"])
def test_async_client_matches_the_in_process_detector(triton_server, encoded_images, oracles, transport) -> None:
    async def run() -> list[list[Detection]]:
        async with AsyncYoloClient(triton_server.grpc_url, triton_server.model_name, transport=transport) as client:
            single = await client.detect(encoded_images[0])
            return [single, *await client.detect_batch(encoded_images)]

    single, *batch = asyncio.run(run())
    assert_matches_oracle(single, oracles[0])
    for found, oracle in zip(batch, oracles, strict=True):
        assert_matches_oracle(found, oracle)


def test_detect_batch_of_32_keeps_the_order(triton_server) -> None:
    # every image a different size and content: a result landing on the wrong image would not match
    sizes = [(160 + 24 * i, 120 + 16 * (i % 5)) for i in range(32)]
    batch = [_encoded(w, h, ".jpg", 100 + i) for i, (w, h) in enumerate(sizes)]
    with YoloClient(triton_server.grpc_url, triton_server.model_name, max_in_flight=8) as client:
        results = client.detect_batch(batch)
        checked = list(range(0, 32, 4)) + [31]  # one request each costs a CPU inference: a sample suffices
        one_by_one = {i: client.detect(batch[i]) for i in checked}
    assert len(results) == 32
    for found, (w, h) in zip(results, sizes, strict=True):  # boxes are clipped to their own image, so they fit it
        boxes = np.array([d.box for d in found]).reshape(-1, 4)
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    for i in checked:  # batched on the server or alone: the same detections, on the same image
        assert_same_detections(as_found(results[i]), as_found(one_by_one[i]))
    for i in (0, 12, 31):  # and against the oracle
        assert_matches_oracle(results[i], _oracle(triton_server, batch[i]))


def test_per_call_limits_cut_the_servers_answer(triton_server, encoded_images) -> None:
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        full = client.detect(encoded_images[0])
        assert len(full) > 3, "the random-weight detector should find something in this image"
        threshold = full[len(full) // 2].score
        cut = client.detect(encoded_images[0], score_threshold=threshold, max_detections=3)
        with pytest.raises(InvalidInputError, match="below the server's"):
            client.detect(encoded_images[0], score_threshold=0.01)
    assert cut == [d for d in full if above_score_threshold(d.score, threshold)][:3]


def test_a_damaged_image_is_rejected_by_the_server_with_its_message(triton_server, encoded_images) -> None:
    truncated = encoded_images[0][: len(encoded_images[0]) // 2]  # a JPEG header with half the data
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        with pytest.raises(ServerRejectedError) as caught:
            client.detect(truncated)
        assert client.detect(encoded_images[3])  # the client still works
    err = caught.value
    assert err.status == "INVALID_ARGUMENT" and "truncated" in err.message and err.attempts == 1
    assert err.__suppress_context__  # no raw gRPC/tritonclient traceback chained in


def test_unreachable_endpoint_is_unavailable_within_the_deadline() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    with YoloClient(dead, timeout=3.0) as client:
        start = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            client.detect(_encoded(64, 48, ".png", 0))
        elapsed = time.monotonic() - start
    assert elapsed < 3.0 and caught.value.attempts == 4  # retried with backoff, then gave up in time


def test_a_deadline_too_short_for_inference_is_deadline_exceeded(triton_server, encoded_images) -> None:
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        client.model_info()
        with pytest.raises(DeadlineExceededError):
            client.detect(encoded_images[2], timeout=0.002)


def test_health_models_and_headers(triton_server) -> None:
    headers = {"authorization": "Bearer test-token", "x-request-source": "pytest", **triton_server.admin_headers}
    with YoloClient(triton_server.grpc_url, triton_server.model_name, headers=headers) as client:
        [state] = client.health()
        names = {m.name for m in client.models()}
    assert state.ok and state.url == triton_server.grpc_url
    assert {triton_server.model_name, triton_server.tensor_model_name} <= names


def test_client_metrics_count_real_calls(triton_server, encoded_images) -> None:
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    from yolo_client import ClientMetrics

    with YoloClient(triton_server.grpc_url, triton_server.model_name, metrics=ClientMetrics.shared(registry)) as client:
        client.detect_batch(encoded_images)
        with pytest.raises(ServerRejectedError):
            client.detect(encoded_images[0][:100])
    labels = {"model": triton_server.model_name, "transport": "bytes"}
    assert registry.get_sample_value("yolo_client_requests_total", {**labels, "outcome": "ok"}) == len(encoded_images)
    assert registry.get_sample_value("yolo_client_requests_total", {**labels, "outcome": "rejected"}) == 1
    assert registry.get_sample_value("yolo_client_request_duration_seconds_count", labels) == len(encoded_images) + 1


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("yolo-client")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "yolo_client.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)


def test_cli_detect_json_matches_the_sdk(triton_server, encoded_images, tmp_path) -> None:
    paths = []
    for i, data in enumerate(encoded_images[:3]):
        paths.append(tmp_path / f"image{i}{SIZES[i][2]}")
        paths[-1].write_bytes(data)
    out_dir = tmp_path / "drawn"
    done = _cli("detect", *map(str, paths), "--json", "--draw", str(out_dir), "--url", triton_server.grpc_url,
                "--model", triton_server.model_name)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    with YoloClient(triton_server.grpc_url, triton_server.model_name) as client:
        expected = [client.detect(path) for path in paths]
    assert [entry["image"] for entry in report] == list(map(str, paths))
    for entry, found in zip(report, expected, strict=True):
        assert entry["detections"] == [d.to_dict() for d in found]
    drawn = sorted(out_dir.iterdir())
    assert [p.name for p in drawn] == [f"image{i}.png" for i in range(3)]
    assert cv2.imread(str(drawn[0])).shape == decode_rgb(encoded_images[0]).shape


def test_cli_health_models_and_a_short_bench(triton_server) -> None:
    url = ["--url", triton_server.grpc_url, "--model", triton_server.model_name]
    health = _cli("health", *url)
    assert health.returncode == 0 and "OK" in health.stdout, health.stdout + health.stderr
    locked = json.loads(_cli("models", "--json", *url).stdout)  # the repository index is an admin API
    assert locked["models"] is None and "admin key" in locked["models_note"]
    assert locked["model_info"]["input_width"] == triton_server.input_width
    assert locked["batching"]["max_batch_size"] == triton_server.max_batch_size
    [(name, key)] = triton_server.admin_headers.items()
    models = json.loads(_cli("models", "--json", "--header", f"{name}={key}", *url).stdout)
    assert triton_server.model_name in {m["name"] for m in models["models"]} and "models_note" not in models
    bench = _cli("bench", "--concurrency", "2", "--duration", "2", "--warmup", "0.5", "--json", *url)
    assert bench.returncode == 0, bench.stderr
    result = json.loads(bench.stdout)
    assert result["images"] > 0 and result["errors"] == {} and set(result["latency_ms"]) == {"p50", "p95", "p99"}
    assert result["target_fps"] == 65.0 and isinstance(result["meets_target"], bool)
    unreachable = _cli("detect", "/nonexistent.jpg", *url)
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr


def test_retries_are_not_spent_on_rejections(triton_server) -> None:
    policy = RetryPolicy(max_attempts=5)
    with YoloClient(triton_server.grpc_url, "no_such_model", retries=policy) as client:
        with pytest.raises(ServerRejectedError) as caught:
            client.model_info()
    assert caught.value.attempts == 1
