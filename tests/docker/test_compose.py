"""docker/compose.yaml run for real: the cpu pair, the cpu-lb balancer over two replicas and the loadtest profile,
on the images built from docker/Dockerfile.cpu, with the tests' host-network override (tests/helpers/compose_run.py).

One project for the module, in order: the builder writes the repository into the volume once; the server serves
it and turns healthy; its answers are the in-process oracle's on the same IR; it runs as non-root on a read-only
root filesystem; locust runs headless against it and writes its CSV; a replica joins behind nginx and is stopped
under load without a request lost; `docker stop` drains the server and it exits 0. ``down -v`` removes it all.
"""

from __future__ import annotations

import csv
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.compose_run import ComposeProject, HostNetworkOverride, ServerPorts
from tests.helpers.docker_engine import Build, container_ids, docker, inspect, wait_healthy
from tests.helpers.images import encode, scene
from yolo_client.contract import DEFAULT_MODEL

pytestmark = pytest.mark.timeout(2400)

HEALTHY_TIMEOUT_S = 420
BUILD_TIMEOUT_S = 900
LOCUST_SECONDS = 12


@dataclass(frozen=True)
class Stack:
    project: ComposeProject
    server: ServerPorts
    replica: ServerPorts
    balancer: ServerPorts
    locust_out: Path

    def container(self, service: str) -> str:
        [found] = container_ids(self.project.name, service)
        return found


@pytest.fixture(scope="module")
def stack(images: dict[str, Build], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("compose")
    locust_out = workdir / "locust"
    locust_out.mkdir(mode=0o777)
    locust_out.chmod(0o777)  # the loadtest image's user writes its CSV here
    server, replica, balancer = ServerPorts.free(), ServerPorts.free(), ServerPorts.free()
    master_port = balancer.metrics  # a free port of its own: locust's master on the host network
    headless = ["--headless", "--host", f"grpc://{server.grpc_url}", "--model", DEFAULT_MODEL]
    override = HostNetworkOverride(
        servers={"server-cpu": server, "server-cpu-replica": replica},
        # fp32: the oracle below runs the same IR; the INT8 build is the in-process tests' (test_demo_model)
        environment={"builder-cpu": {"PRECISION": "fp32"}},
        commands={
            "locust-master": [
                "--master",
                "--master-bind-port",
                str(master_port),
                "--expect-workers",
                "1",
                *headless,
                "--users",
                "4",
                "--spawn-rate",
                "4",
                "--run-time",
                f"{LOCUST_SECONDS}s",
                "--csv",
                "/out/stats",
            ],
            "locust-worker": ["--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)],
        },  # fmt: skip
        volumes={"locust-master": [f"{locust_out}:/out"]},
        balancer=("nginx-cpu", balancer),
    )
    project = ComposeProject.write(f"yolotest{secrets.token_hex(4)}", override, workdir)
    try:
        project.run("--profile", "cpu", "up", "-d", "server-cpu", timeout=BUILD_TIMEOUT_S)
        yield Stack(project, server, replica, balancer, locust_out)
    finally:
        logs = project.run("--profile", "cpu", "--profile", "cpu-lb", "--profile", "loadtest", "logs", check=False)
        (workdir / "compose.log").write_text(logs.stdout + logs.stderr)
        project.run("--profile", "cpu", "--profile", "cpu-lb", "--profile", "loadtest", "down", "-v", "-t", "60",
                    check=False, timeout=300)  # fmt: skip


def test_builder_writes_the_repository_and_exits_0(stack: Stack) -> None:
    builder = stack.container("builder-cpu")
    assert inspect(builder, "{{.State.ExitCode}}") == "0"
    listing = docker("run", "--rm", "--network", "host", "-v", f"{stack.project.name}_model-repository-cpu:/r:ro",
                     "--entrypoint", "ls", inspect(builder, "{{.Config.Image}}"), f"/r/{DEFAULT_MODEL}/1")  # fmt: skip
    assert "model.xml" in listing.stdout.split()


def test_server_turns_healthy_and_answers_as_the_oracle(stack: Stack, tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    from tests.helpers.darknet_files import DEMO_CFG, DEMO_NAMES, DEMO_WEIGHTS
    from tests.helpers.triton_requests import assert_same_detections, bytes_inputs, split_result
    from yolo_client import YoloClient
    from yolo_server.ops.config import PostprocessConfig
    from yolo_server.pipeline import Detector
    from yolo_server.triton.runtime import OpenVINORunner

    server = stack.container("server-cpu")
    wait_healthy(server, HEALTHY_TIMEOUT_S)
    print(stack.project.run("--profile", "cpu", "ps").stdout)  # the run's record (`pytest -s`)
    for name in ("model.xml", "model.bin"):  # the IR the server loaded, out of the volume
        docker("cp", f"{server}:/repository/{DEFAULT_MODEL}/1/{name}", str(tmp_path / name))
    with YoloClient(stack.server.grpc_url, model=DEFAULT_MODEL) as client:
        info = client.model_info()
    network = OpenVINORunner(tmp_path / "model.xml", "fp32")
    detector = Detector(DEMO_CFG, DEMO_WEIGHTS, DEMO_NAMES, info.input_width,
                        config=PostprocessConfig.from_model_info(info), network=network)  # fmt: skip
    with grpcclient.InferenceServerClient(stack.server.grpc_url) as raw:
        for seed in range(3):
            data = encode(".jpg", scene(480, 640, seed))
            [found] = split_result(raw.infer(DEFAULT_MODEL, bytes_inputs([data])))
            [expected] = detector.detect_encoded([data])
            assert len(expected) > 0
            assert_same_detections(found, expected, max_detections=info.max_detections)


def test_server_runs_as_non_root_on_a_read_only_root(stack: Stack) -> None:
    server = stack.container("server-cpu")
    assert inspect(server, "{{.Config.User}}") == "10001"
    assert inspect(server, "{{.HostConfig.ReadonlyRootfs}}") == "true"
    assert docker("exec", server, "id", "-u").stdout.strip() == "10001"
    refused = docker("exec", server, "touch", "/opt/yolo/written", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert docker("exec", server, "python3", "-c", "import torch", check=False).returncode != 0  # no torch served


def test_loadtest_runs_headless_and_writes_its_csv(stack: Stack) -> None:
    stack.project.run("--profile", "loadtest", "up", "-d", "locust-master", "locust-worker")
    master = stack.container("locust-master")
    deadline = time.monotonic() + LOCUST_SECONDS + 120
    while inspect(master, "{{.State.Status}}") != "exited":
        assert time.monotonic() < deadline, docker("logs", "--tail", "40", master).stderr
        time.sleep(2)
    log = docker("logs", master)
    assert inspect(master, "{{.State.ExitCode}}") == "0", log.stdout[-3000:] + log.stderr[-3000:]
    with open(stack.locust_out / "stats_stats.csv") as stats:
        total = next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0, total
    print({key: total[key] for key in ("Request Count", "Failure Count", "Requests/s", "50%", "99%")})


def test_a_replica_stopped_under_load_behind_nginx_loses_no_request(stack: Stack) -> None:
    """Four SDK clients (their default retry policy) through nginx-cpu while `docker stop` drains one replica:
    nginx retries what the draining replica refuses on the other, and every request is answered."""
    from yolo_client import YoloClient

    stack.project.run("--profile", "cpu", "--profile", "cpu-lb", "up", "-d", "server-cpu-replica", "nginx-cpu",
                      timeout=HEALTHY_TIMEOUT_S)  # fmt: skip
    replica = stack.container("server-cpu-replica")
    wait_healthy(replica, HEALTHY_TIMEOUT_S)
    wait_healthy(stack.container("nginx-cpu"), 120)
    image = scene(480, 640, seed=7)
    stop, answered, failed = threading.Event(), [], []

    def load() -> None:
        with YoloClient(stack.balancer.grpc_url, model=DEFAULT_MODEL) as client:
            while not stop.is_set():
                try:
                    answered.append(len(client.detect(image, color="rgb")))
                except Exception as exc:  # noqa: BLE001 - every failure is the finding
                    failed.append(repr(exc))

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(load)
        time.sleep(5)
        before = len(answered)
        docker("stop", "-t", "45", replica, timeout=120)
        time.sleep(5)
        stop.set()
    print(f"through nginx: {before} answered before the stop, {len(answered)} in all, {len(failed)} failed")
    print(stack.project.run("--profile", "cpu", "--profile", "cpu-lb", "ps").stdout)
    assert before > 0 and len(answered) > before, (before, len(answered))
    assert not failed, failed[:5]
    assert inspect(replica, "{{.State.ExitCode}}") == "0"
    access = docker("logs", stack.container("nginx-cpu")).stdout
    served_by = {f"127.0.0.1:{ports.grpc}" for ports in (stack.server, stack.replica)}
    assert all(f"upstream={address}" in access for address in served_by), "both replicas served"


def test_docker_stop_drains_the_server_and_it_exits_0(stack: Stack) -> None:
    from yolo_client import YoloClient

    server = stack.container("server-cpu")
    image = scene(480, 640, seed=8)
    with YoloClient(stack.server.grpc_url, model=DEFAULT_MODEL) as client, ThreadPoolExecutor(4) as pool:
        in_flight = [pool.submit(client.detect, image, color="rgb") for _ in range(8)]
        time.sleep(0.5)  # arrived: a draining Triton answers what it holds and refuses what comes after
        docker("stop", "-t", "45", server, timeout=120)
        results = [future.result(timeout=60) for future in in_flight]
    assert len(results) == len(in_flight)
    assert inspect(server, "{{.State.ExitCode}}") == "0"
    drained = docker("logs", "--tail", "8", server)
    print(drained.stdout + drained.stderr)
