"""Requests of 1 GiB straight at the port a client reaches, in each deployment shape: refused at the front,
naming the cap, within seconds, with good requests beside them answered and the server's memory where it was.

Shapes: ``yolo-server serve`` with its defaults, and the server container of compose and of the k8s pod (the
argv ``docker/entrypoint.sh serve`` gives under their environment: one argv, checked equal), run here on
loopback with free ports in place of ``0.0.0.0`` and 8000-8002.
"""

from __future__ import annotations

import http.client
import statistics
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml

from bench.oversized import MIB, RawChannel, image_request, oversized_request
from bench.server_processes import server_memory
from tests.helpers.deploy import DOCKER, entrypoint_argv
from tests.helpers.images import encode, scene
from tests.helpers.serving import READY_TIMEOUT_S, TritonTestServer, start_serve, stop_process, triton_pid, wait_ready
from yolo_server.launcher.process import shm_prefix
from yolo_server.launcher.supervise import stub_processes

pytestmark = pytest.mark.integration

GIB = 1 << 30
SEQUENTIAL, AT_ONCE = 20, 4
MEMORY_BOUND_MIB = 512
REFUSAL_S = 2.0  # the goal for a capping front, on the median of the sequential run


def container_env(shape: str) -> dict[str, str]:
    """The server container's environment: the k8s pod's `triton` container, or compose's `server-cpu`."""
    if shape == "k8s":
        deployment = yaml.safe_load((DOCKER / "k8s" / "base" / "deployment.yaml").read_text())
        (triton,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "triton"]
        assert triton["args"] == ["serve"]
        return {item["name"]: item["value"] for item in triton["env"]}
    service = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["server-cpu"]
    assert service["command"] == ["serve"]
    # `${NAME:-}` is empty unless the operator sets it; entrypoint.sh treats empty as unset
    return {k: str(v) for k, v in service["environment"].items() if not str(v).startswith("${")}


def container_serve_args(argv: list[str]) -> list[str]:
    """A container's ``yolo-server serve`` argv less what a test sets itself (repository, host, ports: a container
    binds all its addresses, on serve's default ports unless its variables say otherwise)."""
    assert argv[:2] == ["yolo-server", "serve"], argv
    rest = argv[3:]
    assert rest[rest.index("--host") + 1] == "0.0.0.0", argv
    for flag in ("--host", "--http-port", "--grpc-port", "--metrics-port"):
        if flag in rest:
            at = rest.index(flag)
            del rest[at : at + 2]
    return rest


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    grpc_url: str
    http_port: int
    log: Path

    @property
    def triton_pid(self) -> int:
        return triton_pid(self.log)


@pytest.fixture(scope="module", params=["yolo-server serve", "compose and k8s server container"])
def served(
    request: pytest.FixtureRequest, triton_server: TritonTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    extra: list[str] = []
    if request.param != "yolo-server serve":
        pod, compose = (
            entrypoint_argv("serve", container_env("k8s")),
            entrypoint_argv("serve", container_env("compose")),
        )
        assert pod == compose, (pod, compose)
        assert "--no-front" not in pod and "--max-request-bytes" not in pod  # the default cap, on
        extra = container_serve_args(pod)  # last on the command line: the container's settings win
    log = tmp_path_factory.mktemp("oversized") / "serve.log"
    process, (http_port, grpc_port, _) = start_serve(triton_server.repository, log, *extra)
    try:
        wait_ready(f"127.0.0.1:{grpc_port}", process, log, READY_TIMEOUT_S)
        yield Served(process, f"127.0.0.1:{grpc_port}", http_port, log)
    finally:
        stop_process(process)


def test_gigabyte_requests_are_refused_at_the_front_and_cost_no_memory(
    served: Served, triton_server: TritonTestServer
) -> None:
    model = triton_server.model_name
    good = image_request(model, encode(".jpg", scene(240, 320, seed=5)))
    oversized = oversized_request(model, GIB)
    with RawChannel(served.grpc_url) as channel:
        assert channel.send(good).code == grpc.StatusCode.OK  # warm: first-inference allocations come before
        triton, launcher = served.triton_pid, served.process.pid
        stubs = set(stub_processes(triton))
        before = server_memory(triton, shm_prefix(launcher))

        neighbours: list[grpc.StatusCode] = []
        done = threading.Event()

        def neighbour() -> None:
            while not done.is_set():
                neighbours.append(channel.send(good, timeout_s=60).code)

        beside = threading.Thread(target=neighbour)
        beside.start()
        try:
            sequential = [channel.send(oversized) for _ in range(SEQUENTIAL)]
            with ThreadPoolExecutor(AT_ONCE) as pool:
                at_once = list(pool.map(lambda _: channel.send(oversized), range(AT_ONCE)))
        finally:
            done.set()
            beside.join(90)
        after = server_memory(triton, shm_prefix(launcher))

    seconds = [o.seconds for o in sequential]
    print(f"\n1 GiB refusals: median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s sequential, "
          f"max {max(o.seconds for o in at_once):.2f} s at once; memory {before} -> {after}; "
          f"{len(neighbours)} good requests beside them")  # fmt: skip
    for outcome in sequential + at_once:
        assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
        assert "MiB cap" in outcome.message, outcome
    assert statistics.median(seconds) <= REFUSAL_S, seconds
    assert neighbours and set(neighbours) == {grpc.StatusCode.OK}, neighbours
    assert served.process.poll() is None and served.triton_pid == triton and set(stub_processes(triton)) == stubs
    assert after.total_mib <= before.total_mib + MEMORY_BOUND_MIB, (before, after)


def test_a_gigabyte_http_body_is_refused_before_it_is_read(served: Served, triton_server: TritonTestServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=10)
    try:
        connection.putrequest("POST", f"/v2/models/{triton_server.model_name}/infer")
        connection.putheader("Content-Length", str(GIB))
        connection.endheaders()  # no body sent: the length alone is refused
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 413 and b"MiB cap" in body, (response.status, body)
    assert float(body.split(b"the ")[1].split(b" MiB")[0]) * MIB > 64 * MIB  # one 64 MiB image still fits
