"""The build's TensorRT compile step through the real Torch-TensorRT 2.9.0 (NGC 25.10's), in its dry-run mode.

tests/tensorrt_dryrun/dryrun.py runs in its own venv (tests/tensorrt_dryrun/venv.sh: torch 2.9.0 and
torch-tensorrt 2.9.0, cached outside the checkout; ``make test`` creates it before pytest, this test when it is
missing). It calls :func:`compile_detector` for the demo model and the four official cfgs with the repository's
tensorrt batch settings and default precision. Asserted per model: one TensorRT engine holding every op, none
left to PyTorch; the engine's optimization profile equal to the repository's (1, optimum, max); the device and
precisions as the real library parsed them. What a dry run cannot show (engines, FP16 numerics, Triton's load)
is the GPU check's (tests/gpu/check.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.helpers.paths import ROOT
from yolo_server.export.tensorrt import ENABLED_PRECISIONS, TARGET
from yolo_server.precision import DEFAULT_PRECISION
from yolo_server.repository.spec import TARGET_BATCHING

DRYRUN = ROOT / "tests" / "tensorrt_dryrun"
MODELS = ("demo", "yolov4-tiny@416", "yolov4@608", "yolov4-csp@512", "yolov4x-mish@640")
# the ops of each graph as the library counts them (lowered, decomposed): a change means the graph changed
OPS = {"demo": 54, "yolov4-tiny@416": 54, "yolov4@608": 399, "yolov4-csp@512": 496, "yolov4x-mish@640": 590}


@pytest.fixture(scope="module")
def dryrun_python() -> str:
    """The dry-run venv's python (created here when ``make test`` did not: minutes, about 7 GB)."""
    created = subprocess.run(
        ["bash", str(DRYRUN / "venv.sh")], capture_output=True, text=True, timeout=1500, check=False
    )
    assert created.returncode == 0, created.stderr[-3000:]
    return created.stdout.strip()


@pytest.fixture(scope="module")
def report(dryrun_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("tensorrt-dryrun") / "report.json"
    env = {
        **os.environ,
        # the stand-in for TensorRT's bindings in front; this checkout's sources, not an installed copy
        "PYTHONPATH": os.pathsep.join(str(p) for p in (DRYRUN / "standin", ROOT / "server", ROOT / "client")),
    }
    command = [dryrun_python, str(DRYRUN / "dryrun.py"), str(path), *MODELS]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return json.loads(path.read_text())


@pytest.mark.timeout(1800)
def test_the_real_library_is_what_runs(report: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert report["torch_tensorrt"] == "2.9.0" and report["torch"].startswith("2.9.0"), report
    assert "dynamo_frontend=True" in report["features"], report["features"]
    with capsys.disabled():
        print(f"\ntensorrt dry run: torch {report['torch']}, torch_tensorrt {report['torch_tensorrt']}")
        for name, found in report["models"].items():
            engines = [(engine["ops"], engine["profiles"]) for engine in found["engines"]]
            print(f"  {name}: {found['engine_count']} engine(s), ops {found['ops_in_graph']}, engines {engines}")


@pytest.mark.parametrize("name", MODELS)
def test_one_engine_holds_every_op(report: dict, name: str) -> None:
    found = report["models"][name]
    assert found["engine_count"] == 1, found
    [engine] = found["engines"]
    assert found["ops_supported"] == found["ops_in_graph"] == engine["ops"] == OPS[name], found
    assert not found["unsupported_ops"] and not found["run_in_pytorch"], found


@pytest.mark.parametrize("name", MODELS)
def test_the_engine_profile_is_the_repositorys_batching(report: dict, name: str) -> None:
    found = report["models"][name]
    width, height = (int(side) for side in found["input"].split("x"))
    minimum, optimum, maximum = TARGET_BATCHING[TARGET].profile
    assert (minimum, optimum, maximum) == (1, 16, 32)
    [engine] = found["engines"]
    assert engine["profiles"] == [
        {
            "min_shape": [minimum, 3, height, width],
            "opt_shape": [optimum, 3, height, width],
            "max_shape": [maximum, 3, height, width],
        }
    ]


@pytest.mark.parametrize("name", MODELS)
def test_device_and_precisions_pass_the_librarys_validation(report: dict, name: str) -> None:
    settings = report["models"][name]["settings"]
    precision = DEFAULT_PRECISION[TARGET]
    assert report["models"][name]["precision"] == precision == "fp16"
    assert settings["device"] == "cuda:0"  # an explicit index, as the engine builder converts it
    assert settings["enabled_precisions"] == sorted(str(dtype) for dtype in ENABLED_PRECISIONS[precision])
    assert {str(torch.float16), str(torch.float32)} == set(settings["enabled_precisions"])
    assert settings["use_python_runtime"] is False and settings["truncate_double"] is False and settings["dryrun"]


def test_the_library_refuses_the_devices_the_build_must_not_hand_it(report: dict) -> None:
    """Why the build resolves ``cuda`` to ``cuda:N``: the real library fails on a device without an index."""
    others = report["models"]["demo"]["other_devices"]
    assert others["cuda"].startswith("TypeError") and "NoneType" in others["cuda"], others
    assert others["cpu"].startswith("ValueError") and "cuda" in others["cpu"], others


def test_the_saved_torchscript_equals_eager(report: dict) -> None:
    """``save_detector`` through the real ``torch_tensorrt.save`` (dry run: no engines, the CPU)."""
    assert report["models"]["demo"]["saved_max_abs_diff_vs_eager"] <= 1e-5


def test_the_venv_is_cached_outside_the_checkout(dryrun_python: str) -> None:
    venv = Path(dryrun_python).parents[1]
    assert ROOT not in venv.parents and (venv / ".complete").is_file()
    assert "torch2.9.0-trt2.9.0" in venv.name
