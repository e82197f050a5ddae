"""The client against extra servers it starts itself: failover between two, and TLS (mutual).

Each extra tritonserver costs CPU, so each is started once, on the session's model repository.
"""

from __future__ import annotations

import datetime
import glob
import ipaddress
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from yolo_client import (
    ClientMetrics,
    HealthCheckOptions,
    RetryPolicy,
    TlsConfig,
    UnavailableError,
    YoloClient,
)

from tests.integration.conftest import start_serve
from tests.integration.serving_support import MAX_DETECTIONS, as_found, assert_same_detections
from yolo_server.triton.launch import free_ports

pytestmark = pytest.mark.integration
READY_TIMEOUT_S = 180.0




def _wait_until(condition: Callable[[], bool], timeout: float, what: str, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert alive(), f"the server died while waiting for: {what}"
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}")


def _images(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        image = np.full((120 + 10 * i, 160 + 20 * i, 3), 40 * i, np.uint8)
        cv2.circle(image, (60 + 5 * i, 50), 30 + 4 * i, (255 - 30 * i, 80, 30 * i), -1)
        out.append(cv2.imencode(".png", image)[1].tobytes())
    return out


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the server's whole process group (yolo-server, tritonserver, Python stubs) by its pid."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(30)
    for leftover in glob.glob(f"/dev/shm/yolo_server_{process.pid}_*"):  # Python-backend shm a crash leaves
        Path(leftover).unlink(missing_ok=True)


def test_failover_readmission_and_a_crash_mid_run(triton_server, tmp_path) -> None:
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
        _wait_until(lambda: not client.pool.is_up(second), 10, "the checker takes the missing endpoint out")

        process, _ = start_serve(triton_server.repository, tmp_path / "second.log",
                                 ports=(http_port, grpc_port, metrics_port), exit_timeout_s=5)
        try:
            alive = lambda: process.poll() is None  # noqa: E731
            _wait_until(lambda: client.pool.is_up(second), READY_TIMEOUT_S, "the second server to be readmitted", alive)

            done = []
            lock = threading.Lock()

            def one(i: int):
                result = client.detect(images[i % len(images)])
                with lock:
                    done.append(i)
                return result

            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(one, i) for i in range(200)]
                _wait_until(lambda: len(done) >= 50, 120, "50 requests done", alive)
                served_by_second = _success_count(second, triton_server.model_name)
                _kill_group(process)
                results = [f.result() for f in futures]  # raises if any request was lost
        finally:
            _kill_group(process)
        assert served_by_second > 0, "round-robin should have sent requests to the second server"
        assert not client.pool.is_up(second)
    assert len(results) == 200
    for i, found in enumerate(results):  # either server, batched or not: the same detections
        assert_same_detections(as_found(found), as_found(expected[i % len(images)]), MAX_DETECTIONS)
    retries = registry.get_sample_value("yolo_client_retries_total", {"model": triton_server.model_name, "status": "UNAVAILABLE"})
    ok = registry.get_sample_value(
        "yolo_client_requests_total", {"model": triton_server.model_name, "transport": "bytes", "outcome": "ok"}
    )
    assert ok == 204 and retries and retries >= 1  # requests in flight on the crashed server were retried


def _success_count(url: str, model: str) -> int:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as c:
        stats = c.get_inference_statistics(model, as_json=True)
    return sum(int(m.get("inference_stats", {}).get("success", {}).get("count", 0)) for m in stats.get("model_stats", []))


# -- TLS --------------------------------------------------------------------------------------------------------
def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and triton.test, a client certificate, and an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        files[name] = directory / f"{name}.pem"
        files[name].write_bytes(data)

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def issue(subject: str, key, issuer_name, issuer_key, *, ca: bool, sans=(), usage=None) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def new_ca(name: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(name, key, None, key, ca=True)
        write(name, cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    ca, ca_key = new_ca("ca")
    new_ca("other_ca")
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("triton.test")]
    for name, san, usage in (("server", sans, ExtendedKeyUsageOID.SERVER_AUTH), ("client", (), ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(name, key, ca.subject, ca_key, ca=False, sans=san, usage=usage)
        write(name, cert.public_bytes(serialization.Encoding.PEM))
        write(f"{name}_key", key_pem(key))
    return files


def test_mutual_tls(triton_server, tmp_path) -> None:
    from yolo_server.triton.launch import ServeOptions, TritonServer

    pem = _certificates(tmp_path)
    http_port, grpc_port, metrics_port = free_ports(3)
    tls_args = (
        "--grpc-use-ssl-mutual=true",
        f"--grpc-server-cert={pem['server']}",
        f"--grpc-server-key={pem['server_key']}",
        f"--grpc-root-cert={pem['ca']}",
    )
    options = ServeOptions(triton_server.repository, "127.0.0.1", http_port, grpc_port, metrics_port,
                           exit_timeout_s=5, extra_args=tls_args)  # fmt: skip
    server = TritonServer(options)
    server.start(stream=None)
    url = f"127.0.0.1:{grpc_port}"
    good = TlsConfig(root_certificates=pem["ca"], private_key=pem["server_key"].with_name("client_key.pem"),
                     certificate_chain=pem["client"])  # fmt: skip
    try:
        with YoloClient(url, triton_server.model_name, tls=good, timeout=5) as client:
            _wait_until(lambda: client.health()[0].ok, READY_TIMEOUT_S, "the TLS server", lambda: server.poll() is None)
            found = client.detect(_images(1)[0])
            assert found and client.model_info().input_width == triton_server.input_width
        # PEM bytes instead of paths, and the certificate's DNS name checked instead of the URL's address
        by_name = TlsConfig(pem["ca"].read_bytes(), pem["client_key"].read_bytes(), pem["client"].read_bytes(),
                            server_name="triton.test")  # fmt: skip
        with YoloClient(url, triton_server.model_name, tls=by_name, timeout=5) as client:
            assert client.detect(_images(1)[0]) == found

        no_retry = RetryPolicy.disabled()
        failures = {
            "wrong CA": TlsConfig(pem["other_ca"], good.private_key, good.certificate_chain),
            "no client certificate": TlsConfig(root_certificates=pem["ca"]),
            "wrong server name": TlsConfig(pem["ca"], good.private_key, good.certificate_chain, server_name="other.test"),
            "plaintext": None,
        }
        for what, tls in failures.items():
            with YoloClient(url, triton_server.model_name, tls=tls, timeout=5, retries=no_retry) as client:
                start = time.monotonic()
                with pytest.raises(UnavailableError):
                    client.detect(_images(1)[0])
                assert time.monotonic() - start < 5, what
    finally:
        server.stop()
