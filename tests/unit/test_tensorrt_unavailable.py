"""Without a GPU or torch_tensorrt, the tensorrt target fails with a message saying what to install."""

from __future__ import annotations

import pytest

from tests.helpers.darknet_files import cfg_path
from yolo_server.darknet import load_darknet
from yolo_server.export.tensorrt import TensorRTUnavailable, export_tensorrt, tensorrt_available


@pytest.mark.skipif(tensorrt_available() is None, reason="the tensorrt target is available on this machine")
def test_export_explains_what_is_missing(tmp_path) -> None:
    model, spec = load_darknet(cfg_path("yolov4-tiny"), input_size=416)
    with pytest.raises(TensorRTUnavailable, match=r"GPU|torch_tensorrt"):
        export_tensorrt(model, spec, tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


def test_bad_precision_and_batch_range_are_refused_first() -> None:
    model, spec = load_darknet(cfg_path("yolov4-tiny"), input_size=416)
    with pytest.raises(ValueError, match="precision"):
        export_tensorrt(model, spec, "unused.pt", precision="fp8")
    with pytest.raises(ValueError, match="min_batch"):
        export_tensorrt(model, spec, "unused.pt", min_batch=4, opt_batch=2, max_batch=8)
