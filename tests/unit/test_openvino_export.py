"""The cpu target's artifact: OpenVINO IR from the torch.export program, run by the runner Triton's detector uses.

fp32 must reproduce the torch network; bf16 (what ``auto`` serves on CPUs with native
bf16) must keep the demo detector's boxes: at least 99% of fp32-eager boxes found
again at IoU >= 0.9 on 50 generated scenes (the bar of bench/bench_runtimes.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.darknet_files import DEMO_CFG, DEMO_WEIGHTS
from yolo_server.darknet import load_darknet
from yolo_server.evaluation.agreement import matched_share
from yolo_server.export.openvino import export_openvino
from yolo_server.export.wrapper import InferenceWrapper
from yolo_server.extras import MissingExtra
from yolo_server.pipeline import Detector
from yolo_server.precision import cpu_has_native_bf16
from yolo_server.triton.runtime import LoadAwareRunner, OpenVINORunner, compile_options

SCENE_SEED, SCENES = 99, 50
MIN_MATCHED = 0.99

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def demo_ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, spec = load_darknet(DEMO_CFG, DEMO_WEIGHTS, 416)
    path = tmp_path_factory.mktemp("ir") / "model.xml"
    assert export_openvino(model, spec, path) == [path, path.with_suffix(".bin")]
    return path


def test_fp32_ir_reproduces_the_torch_network_at_any_batch(demo_ir: Path) -> None:
    model, _ = load_darknet(DEMO_CFG, DEMO_WEIGHTS, 416)
    reference = InferenceWrapper(model, torch.float32).eval()
    runner = OpenVINORunner(demo_ir, precision="fp32", num_threads=2)
    generator = torch.Generator().manual_seed(3)
    for batch in (1, 3, 8):  # one IR, a dynamic batch
        inputs = torch.rand(batch, 3, 416, 416, generator=generator)
        with torch.no_grad():
            want = [head.numpy() for head in reference(inputs)]
        got = runner(inputs.numpy())
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3)


def test_runner_outputs_are_copies_not_views_of_the_next_inference(demo_ir: Path) -> None:
    runner = OpenVINORunner(demo_ir, precision="fp32", num_threads=1)
    first = runner(np.zeros((1, 3, 416, 416), np.float32))
    kept = [head.copy() for head in first]
    runner(np.ones((1, 3, 416, 416), np.float32))
    for head, copy in zip(first, kept, strict=True):
        np.testing.assert_array_equal(head, copy)


def test_load_aware_runner_gives_a_lone_image_every_thread_and_a_batch_one(demo_ir: Path) -> None:
    runner = LoadAwareRunner(demo_ir, precision="fp32", lone_threads=2, batch_threads=1)
    compiled = {name: getattr(runner, name).request.get_compiled_model() for name in ("lone", "batched")}
    assert {name: model.get_property("INFERENCE_NUM_THREADS") for name, model in compiled.items()} == {
        "lone": 2,
        "batched": 1,
    }
    assert not any(model.get_property("ENABLE_CPU_PINNING") for model in compiled.values())
    reference = OpenVINORunner(demo_ir, precision="fp32", num_threads=2)
    calls: list[tuple[str, int]] = []
    for name in ("lone", "batched"):
        inner = getattr(runner, name)
        setattr(runner, name, lambda batch, name=name, inner=inner: calls.append((name, len(batch))) or inner(batch))
    generator = np.random.default_rng(5)
    for batch in (1, 3, 1, 7):
        inputs = generator.random((batch, 3, 416, 416), dtype=np.float32)
        for got, want in zip(runner(inputs), reference(inputs), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # a batch over MAX_INFERENCE_BATCH (4) runs in near-equal parts, its heads joined in order
    assert calls == [("lone", 1), ("batched", 3), ("lone", 1), ("batched", 4), ("batched", 3)]
    same = LoadAwareRunner(demo_ir, precision="fp32", lone_threads=2, batch_threads=2)
    assert same.batched is same.lone  # NAME_detector's: one compiled model for every batch


@pytest.mark.skipif(
    not cpu_has_native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX): auto serves fp32"
)
def test_bf16_ir_keeps_the_demo_detectors_boxes(demo_ir: Path) -> None:
    from yolo_client.scenes import generate_scene

    frames = [generate_scene(SCENE_SEED, index).image for index in range(SCENES)]
    eager = Detector(DEMO_CFG, DEMO_WEIGHTS, input_size=416)
    served = Detector(DEMO_CFG, DEMO_WEIGHTS, input_size=416, network=OpenVINORunner(demo_ir, precision="auto"))
    assert served.artifact.precision == "bf16"
    reference = [found for start in range(0, SCENES, 8) for found in eager.detect(frames[start : start + 8])]
    candidate = [found for start in range(0, SCENES, 8) for found in served.detect(frames[start : start + 8])]
    assert sum(len(found) for found in reference) >= SCENES  # the trained demo model finds the shapes
    assert matched_share(reference, candidate, iou_threshold=0.9) >= MIN_MATCHED


def test_plugin_options_name_the_resolved_precision() -> None:
    assert compile_options("bf16", 0)["INFERENCE_PRECISION_HINT"] == "bf16"
    assert compile_options("int8", 0)["INFERENCE_PRECISION_HINT"] == "f32"  # the INT8 IR's float layers
    assert compile_options("fp32", 2) == {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False,
        "INFERENCE_NUM_THREADS": 2,
    }  # fmt: skip
    for unresolved in ("fp16", "auto"):
        with pytest.raises(ValueError, match="CPU precision"):
            compile_options(unresolved, 0)


def test_missing_openvino_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` sees when it is not installed
    with pytest.raises(MissingExtra, match=r"pip install '\./server\[openvino\]'"):
        OpenVINORunner(tmp_path / "model.xml")
