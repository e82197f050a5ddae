"""``yolo-server build``: cfg (+ weights, names) -> a complete Triton model repository.

:func:`~yolo_server.repository.plan.plan_repository` decides everything without torch work;
:func:`build_repository` writes the files and exports the detector artifact.

Example:
    >>> options = BuildOptions(cfg=Path("models/darknet/yolov4-tiny.cfg"), names=Path("models/darknet/coco.names"))
    >>> build_repository(options)          # writes model_repository/yolov4_tiny*/...
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from yolo_client.contract import RANDOM_WEIGHTS
from yolo_server.repository.int8 import Int8GateFailed, build_int8, check_inputs
from yolo_server.repository.plan import BuildOptions, RepositoryPlan, plan_repository
from yolo_server.repository.spec import INT8_ARTIFACT
from yolo_server.repository.writer import artifact_directories, link_or_copy, write_repository

if TYPE_CHECKING:
    from yolo_server.evaluation.gate import GateReport

RANDOM_WEIGHTS_WARNING = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: no --weights given. The detector gets RANDOM, calibrated weights.  !!
!! It is NOT TRAINED: its detections are meaningless (fine for tests and        !!
!! benchmarks only). Its configs say weights: RANDOM-CALIBRATED-NOT-TRAINED.    !!
!! Pass --weights yolov4-tiny.weights (darknet format) for a real detector.    !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


def preflight(options: BuildOptions) -> RepositoryPlan:
    """What a build needs, checked without exporting or writing: the plan, and that the target can build here."""
    plan = plan_repository(options)
    if plan.spec.info.target == "tensorrt":
        from yolo_server.export.program import BatchRange
        from yolo_server.export.tensorrt import TensorRTUnavailable, check_profile, tensorrt_available

        check_profile(BatchRange(*plan.spec.batching.profile))
        reason = tensorrt_available()
        if reason:
            raise TensorRTUnavailable(reason)
    if options.int8 is not None:
        check_inputs(options.int8)
    return plan


def export_detector(
    options: BuildOptions, plan: RepositoryPlan, path: Path, log: Callable[[str], None] = print
) -> GateReport | None:
    """Load the network (random calibrated weights without ``options.weights``) and export it for the target.

    ``path`` is the artifact's main file; the export may write siblings beside it (OpenVINO's ``.bin``, the
    INT8 IR). Returns the INT8 gate's report where one was built.
    """
    from yolo_server.darknet import load_darknet

    spec = plan.spec
    model, darknet = load_darknet(options.cfg, options.weights, options.size)
    if spec.info.target == "cpu":
        from yolo_server.export.openvino import export_openvino
        from yolo_server.precision import resolve_cpu_precision

        export_openvino(model, darknet, path)
        if options.int8 is None:
            log(f"  OpenVINO IR, {spec.info.precision} (on this CPU: {resolve_cpu_precision(spec.info.precision)})")
            return None
        report = build_int8(options, plan, path, log)
        log(f"  INT8 gate {report.text}")
        return report
    from yolo_server.export.program import BatchRange
    from yolo_server.export.tensorrt import export_tensorrt

    batches = BatchRange(*spec.batching.profile)
    engines = export_tensorrt(model, darknet, path, spec.info.precision, batches)
    log(f"  TensorRT: {engines} engine(s), batch {batches.minimum}..{batches.maximum} (optimum {batches.optimum})")
    return None


def settle_int8(plan: RepositoryPlan, report: GateReport, on_failure: str, scratch: Path) -> RepositoryPlan:
    """The plan with the INT8 IR kept (its gate's figures in the configs), or without it where it failed.

    Raises:
        Int8GateFailed: it failed and ``on_failure`` is ``stop``.
    """
    spec = plan.spec
    if report.passed:
        return dataclasses.replace(plan, spec=dataclasses.replace(spec, int8_gate=report.text))
    message = f"INT8 lost accuracy: {report.shortfall} ({report.text})"
    if on_failure == "stop":
        raise Int8GateFailed(f"{message}; nothing written (--int8-gate-failure stop)")
    from yolo_server.export.openvino import artifact_files

    for leftover in artifact_files(scratch / INT8_ARTIFACT):
        leftover.unlink(missing_ok=True)
    fallback = "auto" if spec.info.precision == "int8" else spec.info.precision
    print(f"WARNING: {message}; no INT8 IR written, serving {fallback} (fp32, or bf16 where native)", file=sys.stderr)
    info = dataclasses.replace(spec.info, precision=fallback)
    return dataclasses.replace(plan, spec=dataclasses.replace(spec, info=info))


def build_repository(options: BuildOptions, log: Callable[[str], None] = print) -> RepositoryPlan:
    """Write the repository under ``options.output`` and export the detector into it."""
    started = time.perf_counter()
    plan = plan_repository(options)
    spec = plan.spec
    if options.int8 is not None:
        check_inputs(options.int8)  # before minutes of export
    if options.weights is None:
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr, flush=True)
        log(f"weights: {RANDOM_WEIGHTS}")
    else:
        log(f"weights: {options.weights} (sha256 {spec.info.weights})")
    output = Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    log(
        f"exporting {spec.names.detector} ({spec.info.target}, {spec.info.precision}, "
        f"{spec.info.input_width}x{spec.info.input_height}, max batch {spec.batching.max_batch_size}) ..."
    )
    artifacts: list[Path] = []
    with tempfile.TemporaryDirectory(prefix=".yolo-server-build-", dir=output) as scratch:
        # a failed export leaves the previous repository as it was
        report = export_detector(options, plan, Path(scratch) / spec.artifact, log)
        if report is not None and options.int8 is not None:
            plan = settle_int8(plan, report, options.int8.on_gate_failure, Path(scratch))
            spec = plan.spec
        written = write_repository(spec, plan.darknet, plan.cfg_bytes, output)
        version_dir, *sharing = artifact_directories(spec, output)
        for exported in sorted(Path(scratch).iterdir()):
            placed = version_dir / exported.name
            os.replace(exported, placed)
            artifacts.append(placed)
            artifacts += [link_or_copy(placed, directory / exported.name) for directory in sharing]
    for path in [*written, *artifacts]:
        log(f"  wrote {path}")
    names = spec.names
    log(
        f"repository {output} ready in {time.perf_counter() - started:.1f}s: "
        f"send images to `{names.images}`, tensors to `{names.tensor_ensemble}`"
    )
    return plan
