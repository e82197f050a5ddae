"""What a model repository holds, as frozen dataclasses (no Triton, no torch).

Example:
    >>> spec = RepositorySpec("yolov4_tiny", info, batching=Batching(max_batch_size=8),
    ...                       instances=Instances(preprocess=2))
    >>> spec.names.detector
    'yolov4_tiny_detector'
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from yolo_client.contract import IMAGES, ROLES, TENSOR, ModelInfo, model_name
from yolo_server.flags import PER_TARGET, flag, positive_ints
from yolo_server.ops.config import DEFAULT_PRE_NMS_TOP_K
from yolo_server.precision import PRECISIONS, check_precision
from yolo_server.triton.imaging import DEFAULT_JPEG_DECODE, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, JPEG_DECODES

TARGETS = tuple(PRECISIONS)
# cpu: images go through one fused model, measured faster than the ensemble on every load
# (docs/cpu-serving.md "One fused model"); tensorrt: the detector is Triton's libtorch backend, so steps stay models
FUSED_BY_DEFAULT = {"cpu": True, "tensorrt": False}
# the detector file in NAME_detector/1/: OpenVINO IR (with its model.bin beside it) / TorchScript with TensorRT engines
ARTIFACTS = {"cpu": "model.xml", "tensorrt": "model.pt"}
INT8_ARTIFACT = "model-int8.xml"  # the cpu target's INT8 IR (with its model-int8.bin), beside model.xml
CFG_COPY = "model.cfg"  # the cfg copy in NAME_postprocess/1/ (and the fused NAME/1/)


def model_base_name(cfg_path: str | Path) -> str:
    """``yolov4-tiny.cfg`` -> ``yolov4_tiny``: a Triton-safe name from the cfg file name."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", Path(cfg_path).stem)
    return name if re.match(r"[A-Za-z_]", name) else f"m_{name}"


@dataclass(frozen=True)
class ModelNames:
    """The Triton model names derived from the base name, one per role (docs/triton-interface.md)."""

    base: str

    @property
    def images(self) -> str:
        """The image entry point: the fused model (cpu default), or the bytes ensemble (tensorrt, ``--no-fused``)."""
        return model_name(self.base, IMAGES)

    @property
    def tensor_ensemble(self) -> str:
        return model_name(self.base, TENSOR)

    @property
    def preprocess(self) -> str:
        return model_name(self.base, "preprocess")

    @property
    def detector(self) -> str:
        return model_name(self.base, "detector")

    @property
    def postprocess(self) -> str:
        return model_name(self.base, "postprocess")

    def all(self) -> tuple[str, ...]:
        return tuple(model_name(self.base, role) for role in ROLES)


@dataclass(frozen=True)
class Batching:
    """Dynamic batching of every batchable model.

    ``opt_batch_size`` is the TensorRT profile's optimum; ``preferred_batch_sizes``
    are the detector's preferred batches (the scheduler waits up to the queue delay
    to fill one).

    Each model's queue holds at most ``max_queue_images`` images: Triton bounds a queue
    in requests, and one request carries up to ``max_batch_size`` images, so the bound
    is :attr:`max_queue_size` requests. A request waits at most ``queue_timeout_us`` in
    one queue and is then rejected (UNAVAILABLE), so an ensemble request waits at most
    three times that in queues — under the SDK's default deadline, so the server sheds
    it before the client gives up on it.
    """

    max_batch_size: int = flag(
        "--max-batch-size", f"largest dynamic batch (default: {PER_TARGET})", default=8, parse=int,
    )  # fmt: skip
    opt_batch_size: int = flag(
        "--opt-batch-size", "TensorRT profile optimum (default: half the max batch)", default=4, parse=int,
    )  # fmt: skip
    max_queue_delay_us: int = flag(
        "--max-queue-delay-us", f"longest wait to fill a batch (default: {PER_TARGET})", default=2000, parse=int,
    )  # fmt: skip
    max_queue_images: int = flag(
        "--max-queue-images", f"images each model's queue holds, full-batch requests counted (default: {PER_TARGET})",
        default=512, parse=int,
    )  # fmt: skip
    queue_timeout_us: int = flag(
        "--queue-timeout-us", f"longest wait in one model's queue before UNAVAILABLE (default: {PER_TARGET})",
        default=3_000_000, parse=int,
    )  # fmt: skip
    preferred_batch_sizes: tuple[int, ...] = flag(
        "--preferred-batch-sizes", "the detector's preferred dynamic batches (default: cpu none, tensorrt optimum "
        "and max)", default=(), parse=positive_ints("batch sizes", "16,32"), metavar="N[,N...]",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size={self.max_batch_size} must be at least 1")
        if not 1 <= self.opt_batch_size <= self.max_batch_size:
            raise ValueError(f"opt_batch_size={self.opt_batch_size} must be in 1..max_batch_size={self.max_batch_size}")
        if self.max_queue_delay_us < 0 or self.queue_timeout_us < 1:
            raise ValueError("max_queue_delay_us must be >= 0 and queue_timeout_us >= 1")
        if self.max_queue_images < self.max_batch_size:
            raise ValueError(
                f"max_queue_images={self.max_queue_images} must hold at least one full batch ({self.max_batch_size})"
            )
        if any(not 1 <= size <= self.max_batch_size for size in self.preferred_batch_sizes):
            raise ValueError(
                f"preferred batch sizes {list(self.preferred_batch_sizes)} must be in 1..max_batch_size={self.max_batch_size}"
            )

    @property
    def max_queue_size(self) -> int:
        """The queue bound in requests: as many full-batch requests as fit in ``max_queue_images``."""
        return self.max_queue_images // self.max_batch_size

    @property
    def profile(self) -> tuple[int, int, int]:
        """The TensorRT optimization profile's (min, opt, max) batch: every batch from 1 runs, tuned for the optimum."""
        return (1, self.opt_batch_size, self.max_batch_size)

    @classmethod
    def for_target(
        cls,
        target: str,
        *,
        max_batch_size: int | None = None,
        opt_batch_size: int | None = None,
        max_queue_delay_us: int | None = None,
        max_queue_images: int | None = None,
        queue_timeout_us: int | None = None,
        preferred_batch_sizes: tuple[int, ...] | None = None,
    ) -> Batching:
        """The target's defaults (:data:`TARGET_BATCHING`) with the given fields replaced; None keeps a default.

        A new ``max_batch_size`` without an ``opt_batch_size`` puts the optimum at half of it (at least 2 where the
        maximum allows: TensorRT tunes for it, and a dynamic batch cannot be traced at 1); on a target
        that prefers batches (the GPU), preferred sizes not given follow as (optimum, maximum).
        """
        base = TARGET_BATCHING[target]
        if max_batch_size is None:
            max_batch_size = base.max_batch_size
        elif opt_batch_size is None:
            opt_batch_size = max(min(2, max_batch_size), max_batch_size // 2)
        if opt_batch_size is None:
            opt_batch_size = base.opt_batch_size
        if preferred_batch_sizes is None:
            preferred_batch_sizes = (
                tuple(sorted({opt_batch_size, max_batch_size}))
                if base.preferred_batch_sizes
                else base.preferred_batch_sizes
            )
        return dataclasses.replace(
            base,
            max_batch_size=max_batch_size,
            opt_batch_size=opt_batch_size,
            max_queue_delay_us=base.max_queue_delay_us if max_queue_delay_us is None else max_queue_delay_us,
            max_queue_images=base.max_queue_images if max_queue_images is None else max_queue_images,
            queue_timeout_us=base.queue_timeout_us if queue_timeout_us is None else queue_timeout_us,
            preferred_batch_sizes=preferred_batch_sizes,
        )


# CPU: small batches keep latency near one image's, and no queue delay: each of the three steps would add
# its delay to a lone request, while under load requests still batch, each execution taking whatever queued
# while the model ran (measured: docs/cpu-serving.md "OpenVINO, at the fastest precision the serving CPU runs").
# GPU: batches large enough to fill the device at 416-608
TARGET_BATCHING = {
    "cpu": Batching(max_queue_delay_us=0),
    "tensorrt": Batching(max_batch_size=32, opt_batch_size=16, max_queue_images=16384, preferred_batch_sizes=(16, 32)),
}


@dataclass(frozen=True)
class Instances:
    """Model instances per kind (KIND_CPU; the tensorrt detector's are KIND_GPU), as the user gave them.

    None, the default, leaves a count to ``yolo-server serve``, which sizes it to the CPUs it may use
    (:mod:`yolo_server.launcher.sizing`); the config then holds :data:`PLACEHOLDER_INSTANCES`. The tensorrt
    detector is not sized to CPUs: it runs one instance per GPU unless given.
    """

    preprocess: int | None = None
    detector: int | None = None
    postprocess: int | None = None
    fused: int | None = None

    def __post_init__(self) -> None:
        for kind in INSTANCE_KINDS:
            count = getattr(self, kind)
            if count is not None and count < 1:
                raise ValueError(f"instances of {kind} must be at least 1, got {count}")

    def count(self, kind: str) -> int:
        """The config's count: the user's, else the placeholder serve replaces."""
        count: int | None = getattr(self, kind)
        return PLACEHOLDER_INSTANCES if count is None else count


# what plain tritonserver runs of a count left to serve's sizing
PLACEHOLDER_INSTANCES = 1
INSTANCE_KINDS = tuple(f.name for f in dataclasses.fields(Instances))


@dataclass(frozen=True)
class Decoding:
    """How the preprocess decodes one encoded image: the caps checked first, and the scale a JPEG is decoded at."""

    max_pixels: int = flag(
        "--max-pixels", "per image, checked before decoding", default=DEFAULT_MAX_PIXELS,
        parse=lambda text: int(float(text)),  # 4e6 as well as 4000000
    )  # fmt: skip
    max_bytes: int = flag("--max-bytes", "per encoded image", default=DEFAULT_MAX_BYTES, parse=int)
    jpeg_decode: str = flag(
        "--jpeg-decode", "scaled: a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still covers the "
        "network input, boxes in its original pixels; full: every pixel, as darknet does",
        default=DEFAULT_JPEG_DECODE, choices=JPEG_DECODES,
    )  # fmt: skip


@dataclass(frozen=True)
class RepositorySpec:
    """Everything the configs and files of one repository depend on.

    ``info.target`` picks the detector's backend; ``detector_threads`` sets the cpu detector's
    OpenVINO threads (the fused model's for a lone image; 0: one per core; None: sized by serve) and ``postprocess_threads``
    a GPU postprocess instance's torch intra-op threads (the cpu stubs run the ops on numpy, on one thread). ``fused`` (cpu only) serves images with one model, :attr:`ModelNames.images`,
    instead of the preprocess -> detector -> postprocess ensemble (:data:`FUSED_BY_DEFAULT`).
    ``int8_gate`` (cpu only) is the accuracy check an INT8 IR passed, with its figures: set by the build after
    it measured them, empty where the repository has no INT8 IR.
    """

    name: str
    info: ModelInfo
    batching: Batching = field(default_factory=Batching)
    instances: Instances = field(default_factory=Instances)
    decoding: Decoding = field(default_factory=Decoding)
    detector_threads: int | None = None
    postprocess_threads: int = 1
    pre_nms_top_k: int = DEFAULT_PRE_NMS_TOP_K
    fused: bool = False
    int8_gate: str = ""

    def __post_init__(self) -> None:
        if self.info.target not in TARGETS:
            raise ValueError(f"target {self.info.target!r} is not one of {', '.join(TARGETS)}")
        if self.fused and self.info.target != "cpu":
            raise ValueError(f"only the cpu target has a fused model, not {self.info.target!r}")
        check_precision(self.info.target, self.info.precision)
        if self.int8_gate and self.info.target != "cpu":
            raise ValueError(f"only the cpu target builds an INT8 IR, not {self.info.target!r}")
        if not re.fullmatch(r"[A-Za-z_][0-9A-Za-z_\-]*", self.name):
            raise ValueError(f"model name {self.name!r}: use letters, digits, '_' and '-'")

    @property
    def names(self) -> ModelNames:
        return ModelNames(self.name)

    @property
    def artifact(self) -> str:
        """The detector artifact's file name in its version directory."""
        return ARTIFACTS[self.info.target]

    @property
    def int8_artifact(self) -> str:
        """The INT8 IR's file name beside :attr:`artifact`; "" where the repository has none."""
        return INT8_ARTIFACT if self.int8_gate else ""
