"""What each Triton model reads from the ``parameters`` of its ``config.pbtxt``, beyond the contract's.

:class:`yolo_client.contract.ModelInfo` is what every yolo-server model publishes; the
settings here are each step's own. The build writes both with ``to_parameters()``
and the Python models read them back with ``from_parameters()``, so a key is
spelled in exactly one place (the field name), encoded by the contract's codec.

Example:
    >>> parameters = read_parameters(json.loads(args["model_config"]))
    >>> PostprocessConfig.from_model_info(ModelInfo.from_parameters(parameters)).score_threshold
    0.25
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from yolo_client.contract import Parameters


@dataclass(frozen=True)
class PreprocessSettings(Parameters):
    """Decode limits and network input geometry of ``NAME_preprocess``.

    ``pixels``: hand the detector uint8 ``PIXELS`` (a quarter of the bytes; the
    cpu detector scales them) rather than the float32 ``INPUT`` (tensorrt).
    ``jpeg_decode``: one of :data:`yolo_server.triton.imaging.JPEG_DECODES`.
    """

    input_width: int
    input_height: int
    letterbox: bool
    max_pixels: int
    max_bytes: int
    pixels: bool
    jpeg_decode: str


@dataclass(frozen=True)
class DetectorSettings(Parameters):
    """``NAME_detector`` and the fused ``NAME`` (cpu target): the OpenVINO IRs in the version directory, the
    precision asked for and the threads (:class:`yolo_server.triton.runtime.LoadAwareRunner`).

    ``int8_artifact`` is the INT8 IR ("" where none was built or its accuracy gate refused it) and
    ``int8_gate`` what the build checked before writing it, with the figures.
    """

    input_width: int
    input_height: int
    precision: str
    artifact: str
    lone_threads: int  # OpenVINO threads for a batch of one image; 0: one per core
    batch_threads: int  # OpenVINO threads for a batch of several; 0: one per core
    int8_artifact: str
    int8_gate: str


def warmup_batches(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes a detector runs at load, so that no request waits while a runtime plans one: a lone image
    and a full batch (OpenVINO plans each batch size at its first call, TensorRT sets up at its first call)."""
    return tuple(sorted({1, max_batch_size}))


def served_line(settings: DetectorSettings, served: str) -> str:
    """The log line of a detector's load: what it serves, what was asked, and the INT8 gate's verdict."""
    line = f"{served} (asked: {settings.precision})"
    return f"{line}; INT8 gate {settings.int8_gate}" if settings.int8_gate else line


# the knobs serve sizes to the CPUs it may use, as :class:`Sized` names them
INSTANCES, LONE_THREADS, BATCH_THREADS = "instances", "lone_threads", "batch_threads"


@dataclass(frozen=True)
class Sized(Parameters):
    """The knobs of a model that ``yolo-server serve`` sizes to the CPUs it may use (:mod:`yolo_server.launcher.sizing`):
    those the build was not given. The config holds a placeholder for each (what plain tritonserver runs)."""

    sized: tuple[str, ...]

    @classmethod
    def left_to_serve(cls, parameters: Mapping[str, str]) -> tuple[str, ...]:
        """The knobs a model's ``parameters`` leave to serve; none where they hold no such list (a model config
        written by hand, or by a build before sizing)."""
        if any(f.name not in parameters for f in cls.parameter_fields()):
            return ()
        return cls.from_parameters(parameters).sized


@dataclass(frozen=True)
class PostprocessSettings(Parameters):
    """``NAME_postprocess`` beyond :class:`ModelInfo`: the cfg copy it reads heads from, the pre-NMS cap."""

    cfg: str
    pre_nms_top_k: int
    num_threads: int
