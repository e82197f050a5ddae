"""One real tritonserver per test session, serving yolov4-tiny on calibrated random weights.

Use the ``triton_server`` fixture (session scope); its fields are a stable interface
for every integration test (serving, client SDK, metrics):

    grpc_url           "127.0.0.1:PORT" (tritonclient.grpc / yolo_client)
    http_url           "127.0.0.1:PORT" (tritonclient.http, no scheme)
    metrics_url        "http://127.0.0.1:PORT/metrics" (Prometheus text)
    model_name         the bytes ensemble (IMAGE in), e.g. "yolov4_tiny"
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

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from yolo_server.triton.access import ADMIN_KEY_HEADER, GRPC_ADMIN_KEY_HEADER
from yolo_server.triton.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / "models" / "darknet" / "yolov4-tiny.cfg"
NAMES = ROOT / "models" / "darknet" / "coco.names"
INPUT_WIDTH, INPUT_HEIGHT = 320, 256
MAX_BATCH_SIZE = 8
MAX_PIXELS = 50_000_000
READY_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class TritonTestServer:
    """A running server and what it was built from (see the module docstring)."""

    grpc_url: str
    http_url: str
    metrics_url: str
    model_name: str
    tensor_model_name: str
    repository: Path
    cfg: Path
    weights: Path
    names: Path
    input_width: int
    input_height: int
    max_batch_size: int
    max_pixels: int
    detector: object  # yolo_server.Detector
    pid: int
    admin_headers: dict[str, str]
    admin_http_headers: dict[str, str]


def write_random_weights(path: Path) -> Path:
    """Calibrated random weights for yolov4-tiny, written with the project's darknet writer."""
    from yolo_server.darknet import load_spec, write_weights
    from yolo_server.darknet.random_weights import calibrated_random_weights

    spec = load_spec(CFG, (INPUT_WIDTH, INPUT_HEIGHT))
    write_weights(path, spec, calibrated_random_weights(spec, seed=7))
    return path


def wait_ready(grpc_url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    import tritonclient.grpc as grpcclient

    deadline = time.monotonic() + timeout_s
    with grpcclient.InferenceServerClient(grpc_url) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"yolo-server serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if client.is_server_ready():
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout_s}s:\n{log.read_text()[-4000:]}")


def start_serve(
    repository: Path, log: Path, *extra: str, ports: tuple[int, int, int] | None = None, exit_timeout_s: int = 10
) -> tuple[subprocess.Popen, tuple[int, int, int]]:
    """``yolo-server serve`` on loopback, in a session of its own, output to ``log``.

    Returns the process and its (HTTP, gRPC, metrics) ports: ``ports``, else free ones.
    """
    if ports is None:
        http_port, grpc_port, metrics_port = free_ports(3)
    else:
        http_port, grpc_port, metrics_port = ports
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "yolo_server.cli", "serve", str(repository), "--host", "127.0.0.1",
             "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
             "--exit-timeout", str(exit_timeout_s), *extra],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    return process, (http_port, grpc_port, metrics_port)


def stop_process(process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """SIGTERM by pid (yolo-server forwards it to Triton, which drains), SIGKILL its group if it hangs."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonTestServer]:
    from yolo_server import Detector
    from yolo_server.cli import main as cli_main
    from yolo_server.darknet import load_spec
    from yolo_server.export.openvino import OpenVINORunner
    from yolo_server.ops.config import postprocess_config_for

    workdir = tmp_path_factory.mktemp("triton")
    weights = write_random_weights(workdir / "yolov4-tiny-random.weights")
    repository = workdir / "model_repository"
    size = f"{INPUT_WIDTH}x{INPUT_HEIGHT}"
    built = cli_main(
        ["build", "--cfg", str(CFG), "--weights", str(weights), "--names", str(NAMES), "--size", size,
         "--target", "cpu", "--max-batch-size", str(MAX_BATCH_SIZE), "--max-pixels", str(MAX_PIXELS),
         "--output", str(repository)]
    )  # fmt: skip
    assert built == 0, "yolo-server build failed"
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
def client(triton_server: TritonTestServer) -> Iterator[object]:
    """A bare ``tritonclient.grpc`` client of the shared server."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(triton_server.grpc_url) as connection:
        yield connection
