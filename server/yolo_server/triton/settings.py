"""What each Triton model reads from the ``parameters`` of its ``config.pbtxt``.

The build writes these with ``to_parameters()`` and the Python models read them
back with ``from_parameters()``, so a key is spelled in exactly one place.
Values are JSON scalars (``0.25``, ``true``, ``416``) except the free-text
``weights``, ``target`` and ``precision``; ``class_names`` is a JSON list.

Example:
    >>> info = ModelInfo.from_parameters(read_parameters(json.loads(args["model_config"])))
    >>> info.postprocess_config().score_threshold
    0.25
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

RANDOM_WEIGHTS = "RANDOM-CALIBRATED-NOT-TRAINED"
_TEXT_FIELDS = frozenset({"weights", "target", "precision", "cfg", "artifact"})

T = TypeVar("T")


def read_parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """``parameters`` of a model config as Triton hands it to ``initialize`` (JSON) -> {key: string_value}."""
    return {key: value["string_value"] for key, value in model_config.get("parameters", {}).items()}


def _encode(name: str, value: Any) -> str:
    if name in _TEXT_FIELDS:
        return str(value)
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _decode(field: dataclasses.Field, text: str) -> Any:
    if field.name in _TEXT_FIELDS:
        return text
    value = json.loads(text)
    return tuple(value) if isinstance(value, list) else value


class _Parameters:
    """Mixin: a frozen dataclass <-> Triton string parameters (one key per field)."""

    def to_parameters(self) -> dict[str, str]:
        return {f.name: _encode(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_parameters(cls: type[T], parameters: Mapping[str, str]) -> T:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        missing = [f.name for f in fields if f.name not in parameters]
        if missing:
            raise ValueError(f"{cls.__name__}: config.pbtxt lacks parameters {missing}")
        return cls(**{f.name: _decode(f, parameters[f.name]) for f in fields})


@dataclass(frozen=True)
class ModelInfo(_Parameters):
    """The parameters the contract publishes on the ensembles and the postprocess model."""

    class_names: tuple[str, ...]
    score_threshold: float
    nms_threshold: float
    beta_nms: float
    class_agnostic: bool
    max_detections: int
    input_width: int
    input_height: int
    letterbox: bool
    weights: str
    target: str
    precision: str

    def postprocess_config(self, pre_nms_top_k: int = 5000) -> Any:
        """The :class:`yolo_server.ops.postprocess.PostprocessConfig` these parameters describe."""
        from yolo_server.ops.postprocess import PostprocessConfig

        return PostprocessConfig(
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
            beta_nms=self.beta_nms,
            class_agnostic=self.class_agnostic,
            max_detections=self.max_detections,
            pre_nms_top_k=pre_nms_top_k,
        )


@dataclass(frozen=True)
class PreprocessSettings(_Parameters):
    """Decode limits and network input geometry of ``NAME_preprocess``.

    ``pixels``: hand the detector uint8 ``PIXELS`` (a quarter of the bytes; the
    cpu detector scales them) rather than the float32 ``INPUT`` (tensorrt).
    """

    input_width: int
    input_height: int
    letterbox: bool
    max_pixels: int
    max_bytes: int
    pixels: bool


@dataclass(frozen=True)
class DetectorSettings(_Parameters):
    """``NAME_detector`` (cpu target): the OpenVINO IR in the version directory, its precision and threads."""

    input_width: int
    input_height: int
    precision: str
    artifact: str
    num_threads: int  # OpenVINO inference threads; 0: one per core


@dataclass(frozen=True)
class PostprocessSettings(_Parameters):
    """``NAME_postprocess`` beyond :class:`ModelInfo`: the cfg copy it reads heads from, the pre-NMS cap."""

    cfg: str
    pre_nms_top_k: int
    num_threads: int
