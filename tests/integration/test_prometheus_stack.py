"""A real Prometheus (Debian's binary) with the project's config and rules, scraping the real Triton.

The committed docker/prometheus/prometheus.yml is loaded and changed only where a test must
(tests/helpers/prometheus.py): its scrape targets (the fixture's metrics port and an in-process SDK exporter
instead of compose service names), 1 s intervals and absolute rule-file paths. Traffic comes from the SDK; the
recorded series are read back through the HTTP API.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.helpers.paths import ROOT
from tests.helpers.prometheus import PROM_DIR, PrometheusApi, Target, running_prometheus
from yolo_server.launcher.ports import free_ports

pytestmark = pytest.mark.integration

sys.path.insert(0, str(ROOT / "loadtest"))


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
    metrics = urllib.parse.urlparse(triton_server.metrics_url)
    targets = {"triton": [Target(metrics.netloc)], "yolo-client": [Target(f"127.0.0.1:{exporter}")]}
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), targets) as api:
        yield api


def test_config_scrapes_the_triton_and_sdk_jobs_only() -> None:
    """The committed config's jobs are the two this module replaces the targets of: none is left unscraped."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == {"triton", "yolo-client"}


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
