"""The HPA's signal sees the served model: prometheus-adapter's query over a real Prometheus and real servers.

Two ``yolo-server serve`` of the demo detector built small, the default (fused) layout and ``--no-fused`` (the
ensemble), are scraped by one Prometheus on the committed config, each target labelled with a namespace and a pod
as Kubernetes' pods job labels them. Under image traffic, the ``metricsQuery`` of
docker/k8s/prometheus-adapter/config.yaml, filled in as prometheus-adapter fills it for a pod
(tests/helpers/prometheus.py), must give a finite positive ratio for each pod: that of the model that runs the
network for images (the contract's ``network_model``), the fused model or NAME_detector, and nothing else.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.images import encode, scene
from tests.helpers.prometheus import PrometheusApi, Target, adapter_query, adapter_rule, running_prometheus
from tests.helpers.serving import READY_TIMEOUT_S, start_serve, stop_process, wait_ready
from tests.helpers.small_repository import LAYOUTS, SMALL_NAME, build_small_repository
from yolo_client.contract import network_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

HPA_METRIC = "yolo_queue_compute_ratio"  # docker/k8s/base/hpa.yaml's pods metric
NAMESPACE = "default"
PODS = {layout: f"yolo-{layout}-0" for layout in LAYOUTS}
WAVES, PER_WAVE, CONCURRENCY = 3, 24, 4  # per server: 72 images, about 4 in flight (2 fused, 1 detector instance)


@dataclass(frozen=True)
class Served:
    layout: str
    grpc_url: str
    metrics_address: str


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    """Both layouts served at once (their starts overlap), unsupervised: no canary traffic in the counters."""
    workdir = tmp_path_factory.mktemp("scaling")
    with ExitStack() as stack:
        started = {}
        stack.callback(_stop_together, started)
        for layout in LAYOUTS:
            repository = build_small_repository(workdir / layout / "model_repository", layout)
            log = workdir / layout / "serve.log"
            process, (_, grpc_port, metrics_port) = start_serve(repository, log, "--check-interval", "0")
            started[layout] = (process, log, grpc_port, metrics_port)
        served = {}
        for layout, (process, log, grpc_port, metrics_port) in started.items():
            wait_ready(f"127.0.0.1:{grpc_port}", process, log, READY_TIMEOUT_S)
            served[layout] = Served(layout, f"127.0.0.1:{grpc_port}", f"127.0.0.1:{metrics_port}")
        yield served


def _stop_together(started: dict[str, tuple[subprocess.Popen, Path, int, int]]) -> None:
    """Stop the servers by pid, their drains overlapping."""
    with ThreadPoolExecutor(max(1, len(started))) as pool:
        list(pool.map(stop_process, [process for process, *_ in started.values()]))


@pytest.fixture(scope="module")
def prometheus(servers: dict[str, Served], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusApi]:
    """The committed config's triton job on both servers, labelled as the kubernetes-pods job labels a pod."""
    targets = [Target(s.metrics_address, {"namespace": NAMESPACE, "pod": PODS[s.layout]}) for s in servers.values()]
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), {"triton": targets}) as api:
        yield api


@pytest.fixture(scope="module")
def traffic(servers: dict[str, Served], prometheus: PrometheusApi) -> dict[str, int]:
    """Images to both servers' image entry points at once, in waves a second apart: several scrapes see them."""
    from yolo_client import YoloClient

    images = [encode(".jpg", scene(240, 320, seed=seed)) for seed in range(PER_WAVE)]
    for server in servers.values():
        prometheus.wait_value(f'up{{job="triton",pod="{PODS[server.layout]}"}}')
    sent = dict.fromkeys(servers, 0)
    with ExitStack() as stack:
        clients = {
            layout: stack.enter_context(YoloClient(s.grpc_url, model=SMALL_NAME)) for layout, s in servers.items()
        }
        pool = stack.enter_context(ThreadPoolExecutor(CONCURRENCY * len(clients)))
        for wave in range(WAVES):
            if wave:
                time.sleep(1.1)
            calls = [
                (layout, pool.submit(client.detect, image)) for layout, client in clients.items() for image in images
            ]
            for layout, call in calls:
                call.result()
                sent[layout] += 1
    return sent


@pytest.mark.parametrize("layout", LAYOUTS)
def test_adapter_query_gives_the_network_models_ratio(
    layout: str, prometheus: PrometheusApi, traffic: dict[str, int]
) -> None:
    pod = PODS[layout]
    rule = adapter_rule(HPA_METRIC)
    assert any(series["pod"] == pod for series in prometheus.series(rule["seriesQuery"]))  # the adapter discovers it
    query = adapter_query(HPA_METRIC, NAMESPACE, [pod])
    value = prometheus.wait_value(query)
    # the same instant: the adapter's value is the ratio of the model that runs the network, its own counters alone
    at = time.time()
    [result] = prometheus.query(query, at)
    network = f'namespace="{NAMESPACE}",pod="{pod}",model="{network_model(SMALL_NAME, layout)}"'
    ratio = (
        f"sum(rate(nv_inference_queue_duration_us{{{network}}}[1m]))"
        f" / sum(rate(nv_inference_compute_infer_duration_us{{{network}}}[1m]))"
    )
    [expected] = prometheus.query(ratio, at)
    print(f"{layout}: {traffic[layout]} images; the adapter's {HPA_METRIC} for {pod}: {result['value'][1]}")
    assert result["metric"] == {"pod": pod}
    assert math.isfinite(value) and value > 0
    assert float(result["value"][1]) == pytest.approx(float(expected["value"][1]), rel=1e-9)
    # the dashboard's recording rule, per instance, selects the same models
    [up] = prometheus.query(f'up{{job="triton",pod="{pod}"}}')
    recorded = prometheus.wait_value(
        f'instance:yolo_queue_compute_ratio:avg1m{{instance="{up["metric"]["instance"]}"}}'
    )
    assert math.isfinite(recorded) and recorded > 0


def test_adapter_query_for_several_pods_gives_each_its_own(prometheus: PrometheusApi, traffic: dict[str, int]) -> None:
    """The HPA asks for all its pods at once (``pod=~"a|b"``): one finite positive value per pod."""
    query = adapter_query(HPA_METRIC, NAMESPACE, list(PODS.values()))
    prometheus.wait_value(query)
    values = {result["metric"]["pod"]: float(result["value"][1]) for result in prometheus.query(query)}
    assert set(values) == set(PODS.values())
    assert all(math.isfinite(v) and v > 0 for v in values.values()), values
