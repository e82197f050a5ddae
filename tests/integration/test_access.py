"""Locked by default: the admin APIs of the shared server answer only with the key; everything else stays open."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.helpers.images import encode, scene
from tests.helpers.serving import TritonTestServer
from tests.helpers.triton_requests import bytes_inputs
from yolo_client.contract import ADMIN_KEY_HEADER, GRPC_ADMIN_KEY_HEADER

pytestmark = pytest.mark.integration

# the gRPC calls of the four restricted protocols (model-repository, shared-memory, trace, logging)
RESTRICTED_GRPC: dict[str, Callable[[grpcclient.InferenceServerClient, dict[str, str]], Any]] = {
    "repository index": lambda c, h: c.get_model_repository_index(headers=h),
    "system shared memory": lambda c, h: c.get_system_shared_memory_status(headers=h),
    "cuda shared memory": lambda c, h: c.get_cuda_shared_memory_status(headers=h),
    "trace settings": lambda c, h: c.get_trace_settings(headers=h),
    "log settings": lambda c, h: c.get_log_settings(headers=h),
}
RESTRICTED_HTTP = [("POST", "/v2/repository/index"), ("GET", "/v2/systemsharedmemory/status"),
                   ("GET", "/v2/trace/setting"), ("GET", "/v2/logging")]  # fmt: skip


def http_status(url: str, method: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, method=method, headers=headers, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.loads(response.read() or b"{}")
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_admin_apis_are_refused_without_the_key_and_allowed_with_it(triton_server: TritonTestServer) -> None:
    key = triton_server.admin_headers
    wrong = {GRPC_ADMIN_KEY_HEADER: "not-the-key-0123456789"}
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        for what, call in RESTRICTED_GRPC.items():
            for headers in ({}, wrong):
                with pytest.raises(InferenceServerException, match="restricted") as refused:
                    call(client, headers)
                assert refused.value.status() == "StatusCode.UNAVAILABLE", what  # Triton's status for it
            call(client, key)  # allowed
        # open without a key: health, metadata, config, statistics, inference
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(triton_server.model_name)
        assert client.get_server_metadata().name == "triton"
        assert client.get_model_metadata(triton_server.model_name).name == triton_server.model_name
        assert client.get_model_config(triton_server.model_name).config.name == triton_server.model_name
        assert client.get_inference_statistics(triton_server.model_name).model_stats
        client.infer(triton_server.model_name, bytes_inputs([encode(".jpg", scene(64, 80, seed=2))]), client_timeout=30)
    base = f"http://{triton_server.http_url}"
    for method, path in RESTRICTED_HTTP:
        assert http_status(base + path, method, {}) == 403, path
        assert http_status(base + path, method, {ADMIN_KEY_HEADER: "not-the-key-0123456789"}) == 403, path
        assert http_status(base + path, method, triton_server.admin_http_headers) == 200, path
    for path in ("/v2/health/ready", f"/v2/models/{triton_server.model_name}/config",
                 f"/v2/models/{triton_server.model_name}/stats"):  # fmt: skip
        assert http_status(base + path, "GET", {}) == 200, path


def test_client_cli_lists_every_model_with_the_key_and_the_served_one_without(
    triton_server: TritonTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from yolo_client.cli import ADMIN_KEY_VARIABLE, KEY_NOTE
    from yolo_client.cli import main as client_main

    common = ["--url", triton_server.grpc_url, "--model", triton_server.model_name]
    assert client_main(["models", *common]) == 0
    without = capsys.readouterr().out
    assert without.startswith(f"{triton_server.model_name}: ") and KEY_NOTE in without
    assert triton_server.tensor_model_name not in without  # the index was not asked for

    key_file = tmp_path / "admin-key"
    key_file.write_text(triton_server.admin_headers[GRPC_ADMIN_KEY_HEADER] + "\n")
    assert client_main(["models", *common, "--admin-key-file", str(key_file)]) == 0
    listed = capsys.readouterr().out
    assert KEY_NOTE not in listed
    names = {line.split()[0] for line in listed.splitlines() if line.endswith("READY")}
    assert {triton_server.model_name, triton_server.tensor_model_name} <= names

    wrong = tmp_path / "wrong-key"
    wrong.write_text("not-the-key-0123456789\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(ADMIN_KEY_VARIABLE, str(wrong))
        assert client_main(["models", *common]) == 1
    assert "needs the server's admin key" in capsys.readouterr().err
