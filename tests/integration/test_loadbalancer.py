"""docker/nginx/nginx.conf, run by Debian's nginx on loopback in front of two real `yolo-server serve` replicas.

The config is the very file docker/compose.yaml mounts; only its upstream `server` lines and listen ports are
substituted for free loopback ports. nginx runs in the foreground with its own prefix, pid and logs in tmp.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.images import encode, scene
from tests.helpers.nginx_balancer import NGINX_CONF, render_nginx_conf
from tests.helpers.serving import (
    READY_TIMEOUT_S,
    TritonTestServer,
    http_ok,
    kill_server,
    start_serve,
    stop_process,
    wait_ready,
    wait_until,
)
from yolo_server.launcher.ports import free_ports

pytestmark = pytest.mark.integration


@dataclass
class Replica:
    process: subprocess.Popen
    http: str
    grpc: str
    log: Path

    def inference_count(self, model: str) -> int:
        with urllib.request.urlopen(f"http://{self.http}/v2/models/{model}/stats", timeout=10) as response:
            stats = json.load(response)["model_stats"]
        return sum(int(entry.get("inference_count", 0)) for entry in stats)


@pytest.fixture(scope="module")
def replicas(triton_server: TritonTestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Replica]]:
    workdir = tmp_path_factory.mktemp("replicas")
    started: list[Replica] = []
    try:
        for index in range(2):
            log = workdir / f"replica{index}.log"
            # no supervision: its canaries would add inferences to the counts these tests compare
            process, (http, grpc, _) = start_serve(triton_server.repository, log, "--check-interval", "0")
            started.append(Replica(process, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", log))
        for replica in started:
            wait_ready(replica.grpc, replica.process, replica.log, READY_TIMEOUT_S)
        yield started
    finally:
        for replica in started:
            stop_process(replica.process)


@dataclass
class Balancer:
    grpc: str
    http: str
    access_log: Path


@pytest.fixture(scope="module")
def balancer(replicas: list[Replica], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balancer]:
    nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
    if nginx is None:
        pytest.fail("nginx not found: run `make system-deps` (Debian package nginx)")
    prefix = tmp_path_factory.mktemp("nginx")
    grpc_port, http_port = free_ports(2)
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx_conf(
            NGINX_CONF.read_text(),
            [r.grpc for r in replicas],
            [r.http for r in replicas],
            grpc_port,
            http_port,
            prefix,
        )
    )
    access_log, error_log = prefix / "access.log", prefix / "error.log"
    with open(access_log, "wb") as out, open(error_log, "wb") as err:
        process = subprocess.Popen(
            [
                nginx,
                "-p",
                str(prefix),
                "-e",
                str(error_log),
                "-c",
                str(conf),
                "-g",
                "daemon off;",
            ],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        for path in ("/lb/health", "/v2/health/ready"):
            wait_until(
                lambda p=path: http_ok(f"http://127.0.0.1:{http_port}{p}"), 30, f"nginx {path}", process, error_log
            )
        yield Balancer(f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}", access_log)
    finally:
        stop_process(process)


def frames() -> list[bytes]:
    """Four 320x240 JPEGs."""
    return [encode(".jpg", scene(240, 320, seed)) for seed in range(4)]


def test_requests_through_nginx_reach_both_replicas(
    triton_server: TritonTestServer, replicas: list[Replica], balancer: Balancer
) -> None:
    from yolo_client import YoloClient

    model = triton_server.model_name
    before = [r.inference_count(model) for r in replicas]
    images = frames() * 6
    # one client, one HTTP/2 connection to nginx: spreading it is nginx's work, not the client's
    with YoloClient(balancer.grpc, model=model) as client, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(client.detect, images))
    assert len(results) == len(images)

    def counted() -> list[int]:
        return [r.inference_count(model) - b for r, b in zip(replicas, before, strict=True)]

    # Triton counts an inference just after its response left: poll briefly for the last ones
    wait_until(lambda: sum(counted()) >= len(images), 10, f"{len(images)} inferences counted", interval_s=0.2)
    served = counted()
    assert all(count > 0 for count in served), served
    assert sum(served) == len(images)


def requests_seen(replica: Replica, model: str) -> int:
    """Requests ``model`` has finished on ``replica``, whether they succeeded or failed."""
    with urllib.request.urlopen(f"http://{replica.http}/v2/models/{model}/stats", timeout=10) as response:
        stats = json.load(response)["model_stats"]
    return sum(
        int(entry["inference_stats"][outcome].get("count", 0)) for entry in stats for outcome in ("success", "fail")
    )


def test_a_request_over_the_64_mib_cap_is_resource_exhausted_and_reaches_no_model(
    triton_server: TritonTestServer, replicas: list[Replica], balancer: Balancer
) -> None:
    """65 MiB of IMAGE bytes: nginx stops it at ``client_max_body_size 64m`` and answers RESOURCE_EXHAUSTED.

    nginx streams gRPC bodies, so a replica may see the start of the request but never a whole one: its image
    model counts no request (success or failure). The same connection then serves a normal request.
    """
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    model = triton_server.model_name
    watched = [model]
    oversized = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    oversized.set_data_from_numpy(np.array([[bytes(65 << 20)]], dtype=object))
    # tritonclient's channel sends messages up to 2 GiB - 1, as Triton accepts: the cap is nginx's alone
    with grpcclient.InferenceServerClient(balancer.grpc) as client:
        before = [[requests_seen(r, name) for name in watched] for r in replicas]
        with pytest.raises(InferenceServerException) as refused:
            client.infer(model, [oversized], client_timeout=60)
        after = [[requests_seen(r, name) for name in watched] for r in replicas]
        assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED", refused.value
        assert "64 MiB" in refused.value.message()
        assert after == before, "the oversized request reached a model"
        image = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[frames()[0]]], dtype=object))
        result = client.infer(model, [image], client_timeout=60)
    assert result.as_numpy("COUNT").shape == (1, 1)


def test_a_replica_killed_mid_run_loses_no_request(
    triton_server: TritonTestServer, replicas: list[Replica], balancer: Balancer
) -> None:
    """200 requests; after 50 have started, replica 1 crashes (launcher, tritonserver and stubs: SIGKILL).

    Requests nginx had not yet sent go to the other replica (grpc_next_upstream error); the few in flight on
    the dying replica come back as 502/UNAVAILABLE and the SDK's default retry goes through nginx, which has by
    then marked the dead replica failed, to the live one.
    """
    from yolo_client import YoloClient

    model = triton_server.model_name
    survivor, victim = replicas
    before = survivor.inference_count(model)
    images = frames()
    total, kill_at = 200, 50
    killed = threading.Event()
    outcomes: list[str] = []

    def one(index: int) -> str:
        if index == kill_at:
            kill_server(victim.process, victim.log)
            killed.set()
        try:
            client.detect(images[index % len(images)])
            return "ok"
        except Exception as exc:  # every loss is counted, none hidden
            return f"{type(exc).__name__}: {exc}"

    with YoloClient(balancer.grpc, model=model) as client, ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(one, range(total)))
    assert killed.is_set()
    lost = [o for o in outcomes if o != "ok"]
    assert lost == [], f"{len(lost)} of {total} lost: {lost[:5]}"
    assert survivor.inference_count(model) - before >= total - kill_at
    log = balancer.access_log.read_text()
    assert victim.grpc in log  # the victim did take requests through nginx before it died
