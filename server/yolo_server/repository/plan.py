"""What a build is asked (:class:`BuildOptions`, every ``yolo-server build`` option declared once) and what it
decides from that without torch work (:func:`plan_repository`): the configs can be generated and checked for any
target on any machine.

Example:
    >>> plan = plan_repository(BuildOptions(cfg=Path("models/darknet/yolov4-tiny.cfg"), target="tensorrt"))
    >>> plan.spec.names.detector, plan.spec.batching.max_batch_size
    ('yolov4_tiny_detector', 32)
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from yolo_server.export.calibration import MIN_CALIBRATION_IMAGES
from yolo_server.flags import flag, nested
from yolo_server.precision import ALL_PRECISIONS, DEFAULT_PRECISION, PRECISIONS, UNSUPPORTED_PRECISIONS
from yolo_server.repository.spec import (
    FUSED_BY_DEFAULT,
    INSTANCE_KINDS,
    TARGET_BATCHING,
    TARGETS,
    Batching,
    Decoding,
    Instances,
    RepositorySpec,
    model_base_name,
)

GATE_FAILURE_CHOICES = ("fallback", "stop")


def parse_size(text: str) -> tuple[int, int]:
    """``416`` -> (416, 416); ``512x320`` -> (512, 320)."""
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r}: use N (square) or WIDTHxHEIGHT, e.g. 416 or 512x320")
    width = int(match.group(1))
    return width, int(match.group(2) or width)


def parse_instances(text: str) -> tuple[str, int]:
    """``fused=3`` -> ("fused", 3)."""
    kind, sep, count = text.partition("=")
    if not sep or kind not in INSTANCE_KINDS or not count.isdigit():
        raise argparse.ArgumentTypeError(
            f"--instances {text!r}: use KIND=N with KIND one of {', '.join(INSTANCE_KINDS)}"
        )
    return kind, int(count)


def resolve_target(target: str) -> str:
    """``auto`` -> ``tensorrt`` when a CUDA GPU and torch_tensorrt are present, else ``cpu``."""
    if target != "auto":
        return target
    import torch

    has_trt = importlib.util.find_spec("torch_tensorrt") is not None
    return "tensorrt" if torch.cuda.is_available() and has_trt else "cpu"


@dataclass(frozen=True)
class Int8Options:
    """``calibration_images``: a folder of the traffic's images; ``validation``: COCO annotations for the gate
    (None: the gate measures agreement with fp32 on the calibration images); ``on_gate_failure``: ``fallback``
    (serve fp32/bf16, say so) or ``stop`` (fail the build, leave the previous repository)."""

    calibration_images: Path = flag(
        "--calibration-images", "cpu: also build an INT8 IR, calibrated on the images under DIR (JPEG, PNG, WebP, "
        f"BMP; at least {MIN_CALIBRATION_IMAGES}, like the traffic to serve); it is kept only where it passes its "
        "accuracy gate", parse=Path, metavar="DIR", in_models=True,
    )  # fmt: skip
    validation: Path | None = flag(
        "--validation", "the INT8 gate on COCO annotations: mAP@0.5 and mAP@[.5:.95] against fp32 (default: the "
        "share of fp32's boxes INT8 finds again on the calibration images)", default=None, parse=Path,
        metavar="ANNOTATIONS.json", in_models=True,
    )  # fmt: skip
    on_gate_failure: str = flag(
        "--int8-gate-failure", "an INT8 IR that fails its gate: fallback (write none, serve fp32/bf16, warn) or stop "
        "(fail the build)", default=GATE_FAILURE_CHOICES[0], choices=GATE_FAILURE_CHOICES,
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.on_gate_failure not in GATE_FAILURE_CHOICES:
            raise ValueError(f"on_gate_failure must be one of {GATE_FAILURE_CHOICES}, not {self.on_gate_failure!r}")


def _int8(values: dict[str, Any], _: Mapping[str, Any]) -> Int8Options | None:
    if values["calibration_images"] is None:
        if values["validation"] is not None:
            raise ValueError("--validation checks an INT8 build: give --calibration-images too")
        return None
    return Int8Options(**values)


def _precision_help() -> str:
    cpu, gpu = PRECISIONS["cpu"], PRECISIONS["tensorrt"]
    return (
        f"cpu: {'|'.join(cpu)} (default {DEFAULT_PRECISION['cpu']}: the fastest built on the serving CPU: int8 where "
        "it was built and the CPU has AVX2, bf16 where native, else fp32); tensorrt: "
        f"{'|'.join(gpu)} (default {DEFAULT_PRECISION['tensorrt']}), "
        f"{'|'.join(UNSUPPORTED_PRECISIONS['tensorrt'])} is refused with the reason"
    )


@dataclass(frozen=True)
class BuildOptions:
    """The inputs of one build: each field is a ``yolo-server build`` flag and a container variable.

    ``size`` is (width, height) or None for the cfg's; ``target`` is ``cpu``, ``tensorrt`` or ``auto``;
    ``precision`` None picks the target's default. ``int8`` (cpu, precision ``auto`` or ``int8``) also builds an
    INT8 IR from calibration images, kept where it passes its gate.
    """

    cfg: Path = flag("--cfg", "darknet .cfg", parse=Path, in_models=True, by_hand=True)
    weights: Path | None = flag(
        "--weights", "darknet .weights (default: calibrated RANDOM weights, not trained)", default=None, parse=Path,
        in_models=True, by_hand=True,
    )  # fmt: skip
    names: Path | None = flag(
        "--names", "class names, one per line (default: class ids)", default=None, parse=Path,
        in_models=True, by_hand=True,
    )  # fmt: skip
    size: tuple[int, int] | None = flag(
        "--size", "network input, N or WxH, multiples of 32 (default: the cfg's)", default=None, parse=parse_size,
    )  # fmt: skip
    target: str = flag(
        "--target", "what serves the detector: OpenVINO on the CPU, or TensorRT (auto: tensorrt where a GPU and "
        "torch_tensorrt are here)", default="cpu", choices=(*TARGETS, "auto"), convert=resolve_target,
    )  # fmt: skip
    precision: str | None = flag("--precision", _precision_help(), default=None, choices=ALL_PRECISIONS)
    name: str | None = flag(
        "--name", "base model name (default: from the cfg file name)", default=None, variable="MODEL_NAME"
    )
    score_threshold: float = flag(
        "--score-threshold", "the served score threshold", default=DEFAULT_SCORE_THRESHOLD, parse=float,
    )  # fmt: skip
    nms_threshold: float = flag(
        "--nms-threshold", "the served DIoU-NMS threshold", default=DEFAULT_NMS_THRESHOLD, parse=float,
    )  # fmt: skip
    max_detections: int = flag(
        "--max-detections", "the most detections an image returns", default=DEFAULT_MAX_DETECTIONS, parse=int,
    )  # fmt: skip
    class_agnostic: bool = flag(
        "--class-agnostic", "NMS across classes (default: per class)", default=False, kind="switch",
    )  # fmt: skip
    batching: Batching | None = nested(  # None: the target's defaults (TARGET_BATCHING)
        None,
        make=lambda values, made: Batching.for_target(made["target"], **values),
        per_target=lambda: TARGET_BATCHING,
    )
    instances: Instances = flag(
        "--instances", "instances per model kind (repeatable; default: sized by serve to the CPUs it may use, the "
        "tensorrt detector 1 per GPU)", default_factory=Instances, variable="{KEY}_INSTANCES", kind="keyed",
        keys=INSTANCE_KINDS, parse=parse_instances, metavar="KIND=N",
        convert=lambda pairs: Instances(**dict(pairs)),
    )  # fmt: skip
    decoding: Decoding = nested(default_factory=Decoding)
    detector_threads: int | None = flag(
        "--detector-threads", "OpenVINO threads per cpu detector instance, the fused model's for a lone image (0: one "
        "per core; default: sized by serve to the CPUs it may use)", default=None, parse=int,
    )  # fmt: skip
    fused: bool | None = flag(  # None: the target's default (FUSED_BY_DEFAULT)
        "--fused", "serve images with one fused Python model instead of the ensemble (default: cpu "
        f"{'fused' if FUSED_BY_DEFAULT['cpu'] else 'ensemble'}; tensorrt: ensemble only)", default=None, kind="toggle",
    )  # fmt: skip
    output: Path = flag(
        "--output", "model repository directory", default=Path("model_repository"), variable="REPOSITORY",
        parse=Path, by_hand=True,
    )  # fmt: skip
    int8: Int8Options | None = nested(None, make=_int8)


@dataclass(frozen=True)
class RepositoryPlan:
    """A decided build: the spec, the cfg at the repository's input size and the cfg file's bytes."""

    spec: RepositorySpec
    darknet: DarknetSpec
    cfg_bytes: bytes


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
    precision = resolve_precision(target, options.precision)
    check_int8_request(target, precision, options.int8)
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
        precision=precision,
    )
    spec = RepositorySpec(
        name=options.name or model_base_name(options.cfg),
        info=info,
        batching=options.batching or TARGET_BATCHING[target],
        instances=options.instances,
        decoding=options.decoding,
        detector_threads=options.detector_threads,
        pre_nms_top_k=thresholds.pre_nms_top_k,
        fused=FUSED_BY_DEFAULT[target] if options.fused is None else options.fused,
    )
    return RepositoryPlan(spec, darknet, Path(options.cfg).read_bytes())
