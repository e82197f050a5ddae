"""The tensorrt build against a stand-in ``torch_tensorrt`` (tests/helpers/torch_tensorrt_standin.py), on the CPU.

What the build hands to Torch-TensorRT is pinned here: the exported program with its dynamic batch, the input
profile, the enabled precisions, the C++ runtime, the output format and path; and the saved file loads as
TorchScript and equals eager at the profile's ends. Without a GPU, the real build stops with what is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.paths import ROOT
from tests.helpers.torch_tensorrt_standin import StandInTorchTensorRT
from yolo_server import cli
from yolo_server.darknet import load_darknet
from yolo_server.export.program import BatchRange
from yolo_server.export.tensorrt import ENGINE_PREFIX, TensorRTUnavailable, count_engines, export_tensorrt
from yolo_server.export.wrapper import InferenceWrapper

DEMO = ROOT / "models" / "shapes"
DEMO_CFG, DEMO_WEIGHTS = DEMO / "yolov4-tiny-shapes.cfg", DEMO / "yolov4-tiny-shapes.weights"


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> StandInTorchTensorRT:
    module = StandInTorchTensorRT()
    monkeypatch.setitem(sys.modules, "torch_tensorrt", module)
    return module


@pytest.mark.parametrize("precision, enabled", [("fp16", {torch.float16, torch.float32}), ("fp32", {torch.float32})])
def test_build_hands_the_exported_program_and_its_profile_to_dynamo(
    standin: StandInTorchTensorRT, tmp_path: Path, precision: str, enabled: set[torch.dtype]
) -> None:
    model, spec = load_darknet(DEMO_CFG, DEMO_WEIGHTS)
    path = tmp_path / "nested" / "model.pt"
    engines = export_tensorrt(model, spec, path, precision, BatchRange(1, 4, 8), device="cpu")

    assert "compile" not in standin.calls, "the TorchScript frontend scripts the module, which this model cannot take"
    compiled = standin.calls["dynamo.compile"]
    program = compiled["exported_program"]
    [(symbol, batch_range)] = program.range_constraints.items()
    assert (batch_range.lower, batch_range.upper) == (1, 8)
    shape = (3, spec.net.height, spec.net.width)
    [profile] = compiled["inputs"]
    assert (profile.min_shape, profile.opt_shape, profile.max_shape) == ((1, *shape), (4, *shape), (8, *shape))
    assert profile.dtype == torch.float32
    assert compiled["enabled_precisions"] == enabled
    assert compiled["use_python_runtime"] is False  # TorchScript carries only the C++ runtime's engines
    assert compiled["device"] == torch.device("cpu") and compiled["truncate_double"] is True

    saved = standin.calls["save"]
    assert (saved["file_path"], saved["output_format"]) == (str(path), "torchscript")
    [example] = saved["inputs"]
    assert tuple(example.shape) == (4, *shape) and example.dtype == torch.float32
    assert engines == 0  # the stand-in builds none

    loaded = torch.jit.load(str(path))
    x = torch.rand(8, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = model(x)
        for batch in (1, 3, 8):
            for head, ref in zip(loaded(x[:batch]), reference, strict=True):
                assert head.shape == ref[:batch].shape
                torch.testing.assert_close(head, ref[:batch], rtol=1e-5, atol=1e-5)


def test_the_torchscript_frontend_cannot_take_this_model(standin: StandInTorchTensorRT) -> None:
    """Why the build goes through torch.export: scripting the cfg-driven model fails (the stand-in does it as the
    real TorchScript frontend does)."""
    model, _ = load_darknet(DEMO_CFG, DEMO_WEIGHTS)
    with pytest.raises(Exception, match="spec|DarknetSpec|attribute"):
        standin.compile(InferenceWrapper(model, torch.float32, channels_last=False), ir="torchscript")


def test_int8_is_refused_with_the_reason(
    standin: StandInTorchTensorRT, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, spec = load_darknet(DEMO_CFG, DEMO_WEIGHTS)
    with pytest.raises(ValueError, match="ModelOpt"):
        export_tensorrt(model, spec, tmp_path / "model.pt", "int8", BatchRange(1, 1, 2), device="cpu")
    assert not standin.calls
    argv = ["build", "--cfg", str(DEMO_CFG), "--target", "tensorrt", "--precision", "int8", "--output", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "int8" in capsys.readouterr().err and not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the build would not stop here")
def test_without_a_gpu_the_build_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["build", "--cfg", str(DEMO_CFG), "--target", "tensorrt", "--output", str(tmp_path / "repository")]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert "no CUDA GPU" in error and "tensorrt" in error
    assert not (tmp_path / "repository").exists() or not any((tmp_path / "repository").rglob("model.pt"))
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # not installed, whatever this machine has
    model, spec = load_darknet(DEMO_CFG, DEMO_WEIGHTS)
    with pytest.raises(TensorRTUnavailable, match=r"torch_tensorrt is not importable.*server\[tensorrt\]"):
        export_tensorrt(model, spec, tmp_path / "model.pt", device="cpu")  # no GPU needed on cpu; the package is


def test_engines_are_counted_by_the_partitioners_names() -> None:
    compiled = torch.nn.Module()
    for name in (f"{ENGINE_PREFIX}_0", "_run_on_gpu_1", f"{ENGINE_PREFIX}_2"):
        compiled.add_module(name, torch.nn.Identity())
    assert count_engines(compiled) == 2
