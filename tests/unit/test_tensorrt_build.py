"""The tensorrt build's checks before Torch-TensorRT runs: what it refuses and says, on a machine without a GPU.

The compile call itself runs through the real library in tests/unit/test_tensorrt_dryrun.py.
"""

from __future__ import annotations

import builtins
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tests.helpers.darknet_files import DEMO_CFG, DEMO_WEIGHTS
from yolo_server import cli
from yolo_server.darknet import load_darknet
from yolo_server.export.program import BatchRange
from yolo_server.export.tensorrt import (
    ENABLED_PRECISIONS,
    ENGINE_PREFIX,
    TensorRTUnavailable,
    check_engine_precisions,
    check_profile,
    count_engines,
    cuda_device,
    engine_precisions,
    export_tensorrt,
    tensorrt_available,
)
from yolo_server.export.wrapper import InferenceWrapper
from yolo_server.precision import TENSORRT_PRECISIONS
from yolo_server.repository.spec import Batching


def test_int8_is_refused_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The build's plan checks the precision, once, before any export (which takes it as checked)."""
    argv = ["build", "--cfg", str(DEMO_CFG), "--target", "tensorrt", "--precision", "int8", "--output", str(tmp_path)]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert "int8" in error and "ModelOpt" in error and not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the build would not stop here")
def test_without_a_gpu_the_build_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["build", "--cfg", str(DEMO_CFG), "--target", "tensorrt", "--output", str(tmp_path / "repository")]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert "no CUDA GPU" in error and "tensorrt" in error and "--gpus all" in error
    assert not (tmp_path / "repository").exists() or not any((tmp_path / "repository").rglob("model.pt"))
    model, spec = load_darknet(DEMO_CFG, DEMO_WEIGHTS)
    with pytest.raises(TensorRTUnavailable, match="no CUDA GPU"):
        export_tensorrt(model, spec, tmp_path / "model.pt")


def test_a_torch_tensorrt_that_cannot_import_is_named_with_its_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # not installed, whatever this machine has
    reason = tensorrt_available("cpu") or ""
    assert "torch_tensorrt is not importable" in reason and "server[tensorrt]" in reason


def test_an_import_that_raises_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Torch-TensorRT 2.9 raises RuntimeError, not ImportError, at import when it finds no CUDA device."""
    real_import = builtins.__import__

    def no_driver(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch_tensorrt":
            raise RuntimeError("Found no NVIDIA driver on your system")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "torch_tensorrt", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_driver)
    assert "RuntimeError: Found no NVIDIA driver" in (tensorrt_available("cpu") or "")


def test_engines_are_built_for_an_indexed_cuda_device() -> None:
    assert cuda_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="CUDA device"):
        cuda_device("cpu")


def test_the_profile_optimum_must_be_the_traced_batch() -> None:
    check_profile(BatchRange(1, 16, 32))
    check_profile(BatchRange(1, 1, 1))
    with pytest.raises(ValueError, match="--opt-batch-size 2"):
        check_profile(BatchRange(1, 1, 32))
    # a new maximum alone never lands on an optimum of 1 that a dynamic batch cannot trace
    assert [Batching.for_target("tensorrt", max_batch_size=m).profile for m in (1, 2, 3, 8)] == [
        (1, 1, 1),
        (1, 2, 2),
        (1, 2, 3),
        (1, 4, 8),
    ]


def test_the_torchscript_frontend_cannot_take_this_model() -> None:
    """Why the build goes through torch.export: Torch-TensorRT's TorchScript frontend scripts the module first."""
    model, _ = load_darknet(DEMO_CFG, DEMO_WEIGHTS)
    with pytest.raises(Exception, match="spec|DarknetSpec|attribute"):
        torch.jit.script(InferenceWrapper(model, torch.float32, channels_last=False))


def test_engines_are_counted_by_the_partitioners_names() -> None:
    compiled = torch.nn.Module()
    for name in (f"{ENGINE_PREFIX}_0", "_run_on_gpu_1", f"{ENGINE_PREFIX}_2"):
        compiled.add_module(name, torch.nn.Identity())
    assert count_engines(compiled) == 2


def _engines(*recorded: object) -> torch.nn.Module:
    """A compiled module whose engines carry ``settings`` as Torch-TensorRT's engine modules do."""
    compiled = torch.nn.Module()
    for index, settings in enumerate(recorded):
        engine = torch.nn.Module()
        engine.settings = settings  # type: ignore[assignment]
        compiled.add_module(f"{ENGINE_PREFIX}_{index}", engine)
    return compiled


def test_every_tensorrt_precision_has_its_engine_dtypes() -> None:
    assert tuple(ENABLED_PRECISIONS) == TENSORRT_PRECISIONS


def test_engines_that_ignored_the_precision_fail_the_build() -> None:
    fp16 = SimpleNamespace(enabled_precisions={torch.float16, torch.float32})
    check_engine_precisions(_engines(fp16, fp16), "fp16")
    # 2.13+: enabled_precisions fell into **kwargs, the settings have none, the engines are FP32
    with pytest.raises(RuntimeError, match=r"allow none recorded, not the fp16.*2\.13"):
        check_engine_precisions(_engines(SimpleNamespace()), "fp16")
    with pytest.raises(RuntimeError, match=r"allow \['float32'\], not the fp16"):
        check_engine_precisions(_engines(fp16, SimpleNamespace(enabled_precisions={torch.float32})), "fp16")
    assert engine_precisions(_engines(fp16)) == {torch.float16, torch.float32}
