"""On a GPU: the Torch-TensorRT artifact against eager, and the GPU check's quick run. Each skips with its reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.darknet_files import cfg_path
from yolo_server.darknet import load_darknet
from yolo_server.export.program import BatchRange
from yolo_server.export.tensorrt import export_tensorrt, tensorrt_available

CHECK = Path(__file__).with_name("check.py")
TENSORRT_REASON = tensorrt_available()
pytestmark = pytest.mark.gpu


@pytest.mark.skipif(TENSORRT_REASON is not None, reason=f"tensorrt target unavailable: {TENSORRT_REASON}")
def test_compiled_matches_eager_for_every_batch_size(tmp_path: Path) -> None:
    model, spec = load_darknet(cfg_path("yolov4-tiny"), input_size=416)
    path = tmp_path / "model.pt"
    export_tensorrt(model, spec, path, "fp16", BatchRange(1, 4, 8))
    compiled = torch.jit.load(str(path)).cuda().eval()
    eager = model.cuda().eval()
    for batch in (1, 3, 8):
        x = torch.rand(batch, 3, 416, 416, device="cuda")
        with torch.no_grad():
            for ours, ref in zip(compiled(x), eager(x), strict=True):
                assert ours.shape == ref.shape and ours.dtype == torch.float32
                scale = ref.abs().max().item()
                assert (ours - ref).abs().max().item() <= 2e-2 * max(scale, 1.0)


@pytest.mark.timeout(600)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device is visible to torch")
def test_gpu_check_quick_run_passes(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    command = [sys.executable, str(CHECK), "--device", "cuda", "--quick", "--report", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(report.read_text())["passed"]
