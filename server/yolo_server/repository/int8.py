"""The INT8 step of a cpu build: calibrate, quantize, measure, and keep the IR only where it kept accuracy.

Example:
    >>> options = BuildOptions(cfg=cfg, int8=Int8Options(Path("calibration/"), Path("val/annotations.json")))
    >>> report = build_int8(options, plan_repository(options), Path("scratch/model.xml"))
    >>> report.passed, report.text
    (True, 'passed: mAP@0.5 0.9507 (fp32 0.9508, -0.0001, limit -0.0050); ...')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from yolo_server.repository.spec import INT8_ARTIFACT

if TYPE_CHECKING:
    from yolo_server.evaluation.gate import GateReport
    from yolo_server.export.calibration import CalibrationInput
    from yolo_server.repository.plan import BuildOptions, Int8Options, RepositoryPlan


class Int8GateFailed(RuntimeError):
    """The INT8 IR lost accuracy and the build was asked to stop; the message has the figures."""


def check_inputs(options: Int8Options) -> None:
    """What can be checked before any export: the calibration folder, the annotation file, NNCF."""
    from yolo_server.export.calibration import calibration_files
    from yolo_server.export.quantize import import_nncf

    calibration_files(options.calibration_images)
    import_nncf()
    if options.validation is not None and not Path(options.validation).is_file():
        raise ValueError(f"--validation {options.validation}: no such COCO annotations file")


def build_int8(
    options: BuildOptions, plan: RepositoryPlan, fp32_ir: Path, log: Callable[[str], None] = print
) -> GateReport:
    """Write the INT8 IR beside ``fp32_ir`` and measure it against fp32 (the caller keeps or drops it)."""
    from yolo_server.export.calibration import calibration_files, calibration_inputs, spread
    from yolo_server.export.quantize import quantize_ir
    from yolo_server.repository.configs import preprocess_settings

    int8 = options.int8
    assert int8 is not None
    files = spread(calibration_files(int8.calibration_images))
    inputs = calibration_inputs(files, preprocess_settings(plan.spec, pixels=True), log=log)
    log(f"  INT8: quantizing with {len(inputs)} calibration images from {int8.calibration_images} ...")
    int8_ir = fp32_ir.with_name(INT8_ARTIFACT)
    quantize_ir(fp32_ir, [item.tensor for item in inputs], int8_ir)
    return measure(options, plan, fp32_ir, int8_ir, inputs)


def measure(
    options: BuildOptions, plan: RepositoryPlan, fp32_ir: Path, int8_ir: Path, inputs: Sequence[CalibrationInput]
) -> GateReport:
    """The gate: COCO mAP on the validation annotations where given, else agreement on the calibration ``inputs``."""
    from yolo_server.evaluation.coco import CocoDataset
    from yolo_server.evaluation.gate import agreement_gate, coco_gate
    from yolo_server.ops.config import PostprocessConfig
    from yolo_server.pipeline import Detector
    from yolo_server.triton.runtime import OpenVINORunner

    info = plan.spec.info
    fp32, int8 = (
        Detector(
            options.cfg,
            options.weights,
            options.names,
            input_size=(info.input_width, info.input_height),
            config=PostprocessConfig.from_model_info(info, plan.spec.pre_nms_top_k),
            network=OpenVINORunner(ir, precision),
        )
        for ir, precision in ((fp32_ir, "fp32"), (int8_ir, "int8"))
    )
    validation = options.int8.validation if options.int8 else None
    if validation is not None:
        return coco_gate(fp32, int8, CocoDataset.load(validation), plan.spec.decoding.jpeg_decode)
    return agreement_gate(fp32, int8, inputs)
