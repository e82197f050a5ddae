"""Torch-TensorRT export: compiled vs eager within FP16 tolerance, dynamic batch 1..max (GPU only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.darknet_files import cfg_path
from yolo_server.darknet import load_darknet
from yolo_server.export.tensorrt import export_tensorrt, tensorrt_available

REASON = tensorrt_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"tensorrt target unavailable: {REASON}")]


def test_compiled_matches_eager_for_every_batch_size(tmp_path: Path) -> None:
    model, spec = load_darknet(cfg_path("yolov4-tiny"), input_size=416)
    path = tmp_path / "model.pt"
    export_tensorrt(model, spec, path, precision="fp16", min_batch=1, opt_batch=4, max_batch=8)
    compiled = torch.jit.load(str(path)).cuda().eval()
    eager = model.cuda().eval()
    for batch in (1, 3, 8):
        x = torch.rand(batch, 3, 416, 416, device="cuda")
        with torch.no_grad():
            for ours, ref in zip(compiled(x), eager(x)):
                assert ours.shape == ref.shape and ours.dtype == torch.float32
                scale = ref.abs().max().item()
                assert (ours - ref).abs().max().item() <= 2e-2 * max(scale, 1.0)

