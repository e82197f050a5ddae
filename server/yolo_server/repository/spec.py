"""What a model repository holds, as frozen dataclasses (no Triton, no torch).

Example:
    >>> spec = RepositorySpec(info=info, batching=Batching(max_batch_size=8), instances=Instances(preprocess=2))
    >>> spec.names.detector
    'yolov4_tiny_detector'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from yolo_server.triton.settings import ModelInfo

TARGETS = ("cpu", "tensorrt")
PRECISIONS = {"cpu": ("fp32", "bf16"), "tensorrt": ("fp16", "fp32", "int8")}
DEFAULT_PRECISION = {"cpu": "fp32", "tensorrt": "fp16"}
MODEL_KINDS = ("preprocess", "detector", "postprocess")
ARTIFACT = "model.pt"  # the detector file in NAME_detector/1/ (TorchScript on both targets)
CFG_COPY = "model.cfg"  # the cfg copy in NAME_postprocess/1/


def model_base_name(cfg_path: str | Path) -> str:
    """``yolov4-tiny.cfg`` -> ``yolov4_tiny``: a Triton-safe name from the cfg file name."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", Path(cfg_path).stem)
    return name if re.match(r"[A-Za-z_]", name) else f"m_{name}"


@dataclass(frozen=True)
class ModelNames:
    """The five Triton model names derived from the base name (docs/triton-interface.md)."""

    base: str

    @property
    def bytes_ensemble(self) -> str:
        return self.base

    @property
    def tensor_ensemble(self) -> str:
        return f"{self.base}_tensor"

    @property
    def preprocess(self) -> str:
        return f"{self.base}_preprocess"

    @property
    def detector(self) -> str:
        return f"{self.base}_detector"

    @property
    def postprocess(self) -> str:
        return f"{self.base}_postprocess"

    def all(self) -> tuple[str, ...]:
        return (self.preprocess, self.detector, self.postprocess, self.bytes_ensemble, self.tensor_ensemble)


@dataclass(frozen=True)
class Batching:
    """Dynamic batching of every batchable model.

    ``opt_batch_size`` is the TensorRT profile's optimum (and, on that target, a
    preferred batch size); ``max_queue_size`` 0 means unbounded.
    """

    max_batch_size: int = 8
    opt_batch_size: int = 4
    max_queue_delay_us: int = 2000
    max_queue_size: int = 128

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size={self.max_batch_size} must be at least 1")
        if not 1 <= self.opt_batch_size <= self.max_batch_size:
            raise ValueError(f"opt_batch_size={self.opt_batch_size} must be in 1..max_batch_size={self.max_batch_size}")
        if self.max_queue_delay_us < 0 or self.max_queue_size < 0:
            raise ValueError("max_queue_delay_us and max_queue_size must be >= 0")


@dataclass(frozen=True)
class Instances:
    """Model instances per kind (KIND_CPU; the tensorrt detector's are KIND_GPU)."""

    preprocess: int = 2
    detector: int = 1
    postprocess: int = 1

    def __post_init__(self) -> None:
        for kind in MODEL_KINDS:
            if getattr(self, kind) < 1:
                raise ValueError(f"instances of {kind} must be at least 1, got {getattr(self, kind)}")


@dataclass(frozen=True)
class Limits:
    """Preprocess caps on one encoded image."""

    max_pixels: int = 50_000_000
    max_bytes: int = 64 << 20


@dataclass(frozen=True)
class RepositorySpec:
    """Everything the configs and files of one repository depend on.

    ``info.target`` picks the detector's backend; ``detector_threads`` and
    ``postprocess_threads`` set PyTorch's intra-op threads (0: its default).
    """

    name: str
    info: ModelInfo
    batching: Batching = field(default_factory=Batching)
    instances: Instances = field(default_factory=Instances)
    limits: Limits = field(default_factory=Limits)
    detector_threads: int = 0
    postprocess_threads: int = 1
    pre_nms_top_k: int = 5000

    def __post_init__(self) -> None:
        if self.info.target not in TARGETS:
            raise ValueError(f"target {self.info.target!r} is not one of {', '.join(TARGETS)}")
        if self.info.precision not in PRECISIONS[self.info.target]:
            raise ValueError(
                f"precision {self.info.precision!r} is not available on {self.info.target} "
                f"(choose from {', '.join(PRECISIONS[self.info.target])})"
            )
        if not re.fullmatch(r"[A-Za-z_][0-9A-Za-z_\-]*", self.name):
            raise ValueError(f"model name {self.name!r}: use letters, digits, '_' and '-'")

    @property
    def names(self) -> ModelNames:
        return ModelNames(self.name)
