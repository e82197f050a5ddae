"""The INT8 accuracy gate: a real NNCF quantization of the demo detector passes it, a broken one fails it, and
a build keeps, drops or refuses the INT8 IR accordingly."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tests.helpers.darknet_files import DEMO_CFG, DEMO_NAMES, DEMO_WEIGHTS
from yolo_server.darknet import load_darknet
from yolo_server.evaluation.coco import CocoDataset
from yolo_server.evaluation.gate import (
    MAX_MAP50_DROP,
    MIN_AGREEMENT,
    Figure,
    GateReport,
    agreement_gate,
    coco_gate,
)
from yolo_server.export import calibration
from yolo_server.export.calibration import CalibrationInput, calibration_files, calibration_inputs
from yolo_server.export.openvino import export_openvino
from yolo_server.export.quantize import quantize_ir
from yolo_server.ops.config import postprocess_config_for
from yolo_server.pipeline import Detector
from yolo_server.repository.build import build_repository
from yolo_server.repository.int8 import Int8GateFailed
from yolo_server.repository.plan import BuildOptions, Int8Options
from yolo_server.repository.spec import INT8_ARTIFACT, Decoding
from yolo_server.triton.runtime import OpenVINORunner
from yolo_server.triton.settings import PreprocessSettings

pytestmark = pytest.mark.timeout(600)

CFG, WEIGHTS, NAMES = DEMO_CFG, DEMO_WEIGHTS, DEMO_NAMES
SIZE = 416
CALIBRATION_SEED, CALIBRATION_COUNT = 0, 64  # the training distribution, as `make build` calibrates the demo
VALIDATION_SEED, VALIDATION_COUNT = 3000, 40
# the classic calibration mistake: raw 0..255 pixels where the network takes 0..1, so every range is 255x too wide
UNSCALED = 255.0


@dataclasses.dataclass(frozen=True)
class Quantized:
    fp32: Path
    int8: Path
    broken: Path
    calibration_dir: Path
    inputs: Sequence[CalibrationInput]
    validation: CocoDataset


def unscaled(inputs: Sequence[CalibrationInput]) -> list[CalibrationInput]:
    return [dataclasses.replace(item, tensor=item.tensor * UNSCALED) for item in inputs]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> Quantized:
    from yolo_server.training.scenes import write_dataset

    workdir = tmp_path_factory.mktemp("int8")
    model, spec = load_darknet(CFG, WEIGHTS, SIZE)
    fp32 = export_openvino(model, spec, workdir / "model.xml")[0]
    scenes = write_dataset(workdir / "calibration", CALIBRATION_COUNT, CALIBRATION_SEED, progress=False).parent
    decoding = Decoding()
    settings = PreprocessSettings(
        SIZE, SIZE, spec.net.letter_box, decoding.max_pixels, decoding.max_bytes, True, decoding.jpeg_decode
    )
    inputs = calibration_inputs(calibration_files(scenes), settings, progress=False)
    int8, broken = workdir / INT8_ARTIFACT, workdir / "broken.xml"
    quantize_ir(fp32, [item.tensor for item in inputs], int8)
    quantize_ir(fp32, [item.tensor for item in unscaled(inputs)], broken)
    validation = CocoDataset.load(write_dataset(workdir / "validation", VALIDATION_COUNT, VALIDATION_SEED, False))
    return Quantized(fp32, int8, broken, scenes, inputs, validation)


def detector(ir: Path, precision: str) -> Detector:
    found = Detector(CFG, WEIGHTS, NAMES, input_size=SIZE, network=OpenVINORunner(ir, precision))
    found.config = postprocess_config_for(found.spec)
    return found


def test_a_figure_passes_on_its_limit_and_fails_past_it() -> None:
    on_limit = Figure("mAP@0.5", 0.945, 0.95, MAX_MAP50_DROP)
    assert on_limit.passed and Figure("mAP@0.5", 0.96, 0.95, MAX_MAP50_DROP).passed
    past = Figure("mAP@0.5", 0.9449, 0.95, MAX_MAP50_DROP)
    assert not past.passed
    report = GateReport((on_limit, past), "40 annotated images")
    assert not report.passed
    assert report.shortfall == "mAP@0.5 dropped 0.0051, 0.0001 more than the 0.005 allowed"
    assert report.text.startswith("FAILED: mAP@0.5 0.9450 (fp32 0.9500, -0.0050, limit -0.0050); ")
    agreement = Figure("agreement", MIN_AGREEMENT, 1.0, 1.0 - MIN_AGREEMENT)
    assert agreement.passed and GateReport((agreement,), "x").shortfall == ""


def test_nncf_int8_keeps_the_demo_detectors_accuracy(quantized: Quantized) -> None:
    int8 = detector(quantized.int8, "int8")
    mapped = coco_gate(detector(quantized.fp32, "fp32"), int8, quantized.validation, Decoding().jpeg_decode)
    assert mapped.passed, mapped.text
    assert mapped.figures[0].fp32 > 0.85, "the trained demo model finds the shapes"
    agreed = agreement_gate(detector(quantized.fp32, "fp32"), detector(quantized.int8, "int8"), quantized.inputs)
    assert agreed.passed and agreed.text.startswith("passed: fp32 boxes found again at IoU>=0.5 "), agreed.text


def test_a_broken_quantization_fails_the_gate_saying_by_how_much(quantized: Quantized) -> None:
    broken = detector(quantized.broken, "int8")
    mapped = coco_gate(detector(quantized.fp32, "fp32"), broken, quantized.validation, Decoding().jpeg_decode)
    assert not mapped.passed and "more than the 0.005 allowed" in mapped.shortfall, mapped.text
    agreed = agreement_gate(detector(quantized.fp32, "fp32"), detector(quantized.broken, "int8"), quantized.inputs)
    assert not agreed.passed and "more than the 0.03 allowed" in agreed.shortfall, agreed.text


def detector_parameters(repository: Path) -> dict[str, str]:
    config = text_format.Parse((repository / "yolov4_tiny_shapes" / "config.pbtxt").read_text(), pb.ModelConfig())
    return {key: value.string_value for key, value in config.parameters.items()}


def test_a_build_drops_a_failed_int8_or_stops_as_asked(
    quantized: Quantized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(on_failure: str, precision: str) -> None:
        int8 = Int8Options(quantized.calibration_dir, None, on_failure)
        options = BuildOptions(CFG, WEIGHTS, NAMES, (SIZE, SIZE), precision=precision, int8=int8, output=tmp_path)
        build_repository(options, log=lambda line: None)

    good = calibration.calibration_inputs
    monkeypatch.setattr(calibration, "calibration_inputs", lambda *a, **k: unscaled(good(*a, **k)))
    build("fallback", "int8")
    parameters = detector_parameters(tmp_path)
    assert (parameters["precision"], parameters["int8_artifact"], parameters["int8_gate"]) == ("auto", "", "")
    assert not list(tmp_path.rglob("model-int8.*")) and (tmp_path / "yolov4_tiny_shapes" / "1" / "model.xml").is_file()
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")}
    with pytest.raises(Int8GateFailed, match="INT8 lost accuracy: .* more than the 0.03 allowed"):
        build("stop", "auto")
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")} == before, "the previous build stays"
    monkeypatch.setattr(calibration, "calibration_inputs", good)
    build("stop", "auto")
    parameters = detector_parameters(tmp_path)
    assert parameters["int8_artifact"] == INT8_ARTIFACT and parameters["int8_gate"].startswith("passed: ")
    assert (tmp_path / "yolov4_tiny_shapes" / "1" / INT8_ARTIFACT).is_file()
