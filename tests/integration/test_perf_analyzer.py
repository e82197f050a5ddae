"""``yolo_server.tuning.perf_analyzer`` against a real server: the demo detector built small (128x128, the fused
cpu model) served by ``yolo-server serve``, measured by the real perf_analyzer that ``make perf-tools`` installs.

Short windows and a loose stability bound keep it to seconds on a busy 2-core host; the assertions are the ones
that hold at any load: positive throughput, ordered percentiles, Triton's own time within the client's.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.images import encode, scene
from tests.helpers.serving import serving
from tests.helpers.small_repository import SMALL_NAME, build_small_repository
from yolo_client.contract import IMAGE
from yolo_server.tuning.perf_analyzer import (
    Measurement,
    MeasurementSettings,
    PerfAnalyzerError,
    input_data,
    measure,
    parse_csv,
    write_input_data,
)

pytestmark = pytest.mark.integration

# perf_analyzer 2.50's --verbose-csv header, and one row of it as it wrote it against the small model (microseconds)
CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,"
    "Avg latency,request/response,response wait\n"
    "2,39.639,13,2365,1392,49,19182,350,6,18722,39440,50214,60215,23360,19,23298\n"
)
# a window of 1 s, stable within 2x over the last 3: settles at 3-4 windows per concurrency even on busy cores
SETTINGS = MeasurementSettings(measurement_interval_ms=1000, stability_percentage=100, max_trials=8, timeout_s=60)


def jpeg(seed: int = 0) -> bytes:
    """A 640x480 scene as JPEG: what the model decodes and letterboxes per request."""
    return encode(".jpg", scene(480, 640, seed=seed))


def test_input_data_is_each_image_as_a_length_prefixed_bytes_element_in_base64() -> None:
    images = [jpeg(0), jpeg(1)]
    decoded = json.loads(json.dumps(input_data(images)))
    assert [list(entry) for entry in decoded["data"]] == [[IMAGE], [IMAGE]]
    for entry, image in zip(decoded["data"], images, strict=True):
        raw = base64.b64decode(entry[IMAGE]["b64"])
        assert struct.unpack("<I", raw[:4]) == (len(image),)
        assert raw[4:] == image


def test_one_image_is_one_entry_under_the_input_name_given(tmp_path: Path) -> None:
    path = write_input_data(tmp_path / "input.json", b"\xff\xd8 not much", input_name="PICTURE")
    [entry] = json.loads(path.read_text())["data"]
    assert base64.b64decode(entry["PICTURE"]["b64"]) == b"\x0b\x00\x00\x00\xff\xd8 not much"


def test_the_verbose_csv_becomes_milliseconds_and_images_per_second() -> None:
    [m] = parse_csv(CSV, batch_size=4)
    assert (m.concurrency, m.batch_size, m.throughput) == (2, 4, 39.639)
    assert m.requests_per_s == pytest.approx(39.639 / 4)
    assert (m.p50_ms, m.p90_ms, m.p95_ms, m.p99_ms, m.avg_ms) == (18.722, 39.44, 50.214, 60.215, 23.36)
    assert (m.client_send_ms, m.network_ms, m.client_recv_ms) == (0.013, 2.365, 0.006)
    assert (m.server_queue_ms, m.server_compute_input_ms, m.server_compute_infer_ms) == (1.392, 0.049, 19.182)
    assert m.server_compute_output_ms == 0.35
    assert m.server_ms == pytest.approx(1.392 + 0.049 + 19.182 + 0.35)
    with pytest.raises(PerfAnalyzerError, match="Server Queue"):
        parse_csv(CSV.replace("Server Queue", "Queue"))


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("perf-analyzer")
    repository = build_small_repository(workdir / "model_repository", "fused")
    with serving(repository, workdir, "--check-interval", "0") as grpc_url:  # no canary traffic in the counts
        yield grpc_url


@pytest.mark.timeout(240)
def test_two_concurrencies_measure_sane_throughput_latency_and_server_split(small_server: str, tmp_path: Path) -> None:
    data = write_input_data(tmp_path / "input.json", jpeg())
    measurements = measure(small_server, SMALL_NAME, data, [1, 2], SETTINGS)
    assert [m.concurrency for m in measurements] == [1, 2]
    for m in measurements:
        assert m.throughput > 0 and m.batch_size == 1
        assert 0 < m.p50_ms <= m.p90_ms <= m.p95_ms <= m.p99_ms
        assert m.server_compute_infer_ms > 0 and m.server_queue_ms >= 0
        # Triton's queue and compute happen inside the client's round trip (averages of the same requests)
        assert m.server_ms <= m.avg_ms * 1.05


@pytest.mark.timeout(120)
def test_a_batch_sends_the_one_image_per_row_and_counts_images(small_server: str, tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    def inferences() -> int:
        with grpcclient.InferenceServerClient(small_server) as client:
            stats = client.get_inference_statistics(SMALL_NAME, as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0))

    data = write_input_data(tmp_path / "input.json", jpeg())
    before = inferences()
    settings = MeasurementSettings(batch_size=3, request_count=5, timeout_s=60)
    [m] = measure(small_server, SMALL_NAME, data, [1], settings)
    assert inferences() - before == 3 * 5  # every request carried 3 rows, and Triton answered them all
    assert isinstance(m, Measurement) and m.batch_size == 3
    assert m.requests_per_s == pytest.approx(m.throughput / 3)


@pytest.mark.timeout(60)
def test_a_failure_is_raised_with_perf_analyzers_own_error(small_server: str, tmp_path: Path) -> None:
    data = write_input_data(tmp_path / "input.json", jpeg())
    with pytest.raises(PerfAnalyzerError, match="unknown model: 'no_such_model'"):
        measure(small_server, "no_such_model", data, [1], SETTINGS)
