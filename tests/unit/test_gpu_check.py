"""tests/gpu/check.sh runs end to end without a GPU: its quick run on the CPU, FP16 against fp32, the real criteria.

The GPU host runs the same script in full (tests/gpu/check.sh, docs/gpu.md); this keeps it from rotting between
the runs that a GPU is lent for.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from tests.helpers.paths import ROOT


@pytest.mark.timeout(300)
def test_quick_cpu_run_writes_a_passing_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    env = {**os.environ, "CHECK_PYTHON": sys.executable, "CHECK_TIMEOUT": "240"}
    command = ["bash", str(ROOT / "tests" / "gpu" / "check.sh"), "--device", "cpu", "--quick", "--dtype", "fp16",
               "--report", str(report)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = json.loads(report.read_text())
    assert found["mode"] == "torch" and found["passed"] and "torch_tensorrt" not in found
    demo = found["models"]["demo"]
    assert demo["dtype"] == "float16" and demo["heads_within_tolerance"]
    assert demo["head_relative_error"]["all"] > 0  # FP16 really ran: it differs from fp32
    assert set(demo["head_relative_error"]) == {"all", "batch_1", "batch_3", "batch_4"}
    assert demo["eager_boxes"] > demo["scenes"] and demo["boxes_matched_at_iou_0_9"] >= 0.99
    assert set(demo["images_per_second"]) == {"1", "4"} and all(v > 0 for v in demo["images_per_second"].values())
    assert demo["postprocess"]["same_detections_as_cpu"] and demo["preprocess_cpu_ms_per_image"] > 0


def test_without_a_cuda_device_the_check_says_so(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the check would run")
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "gpu" / "check.py"), "--report", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "no CUDA device" in result.stderr


def _shell_variable(path: Path, name: str) -> str:
    match = re.search(rf"^{name}=([\w.]+)$", path.read_text(), flags=re.M)
    assert match, f"{path}: no {name}="
    return match.group(1)


def test_the_check_runs_on_the_shipped_torch_tensorrt_only() -> None:
    """check.sh's pinned venv, the dry run's venv, the tensorrt extra and check.py's gate name one Torch-TensorRT;
    others are refused."""
    from tests.gpu.check import SHIPPED_TORCH_TENSORRT, unshipped_stack

    pins = {
        script: (_shell_variable(script, "TORCH"), _shell_variable(script, "TORCH_TENSORRT"))
        for script in (ROOT / "tests" / "gpu" / "check.sh", ROOT / "tests" / "tensorrt_dryrun" / "venv.sh")
    }
    assert len(set(pins.values())) == 1, pins
    [(torch_version, torch_tensorrt_version)] = set(pins.values())
    assert torch_tensorrt_version.startswith(f"{SHIPPED_TORCH_TENSORRT}.")
    assert torch_version.rsplit(".", 1)[0] == SHIPPED_TORCH_TENSORRT  # Torch-TensorRT 2.9 is built against torch 2.9
    extra = tomllib.loads((ROOT / "server" / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extra["tensorrt"] == [f"torch-tensorrt=={SHIPPED_TORCH_TENSORRT}.*"]
    assert unshipped_stack("2.9.0") is None and unshipped_stack("2.9.0a0") is None  # PyPI's and NGC's spellings
    refusal = unshipped_stack("2.14.0") or ""
    assert "2.14.0 is not the shipped 2.9" in refusal and "FP32" in refusal
