"""A real Prometheus (Debian's binary) with the project's config and rules, scraping the real Triton.

The committed docker/prometheus/prometheus.yml is loaded and changed only where a test must: its scrape targets
(the fixture's metrics port and an in-process SDK exporter instead of compose service names), 1 s intervals and
absolute rule-file paths. Traffic comes from the SDK; the recorded series are read back through the HTTP API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import ROOT
from tests.helpers.serving import http_ok, stop_process, wait_until
from yolo_server.launcher.ports import free_ports

pytestmark = pytest.mark.integration

PROM_DIR = ROOT / "docker" / "prometheus"
sys.path.insert(0, str(ROOT / "loadtest"))


def write_test_config(metrics_target: str, client_target: str, workdir: Path) -> dict:
    """The committed config with test targets, 1 s intervals and absolute rule paths."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(PROM_DIR / pattern) for pattern in config["rule_files"]]
    targets = {"triton": metrics_target, "yolo-client": client_target}
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


class PrometheusApi:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]

    def wait_value(self, expr: str, timeout_s: float = 45.0) -> float:
        """The first positive value of ``expr`` (a single series), polling until it has one."""
        values: list[float] = []

        def positive() -> bool:
            values[:] = [float(r["value"][1]) for r in self.query(expr)]
            return bool(values) and values[0] > 0

        wait_until(positive, timeout_s, f"{expr} to become positive", interval_s=1.0)
        return values[0]


@pytest.fixture(scope="module")
def exporter() -> Iterator[int]:
    """The SDK's metrics in this process, exposed as an application would (prometheus_client)."""
    import prometheus_client

    [port] = free_ports(1)
    server, thread = prometheus_client.start_http_server(port, addr="127.0.0.1")
    yield port
    server.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def prometheus(triton_server, exporter: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusApi]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: run `make system-deps` (Debian package prometheus)")
    workdir = tmp_path_factory.mktemp("prometheus")
    metrics = urllib.parse.urlparse(triton_server.metrics_url)
    write_test_config(metrics.netloc, f"127.0.0.1:{exporter}", workdir)
    [port] = free_ports(1)
    log_path = workdir / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    api = PrometheusApi(f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: http_ok(f"{api.url}/-/ready"), 60, "prometheus to be ready", process, log_path)
        yield api
    finally:
        stop_process(process, 20)


@pytest.fixture(scope="module")
def traffic(triton_server, prometheus: PrometheusApi) -> int:
    """Detections through the SDK spread over several scrapes (metrics on, as the exporter job expects)."""
    from yolo_client import YoloClient
    from yolo_load.images import ImageMix, parse_mix

    mix = ImageMix.generate(parse_mix("320x240:jpeg:3,640x480:png:1"), variants=2)
    images = [data for label in mix.images for data in mix.images[label]]
    prometheus.wait_value('up{job="triton"}')
    sent = 0
    with YoloClient(triton_server.grpc_url, model=triton_server.model_name, metrics=True) as client:
        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):  # four waves, a second or more apart: several scrapes see the counters grow
                sent += sum(1 for _ in pool.map(client.detect, images * 2))
                time.sleep(1.2)
    return sent


def test_served_fps_recording_rule_is_positive(prometheus: PrometheusApi, traffic: int, triton_server) -> None:
    """The images go through the fused cpu model: it is the one that runs the network, so its rate is the FPS."""
    model = triton_server.model_name
    fps = prometheus.wait_value(f'model:yolo_served_images:rate1m{{model="{model}"}}')
    assert 0 < fps < traffic
    assert prometheus.wait_value(f'model:nv_inference_batch_size:avg1m{{model="{model}"}}') >= 1


def test_postprocess_histogram_is_scraped_and_recorded(prometheus: PrometheusApi, traffic: int, triton_server) -> None:
    post = triton_server.model_name  # the fused model exports the postprocess histogram under its own name
    count = prometheus.wait_value(f'sum(yolo_postprocess_duration_seconds_count{{model="{post}"}})')
    assert count >= 1
    p95 = prometheus.wait_value(f'model:yolo_postprocess_duration_seconds:p95_1m{{model="{post}"}}')
    assert 0 < p95 < 60
    assert prometheus.wait_value(f'model:yolo_postprocess_duration_seconds:mean1m{{model="{post}"}}') > 0


def test_latency_and_queue_series_exist(prometheus: PrometheusApi, traffic: int, triton_server) -> None:
    model = triton_server.model_name
    p99 = prometheus.wait_value(
        f'model_quantile:nv_inference_request_summary_us:max{{model="{model}",quantile="0.99"}}'
    )
    assert p99 > 0
    assert prometheus.wait_value(f'model:nv_inference_compute_infer_us_per_request:avg1m{{model="{model}"}}') > 0
    assert prometheus.wait_value("yolo:slo_target_fps") == 65


def test_sdk_exporter_is_scraped(prometheus: PrometheusApi, traffic: int, triton_server) -> None:
    ok = prometheus.wait_value(
        f'sum(yolo_client_requests_total{{job="yolo-client",outcome="ok",model="{triton_server.model_name}"}})'
    )
    assert ok >= traffic


def test_every_rule_evaluates_without_error(prometheus: PrometheusApi, traffic: int) -> None:
    prometheus.wait_value("yolo:triton_instances:up")
    groups = prometheus.get("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    alerts = {rule["name"] for rule in rules if rule["type"] == "alerting"}
    assert {
        "YoloServedFpsBelowTarget",
        "YoloLatencyP99OverBudget",
        "YoloQueueTimeAboveComputeTime",
        "YoloRequestFailureRatioHigh",
        "YoloTritonDown",
    } <= alerts
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] == "err"}
    assert broken == {}
