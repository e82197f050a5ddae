"""The client against extra servers it starts itself: failover between two, and TLS (mutual).

Each extra tritonserver costs CPU, so each is started once, on the session's model repository.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.certificates import write_certificates
from tests.helpers.images import encode, scene
from tests.helpers.serving import (
    TritonTestServer,
    http_ok,
    kill_server,
    model_stubs,
    remove_crash_leftovers,
    start_serve,
    stop_process,
    triton_pid,
    wait_until,
)
from tests.helpers.triton_requests import as_found, assert_same_detections
from yolo_client import (
    ClientMetrics,
    HealthCheckOptions,
    RetryPolicy,
    ServerRejectedError,
    TlsConfig,
    UnavailableError,
    YoloClient,
)
from yolo_server.launcher.ports import free_ports

pytestmark = pytest.mark.integration
READY_TIMEOUT_S = 180.0


def _images(count: int) -> list[bytes]:
    """``count`` PNGs, each of another size and content."""
    return [encode(".png", scene(120 + 10 * i, 160 + 20 * i, seed=i)) for i in range(count)]


def test_failover_readmission_and_a_crash_mid_run(triton_server: TritonTestServer, tmp_path: Path) -> None:
    """A second server joins the rotation once ready; SIGKILL-ing it during 200 requests loses none."""
    http_port, grpc_port, metrics_port = free_ports(3)
    second = f"127.0.0.1:{grpc_port}"
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    checks = HealthCheckOptions(interval=1.0, recheck_interval=0.5, probe_timeout=1.0)
    images = _images(4)
    urls = [triton_server.grpc_url, second]
    with YoloClient(urls, triton_server.model_name, timeout=60, health_check=checks, max_in_flight=8,
                    metrics=ClientMetrics.shared(registry)) as client:  # fmt: skip
        expected = [client.detect(data) for data in images]  # served by the first: the second is not up
        wait_until(lambda: not client.pool.is_up(second), 10, "the checker takes the missing endpoint out")

        log = tmp_path / "second.log"
        process, _ = start_serve(
            triton_server.repository, log, ports=(http_port, grpc_port, metrics_port), exit_timeout_s=5
        )
        try:
            wait_until(lambda: client.pool.is_up(second), READY_TIMEOUT_S, "the second server to be readmitted",
                       process, log)  # fmt: skip

            done = []
            lock = threading.Lock()

            def one(i: int):
                result = client.detect(images[i % len(images)])
                with lock:
                    done.append(i)
                return result

            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(one, i) for i in range(200)]
                wait_until(lambda: len(done) >= 50, 120, "50 requests done", process, log)
                served_by_second = _success_count(second, triton_server.model_name)
                kill_server(process, log)
                results = [f.result() for f in futures]  # raises if any request was lost
        finally:
            kill_server(process, log)
        assert served_by_second > 0, "round-robin should have sent requests to the second server"
        assert not client.pool.is_up(second)
    assert len(results) == 200
    for i, found in enumerate(results):  # either server, batched or not: the same detections
        assert_same_detections(as_found(found), as_found(expected[i % len(images)]))
    retries = registry.get_sample_value(
        "yolo_client_retries_total", {"model": triton_server.model_name, "status": "UNAVAILABLE"}
    )
    ok = registry.get_sample_value(
        "yolo_client_requests_total", {"model": triton_server.model_name, "transport": "bytes", "outcome": "ok"}
    )
    assert ok == 204 and retries and retries >= 1  # requests in flight on the crashed server were retried


def _success_count(url: str, model: str) -> int:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as c:
        stats = c.get_inference_statistics(model, as_json=True)
    return sum(
        int(m.get("inference_stats", {}).get("success", {}).get("count", 0)) for m in stats.get("model_stats", [])
    )


# -- TLS --------------------------------------------------------------------------------------------------------
def _start_tls(triton_server: TritonTestServer, tmp_path: Path, *tls_args: str) -> tuple[subprocess.Popen[bytes], str]:
    """``yolo-server serve --tls-...`` on the session's repository; returns the process and its gRPC URL once ready
    (HTTP is plaintext, so it listens on loopback only and serves the readiness check)."""
    log = tmp_path / "tls.log"
    process, (http_port, grpc_port, _) = start_serve(triton_server.repository, log, *tls_args, exit_timeout_s=5)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{http_port}/v2/health/ready"), READY_TIMEOUT_S, "the TLS server",
               process, log)  # fmt: skip
    return process, f"127.0.0.1:{grpc_port}"


def _assert_refused(
    url: str, model: str, failures: dict[str, TlsConfig | None], refusal: type[Exception] = UnavailableError
) -> None:
    """Each client is refused with ``refusal``: UNAVAILABLE where the TLS handshake fails (the client's check)."""
    for what, tls in failures.items():
        with YoloClient(url, model, tls=tls, timeout=5, retries=RetryPolicy.disabled()) as client:
            start = time.monotonic()
            with pytest.raises(refusal):
                client.detect(_images(1)[0])
            assert time.monotonic() - start < 5, what


def test_server_tls(triton_server: TritonTestServer, tmp_path: Path) -> None:
    """--tls-cert/--tls-key: a TLS round trip with the CA; plaintext and an unknown CA are refused on that port."""
    pem = write_certificates(tmp_path)
    process, url = _start_tls(
        triton_server, tmp_path, "--tls-cert", str(pem["server"]), "--tls-key", str(pem["server_key"])
    )
    try:
        with YoloClient(f"grpcs://{url}", triton_server.model_name, tls=TlsConfig(root_certificates=pem["ca"]),
                        timeout=30) as client:  # fmt: skip
            assert client.detect(_images(1)[0])
        _assert_refused(url, triton_server.model_name, {"plaintext": None, "wrong CA": TlsConfig(pem["other_ca"])})
    finally:
        stop_process(process)


def test_mutual_tls(triton_server: TritonTestServer, tmp_path: Path) -> None:
    pem = write_certificates(tmp_path)
    process, url = _start_tls(triton_server, tmp_path, "--tls-cert", str(pem["server"]), "--tls-key",
                              str(pem["server_key"]), "--tls-client-ca", str(pem["ca"]))  # fmt: skip
    good = TlsConfig(root_certificates=pem["ca"], private_key=pem["client_key"], certificate_chain=pem["client"])
    try:
        with YoloClient(url, triton_server.model_name, tls=good, timeout=30) as client:
            assert client.health()[0].ok
            found = client.detect(_images(1)[0])
            assert found and client.model_info().input_width == triton_server.input_width
        # PEM bytes instead of paths, and the certificate's DNS name checked instead of the URL's address
        by_name = TlsConfig(pem["ca"].read_bytes(), pem["client_key"].read_bytes(), pem["client"].read_bytes(),
                            server_name="triton.test")  # fmt: skip
        with YoloClient(url, triton_server.model_name, tls=by_name, timeout=30) as client:
            assert client.detect(_images(1)[0]) == found
        _assert_refused(url, triton_server.model_name, {
            "wrong CA": TlsConfig(pem["other_ca"], good.private_key, good.certificate_chain),
            "wrong server name": TlsConfig(pem["ca"], good.private_key, good.certificate_chain, server_name="other.test"),
            "plaintext": None,
        })  # fmt: skip
        # the front checks the client's certificate after the handshake: UNAUTHENTICATED, which no client retries
        _assert_refused(url, triton_server.model_name, {"no client certificate": TlsConfig(root_certificates=pem["ca"])},
                        ServerRejectedError)  # fmt: skip
    finally:
        stop_process(process)


# -- rolling restart ----------------------------------------------------------------------------------------------
def test_rolling_restart_under_load_loses_no_request(triton_server: TritonTestServer, tmp_path: Path) -> None:
    """Two replicas, 16 clients through the SDK: SIGTERM one, start it again, then the other; 0 calls fail.

    Then a dead model: replica 0's image model stubs (one per fused instance) are SIGKILLed. Supervision is off here, so that replica stays up,
    ready by Triton's account, answering INTERNAL "Stub process ... is not healthy": the SDK holds it out and
    fails over, and still no call fails.
    """
    ports = [tuple(free_ports(3)), tuple(free_ports(3))]
    urls = [f"127.0.0.1:{p[1]}" for p in ports]
    unsupervised = ("--check-interval", "0")
    processes = [start_serve(triton_server.repository, tmp_path / f"replica{i}.log", *unsupervised, ports=p,
                             exit_timeout_s=10)[0] for i, p in enumerate(ports)]  # fmt: skip
    checks = HealthCheckOptions(interval=1.0, recheck_interval=0.5, probe_timeout=1.0)
    images = _images(4)
    counts = {"sent": 0, "answered": 0}
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        with YoloClient(urls, triton_server.model_name, timeout=30, health_check=checks, max_in_flight=16) as client:
            for url, process in zip(urls, processes, strict=True):
                wait_until(lambda u=url: client.pool.is_up(u) and client.health()[urls.index(u)].ok, READY_TIMEOUT_S,
                           f"{url} ready", process)  # fmt: skip

            def run(worker: int) -> None:
                i = worker
                while not stop.is_set():
                    with lock:
                        counts["sent"] += 1
                    try:
                        client.detect(images[i % len(images)])
                    except Exception as exc:  # a lost request, reported below
                        with lock:
                            failures.append(f"{type(exc).__name__}: {exc}")
                    else:
                        with lock:
                            counts["answered"] += 1
                    i += 16

            with ThreadPoolExecutor(16) as pool:
                workers = [pool.submit(run, w) for w in range(16)]
                try:  # workers run until stop is set: set it however this ends, or the pool waits forever
                    wait_until(lambda: counts["answered"] >= 50, 120, "steady load")
                    for index in range(2):
                        stop_process(processes[index])  # SIGTERM: Triton drains, then exits
                        assert processes[index].returncode == 0, (tmp_path / f"replica{index}.log").read_text()[-3000:]
                        processes[index] = start_serve(triton_server.repository, tmp_path / f"replica{index}b.log",
                                                       *unsupervised, ports=ports[index], exit_timeout_s=10)[0]  # fmt: skip
                        before = counts["answered"]
                        wait_until(lambda u=urls[index]: client.pool.is_up(u) and _success_count(u, triton_server.model_name) > 0,
                                   READY_TIMEOUT_S, f"{urls[index]} back in rotation", processes[index])  # fmt: skip
                        assert counts["answered"] > before
                    restarted = dict(counts)
                    for stub in model_stubs(triton_pid(tmp_path / "replica0b.log"), triton_server.model_name):
                        os.kill(stub, signal.SIGKILL)
                    wait_until(lambda: counts["answered"] >= restarted["answered"] + 150, 180, "150 more answers")
                    assert not client.pool.is_up(urls[0]) and client.health()[0].ready  # held out although "ready"
                finally:
                    stop.set()
                for worker in workers:
                    worker.result(timeout=120)
    finally:
        stop.set()
        for process in processes:
            stop_process(process)
            remove_crash_leftovers(process.pid)  # the SIGKILLed stubs' shared memory, which Triton leaves
    print(f"rolling restart, then a dead stub: sent {counts['sent']}, answered {counts['answered']} "
          f"({restarted['answered']} by the end of the restarts), failed {len(failures)}")  # fmt: skip
    assert not failures, failures[:5]
    assert counts["sent"] == counts["answered"] > 100
