"""``serve`` sizes the repository to the CPUs it may use: under ``taskset -c 0`` it runs and reports one CPU's sizes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.serving import READY_TIMEOUT_S, model_stubs, start_serve, stop_process, triton_pid, wait_ready
from tests.helpers.small_repository import SMALL_NAME, build_small_repository
from yolo_server.launcher.tuned import TUNING_FILE, ModelTuning, Tuning
from yolo_server.precision import CpuFeatures


@pytest.mark.timeout(300)
def test_serve_under_taskset_runs_the_one_cpu_sizes_and_shows_them(tmp_path: Path) -> None:
    repository = build_small_repository(tmp_path / "model_repository", "fused")
    log = tmp_path / "serve.log"
    process, (_, grpc_port, _) = start_serve(repository, log, wrapper=("taskset", "-c", "0"))
    try:
        url = f"127.0.0.1:{grpc_port}"
        wait_ready(url, process, log, READY_TIMEOUT_S)
        text = log.read_text()
        assert "sized to 1 CPU (affinity 1, cgroup quota " in text, text[-3000:]
        assert re.search(
            rf"\n  {SMALL_NAME} +instances 2 \(sized\), lone_threads 1 \(sized\), batch_threads 1 \(sized\)\n", text
        )
        assert len(model_stubs(triton_pid(log), SMALL_NAME)) == 2  # applied: one CPU's fused instances run

        shown = subprocess.run(
            [sys.executable, "-m", "yolo_client.cli", "models", "--url", url, "--model", SMALL_NAME, "--json"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        report = json.loads(shown)
        assert report["batching"]["instances"] == 2
        assert report["serving"]["instances"] == {"value": 2, "source": "sized"}
        assert report["serving"]["lone_threads"] == {"value": 1, "source": "sized"}
        human = subprocess.run(
            [sys.executable, "-m", "yolo_client.cli", "models", "--url", url, "--model", SMALL_NAME],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert "served with instances 2 (sized), lone_threads 1 (sized), batch_threads 1 (sized)" in human
    finally:
        stop_process(process)


@pytest.mark.timeout(300)
def test_a_tuning_file_measured_here_is_what_serve_runs(tmp_path: Path) -> None:
    repository = build_small_repository(tmp_path / "model_repository", "fused")
    tuned = ModelTuning(instances=3, batch_threads=1, max_batch_size=4)
    Tuning(1, CpuFeatures.of_this_machine().isa(), {SMALL_NAME: tuned}).write(repository / TUNING_FILE)
    log = tmp_path / "serve.log"
    process, (_, grpc_port, _) = start_serve(repository, log, wrapper=("taskset", "-c", "0"))
    try:
        wait_ready(f"127.0.0.1:{grpc_port}", process, log, READY_TIMEOUT_S)
        text = log.read_text()
        assert f"tuning: {repository / TUNING_FILE} (measured on 1 CPU" in text
        tuned_line = (
            r"instances 3 \(tuned\), lone_threads 1 \(sized\), batch_threads 1 \(tuned\), max_batch_size 4 \(tuned\)"
        )
        assert re.search(rf"\n  {SMALL_NAME} +{tuned_line}\n", text), text[-3000:]
        assert len(model_stubs(triton_pid(log), SMALL_NAME)) == 3
    finally:
        stop_process(process)
