"""``yolo-server build``: cfg (+ weights, names) -> a complete Triton model repository.

:func:`plan_repository` decides everything without torch work (the configs can
be generated and checked for any target on any machine); :func:`build_repository`
writes the files and exports the detector artifact.

Example:
    >>> options = BuildOptions(cfg=Path("models/darknet/yolov4-tiny.cfg"), names=Path("models/darknet/coco.names"))
    >>> build_repository(options)          # writes model_repository/yolov4_tiny*/...
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from yolo_client.contract import (
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_NMS_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    RANDOM_WEIGHTS,
    ModelInfo,
)
from yolo_server.darknet import load_spec
from yolo_server.darknet.cfg import DarknetSpec
from yolo_server.darknet.names import load_class_names
from yolo_server.darknet.weights import file_digest
from yolo_server.precision import DEFAULT_PRECISION
from yolo_server.repository.int8 import Int8GateFailed, Int8Options, build_int8, check_inputs
from yolo_server.repository.spec import (
    FUSED_BY_DEFAULT,
    INT8_ARTIFACT,
    TARGET_BATCHING,
    Batching,
    Instances,
    Limits,
    RepositorySpec,
    model_base_name,
)
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


@dataclass(frozen=True)
class BuildOptions:
    """The inputs of one build (the CLI's flags).

    ``size`` is (width, height) or None for the cfg's; ``target`` is ``cpu``,
    ``tensorrt`` or ``auto``; ``precision`` None picks the target's default. ``int8`` (cpu, precision
    ``auto`` or ``int8``) also builds an INT8 IR from calibration images, kept where it passes its gate.
    """

    cfg: Path
    weights: Path | None = None
    names: Path | None = None
    size: tuple[int, int] | None = None
    target: str = "cpu"
    precision: str | None = None
    name: str | None = None
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    nms_threshold: float = DEFAULT_NMS_THRESHOLD
    max_detections: int = DEFAULT_MAX_DETECTIONS
    class_agnostic: bool = False
    batching: Batching | None = None  # None: the target's defaults (TARGET_BATCHING)
    instances: Instances = field(default_factory=Instances)
    limits: Limits = field(default_factory=Limits)
    detector_threads: int | None = None
    fused: bool | None = None  # None: the target's default (FUSED_BY_DEFAULT)
    output: Path = Path("model_repository")
    int8: Int8Options | None = None


@dataclass(frozen=True)
class RepositoryPlan:
    """A decided build: the spec, the cfg at the repository's input size and the cfg file's bytes."""

    spec: RepositorySpec
    darknet: DarknetSpec
    cfg_bytes: bytes


def resolve_target(target: str) -> str:
    """``auto`` -> ``tensorrt`` when a CUDA GPU and torch_tensorrt are present, else ``cpu``."""
    if target != "auto":
        return target
    import torch

    has_trt = importlib.util.find_spec("torch_tensorrt") is not None
    return "tensorrt" if torch.cuda.is_available() and has_trt else "cpu"


def resolve_precision(target: str, precision: str | None) -> str:
    """None -> the target's default. cpu ``auto`` stays ``auto``: the serving machine's CPU decides at load."""
    return DEFAULT_PRECISION[target] if precision is None else precision


def check_int8_request(target: str, precision: str, int8: Int8Options | None) -> None:
    """INT8 needs calibration images, and calibration images mean INT8 (cpu, ``auto`` or ``int8``)."""
    if target == "cpu" and precision == "int8" and int8 is None:  # tensorrt refuses int8 with its own reason
        raise ValueError(
            "--precision int8 needs --calibration-images DIR: quantization fits its ranges to images like "
            "the traffic the model will serve"
        )
    if int8 is not None and (target != "cpu" or precision not in ("auto", "int8")):
        raise ValueError(
            f"--calibration-images builds an INT8 IR: cpu target, precision auto or int8 (not {target} {precision})"
        )


def plan_repository(options: BuildOptions) -> RepositoryPlan:
    """Everything a build writes, decided from the options (reads the cfg, names and weights digest)."""
    from yolo_server.ops.config import postprocess_config_for

    darknet = load_spec(options.cfg, options.size)
    target = resolve_target(options.target)
    check_int8_request(target, resolve_precision(target, options.precision), options.int8)
    thresholds = postprocess_config_for(
        darknet,
        score_threshold=options.score_threshold,
        nms_threshold=options.nms_threshold,
        class_agnostic=options.class_agnostic,
        max_detections=options.max_detections,
    )
    info = ModelInfo(
        class_names=load_class_names(options.names, darknet.num_classes),
        score_threshold=thresholds.score_threshold,
        nms_threshold=thresholds.nms_threshold,
        beta_nms=thresholds.beta_nms,
        class_agnostic=thresholds.class_agnostic,
        max_detections=thresholds.max_detections,
        input_width=darknet.net.width,
        input_height=darknet.net.height,
        letterbox=darknet.net.letter_box,
        weights=RANDOM_WEIGHTS if options.weights is None else file_digest(options.weights),
        target=target,
        precision=resolve_precision(target, options.precision),
    )
    spec = RepositorySpec(
        name=options.name or model_base_name(options.cfg),
        info=info,
        batching=options.batching or TARGET_BATCHING[target],
        instances=options.instances,
        limits=options.limits,
        detector_threads=options.detector_threads,
        pre_nms_top_k=thresholds.pre_nms_top_k,
        fused=FUSED_BY_DEFAULT[target] if options.fused is None else options.fused,
    )
    return RepositoryPlan(spec, darknet, Path(options.cfg).read_bytes())


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
