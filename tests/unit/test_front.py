"""The front's nginx.conf, checked by the real nginx (``nginx -t``), the cap it takes from a repository, and the
nginx process (:class:`Front`): its readiness and its fault, with nothing behind it."""

from __future__ import annotations

import math
import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers.certificates import write_certificates
from tests.helpers.paths import ROOT
from yolo_server.launcher import front
from yolo_server.launcher.access import TlsFiles
from yolo_server.launcher.front import REQUEST_OVERHEAD_BYTES, FrontConfig, Ports, find_nginx, nginx_conf, request_cap
from yolo_server.launcher.front_process import Front
from yolo_server.launcher.installation import TritonError
from yolo_server.launcher.ports import free_ports
from yolo_server.triton.settings import PreprocessSettings

PUBLIC = Ports("127.0.0.1", 8000, 8001, 8002)
TRITON = Ports("127.0.0.1", 18000, 18001, 18002)


def nginx_accepts(config: FrontConfig, workdir: Path) -> None:
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(config, workdir))
    result = subprocess.run([str(find_nginx()), "-t", "-e", "stderr", "-p", str(workdir), "-c", str(conf)],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr + conf.read_text()


def test_nginx_accepts_the_front_without_tls_and_with_mutual_tls(tmp_path: Path) -> None:
    plain = FrontConfig(PUBLIC, TRITON, 65 << 20)
    nginx_accepts(plain, tmp_path)
    text = nginx_conf(plain, tmp_path)
    assert f"client_max_body_size {65 << 20};" in text and "ssl" not in text
    assert "listen 127.0.0.1:8001 http2;" in text and "server 127.0.0.1:18001;" in text
    assert "grpc-status 8 " in text and "request larger than the 65 MiB cap of this server" in text
    assert f"worker_rlimit_nofile {plain.open_files};" in text and 1024 <= plain.open_files <= 65536

    pem = write_certificates(tmp_path)
    mutual = FrontConfig(PUBLIC, TRITON, 65 << 20, TlsFiles(pem["server"], pem["server_key"], pem["ca"]), "127.0.0.1")
    nginx_accepts(mutual, tmp_path)
    text = nginx_conf(mutual, tmp_path)
    assert "listen 127.0.0.1:8001 ssl http2;" in text and "ssl_verify_client on;" in text
    assert "error_page 495 496 = @unauthenticated;" in text and "grpc-status 16 " in text


def test_the_cap_is_the_largest_request_a_model_accepts(tmp_path: Path) -> None:
    # the committed demo repository: one image of max_bytes (64 MiB) outweighs 8 tensors of 3x416x416
    assert request_cap(ROOT / "model_repository") == (64 << 20) + REQUEST_OVERHEAD_BYTES
    # a GPU-sized tensor entry point: 32 x (3x608x608 + 6) fp32 outweighs the image
    model = tmp_path / "yolo_tensor"
    model.mkdir()
    (model / "config.pbtxt").write_text(
        'name: "yolo_tensor"\nmax_batch_size: 32\n'
        'input { name: "INPUT" data_type: TYPE_FP32 dims: [3, 608, 608] }\n'
        'input { name: "RESIZE" data_type: TYPE_FP32 dims: [6] }\n'
        'input { name: "ANY" data_type: TYPE_FP32 dims: [-1] }\n'  # unbounded: bounds nothing
    )
    assert request_cap(tmp_path) == 32 * (math.prod((3, 608, 608)) + 6) * 4 + REQUEST_OVERHEAD_BYTES
    with pytest.raises(ValueError, match="--max-request-bytes"):
        request_cap(tmp_path / "empty")


def test_in_the_ensemble_layout_the_preprocess_step_gives_the_image_cap(tmp_path: Path) -> None:
    image = 'input { name: "IMAGE" data_type: TYPE_STRING dims: [1] }\n'
    settings = PreprocessSettings(416, 416, False, 50_000_000, 200 << 20, True, "scaled").to_parameters()
    for name, parameters in (("yolo_preprocess", settings), ("yolo", {})):  # the ensemble says no max_bytes
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text(
            f'name: "{name}"\nmax_batch_size: 8\n{image}'
            + "".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in parameters.items())
        )
    assert request_cap(tmp_path) == (200 << 20) + REQUEST_OVERHEAD_BYTES


def test_a_cap_under_one_mib_and_a_missing_nginx_are_refused_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="at least 1 MiB"):
        FrontConfig(PUBLIC, TRITON, 1000)
    monkeypatch.setattr(front.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(FileNotFoundError, match="apt-get install nginx.*--no-front"):
        find_nginx()


def test_the_front_stops_a_wait_for_what_is_behind_it_and_says_why_it_died() -> None:
    http, grpc, metrics, *triton = free_ports(6)
    config = FrontConfig(Ports("127.0.0.1", http, grpc, metrics), Ports("127.0.0.1", *triton), 65 << 20)
    front = Front(config)
    front.start()
    try:
        assert front.fault() is None and front.local_http == f"127.0.0.1:{http}"
        # nothing behind it: nginx answers 502, and the wait ends with the fault of what should be there
        with pytest.raises(TritonError, match="^tritonserver exited with code 1$"):
            front.wait_ready(30, behind=lambda: "tritonserver exited with code 1")
    finally:
        front.stop()
    assert front.poll() is not None

    with socket.create_server(("127.0.0.1", http)):  # the front's HTTP port taken: nginx cannot bind and exits
        taken = Front(config)
        taken.start()
        try:
            with pytest.raises(TritonError, match=r"the nginx front \(pid \d+\) exited with code 1 \(its errors"):
                taken.wait_ready(60)
            assert taken.fault() == f"the nginx front (pid {taken.pid}) exited with code 1"
        finally:
            taken.stop()
