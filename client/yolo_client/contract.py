"""The wire contract of ``docs/triton-interface.md``, written once for the server, the client and the tools.

Tensor and output names, the models of a repository by role (the entry points and the
steps: :func:`model_name`, :func:`model_roles`, :func:`role_pattern`) and the one that runs
the network for images in each layout (:func:`network_model`), the config
``parameters`` every yolo-server model publishes (their keys, encoding and parsing),
the score cut (:func:`above_score_threshold`), and the defaults a user sees:
thresholds, detection cap, the default model, ports and the YOLOv4 paper's 65 FPS.
The server's generators, Python models and canary, the client, ``bench/`` and
``loadtest/`` read these from here, and ``docker/monitoring/`` its role patterns, network
roles, stage names and the 65 FPS target (numpy-free, no I/O).

Parameters are strings in ``config.pbtxt``: JSON scalars (``0.25``, ``true``,
``416``) and a JSON list for ``class_names``; a field annotated ``str`` is free
text, written as is.

Example:
    >>> info = ModelInfo(class_names=("cat",), input_width=416, input_height=416, letterbox=True)
    >>> ModelInfo.from_parameters(info.to_parameters()) == info
    True
    >>> model_name("yolov4_tiny", TENSOR), fallback_label(7)
    ('yolov4_tiny_tensor', 'class_7')
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

# request and intermediate tensors
IMAGE = "IMAGE"  # BYTES [B, 1]: one encoded image per row (the image model)
INPUT = "INPUT"  # FP32 [B, 3, H, W] in [0, 1] (the tensor ensemble, and the tensorrt detector)
PIXELS = "PIXELS"  # UINT8 [B, 3, H, W] (preprocess -> cpu detector)
RESIZE = "RESIZE"  # FP32 [B, RESIZE_LEN]: how each image sits in the network input
RESIZE_LEN = 6  # width, height, new_width, new_height, pad_x, pad_y
# the detector's inputs: libtorch (tensorrt) names its inputs NAME__i, and the cpu detector keeps the same names
DETECTOR_INPUT, DETECTOR_PIXELS = f"{INPUT}__0", f"{PIXELS}__0"
HEAD_PREFIX = "YOLO__"  # detector -> postprocess: FP32 [B, A*(5+C), h, w] per [yolo] head, cfg order
# the ragged outputs, in this order: BOXES FP32 [B, K, 4], SCORES FP32 [B, K], CLASSES INT32 [B, K], COUNT INT32 [B, 1]
BOXES, SCORES, CLASSES, COUNT = OUTPUT_NAMES = ("BOXES", "SCORES", "CLASSES", "COUNT")
# the admin APIs' key (the model repository, shared memory, trace, logging): an HTTP header, and gRPC metadata
# under the prefix Triton gives restricted protocols
ADMIN_KEY_HEADER = "admin-key"
GRPC_ADMIN_KEY_HEADER = f"triton-grpc-protocol-{ADMIN_KEY_HEADER}"

# model names, by role: NAME (the image entry point: the fused model or the bytes ensemble), NAME_tensor (the
# tensor entry point), NAME_<stage> for each step (model_name, model_roles)
STAGES = ("preprocess", "detector", "postprocess")
IMAGES, TENSOR = "images", "tensor"
ENTRY_POINTS = (IMAGES, TENSOR)
ROLES = (*ENTRY_POINTS, *STAGES)
_ROLE_SUFFIX = {IMAGES: "", TENSOR: "_tensor", **{stage: f"_{stage}" for stage in STAGES}}
# a repository's layouts: "fused" (the cpu target's default: images through one Python model, NAME) and "ensemble"
# (tensorrt, and cpu --no-fused: NAME is the bytes ensemble NAME_preprocess -> NAME_detector -> NAME_postprocess)
FUSED, ENSEMBLE = LAYOUTS = ("fused", "ensemble")
# the role of the model that runs the network for images, by layout (network_model); the tensor entry point runs
# it in NAME_detector on both, which in the fused layout serves that entry point alone
NETWORK_ROLES = {FUSED: IMAGES, ENSEMBLE: "detector"}

RANDOM_WEIGHTS = "RANDOM-CALIBRATED-NOT-TRAINED"  # the ``weights`` parameter of a model built without weights
# the parameter `yolo-server serve` adds to each model it runs: a JSON object, for each setting it resolved on the
# serving machine (instances, threads...), {"value": ..., "source": "sized" | "build" | "tuned"}
SERVING_PARAMETER = "serving"

# darknet ``detector test`` defaults; beta_nms is the [yolo] heads' default (0.6 in every official cfg)
DEFAULT_SCORE_THRESHOLD = 0.25
DEFAULT_NMS_THRESHOLD = 0.45
DEFAULT_BETA_NMS = 0.6
DEFAULT_MAX_DETECTIONS = 300

# the base name `make serve` serves (the demo: models/shapes/yolov4-tiny-shapes.cfg, named from its file name)
DEFAULT_MODEL = "yolov4_tiny_shapes"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002  # Triton's own defaults
DEFAULT_URL = f"localhost:{GRPC_PORT}"
TARGET_FPS = 65.0  # YOLOv4 paper (Bochkovskiy et al. 2020): real time at 65 FPS on a V100

P = TypeVar("P", bound="Parameters")
S = TypeVar("S")


def model_name(base: str, role: str) -> str:
    """The model of ``role`` (one of :data:`ROLES`) of the detector served as ``base``: ``NAME``, ``NAME_tensor``,
    ``NAME_preprocess``..."""
    if role not in _ROLE_SUFFIX:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return f"{base}{_ROLE_SUFFIX[role]}"


def network_model(base: str, layout: str) -> str:
    """The model that runs the network for the images sent to ``base`` in ``layout`` (one of :data:`LAYOUTS`): its
    count is the images served, its queue the image traffic's wait for the network.

    Example:
        >>> network_model("yolov4_tiny", FUSED), network_model("yolov4_tiny", ENSEMBLE)
        ('yolov4_tiny', 'yolov4_tiny_detector')
    """
    if layout not in NETWORK_ROLES:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return model_name(base, NETWORK_ROLES[layout])


def model_roles(names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Each of a repository's model names -> ``(base, role)``.

    ``NAME_<role>`` is that role of ``NAME`` only where ``NAME`` is among ``names`` too, since every detector has
    its image entry point: so a detector served as ``cars_detector`` is an image entry point, and
    ``cars_detector_detector`` its detector.

    Example:
        >>> model_roles(["cars_detector", "cars_detector_detector", "m", "m_tensor"])["cars_detector"]
        ('cars_detector', 'images')
    """
    names = set(names)
    roles = {}
    for name in sorted(names):
        role = next(
            (
                role
                for role in ROLES
                if role != IMAGES
                and name.endswith(_ROLE_SUFFIX[role])
                and name.removesuffix(_ROLE_SUFFIX[role]) in names
            ),
            IMAGES,
        )
        roles[name] = (name.removesuffix(_ROLE_SUFFIX[role]), role)
    return roles


def role_pattern(roles: Iterable[str]) -> str:
    """A regular expression (RE2, as Prometheus matches labels) for model names of these roles, on names alone.

    Unlike :func:`model_roles` it cannot see the other names, so ``cars_detector`` matches the detector's
    pattern; the image entry points are what matches none of the other roles' (``model!~``).
    """
    suffixes = [_ROLE_SUFFIX[role] for role in roles]
    if not all(suffixes):
        raise ValueError("the image entry point has no suffix: match it as none of the other roles")
    return f".+({'|'.join(suffixes)})"


def above_score_threshold(score: S, threshold: float) -> S:
    """darknet's score cut, the one comparison of every score threshold, the server's and a call's: strictly above,
    at float32 (the scores' precision in the server's ops and on the wire: a call's 0.3 cuts where the server's does).

    Elementwise on numpy arrays and torch tensors, a bool on a float.
    """
    at_float32 = struct.unpack("<f", struct.pack("<f", threshold))[0]
    return score > at_float32  # type: ignore[no-any-return]


def check_score_threshold(threshold: object) -> None:
    """Refuse a score threshold outside [0, 1), the server's and a call's alike (ValueError).

    1 is out: :func:`above_score_threshold` keeps scores strictly above it, as darknet, and no score (objectness x
    class probability) is above 1, so a threshold of 1 would keep nothing.
    """
    if not isinstance(threshold, numbers.Real) or not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"score_threshold must be in [0, 1), got {threshold!r}")


def head_name(index: int) -> str:
    """The detector output (and postprocess input) of the ``index``-th [yolo] head."""
    return f"{HEAD_PREFIX}{index}"


def fallback_label(class_id: int) -> str:
    """The label of a class the model has no name for."""
    return f"class_{class_id}"


def read_parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """``parameters`` of a model config as JSON (Triton's ``initialize`` or ``get_model_config(as_json=True)``)."""
    raw = model_config.get("parameters") or {}
    return {
        key: value.get("string_value", "") if isinstance(value, Mapping) else str(value) for key, value in raw.items()
    }


def _encode(field: dataclasses.Field[Any], value: Any) -> str:
    if field.type == "str":
        return str(value)
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _decode(field: dataclasses.Field[Any], text: str) -> Any:
    """One parameter's value, of the field's type; ValueError naming the key otherwise."""
    if field.type == "str":
        return text
    value = json.loads(text)
    kind = field.type
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:  # tuple[str, ...]
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        value = tuple(value) if ok else value
    if not ok:
        raise ValueError(f"parameter {field.name!r} must be a JSON {kind}, got {text!r}")
    return value


class Parameters:
    """Mixin: a frozen dataclass <-> Triton string parameters, one key per field (less ``NOT_PARAMETERS``)."""

    NOT_PARAMETERS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def parameter_fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} mixes in Parameters but is not a dataclass")
        return tuple(f for f in dataclasses.fields(cls) if f.name not in cls.NOT_PARAMETERS)

    def to_parameters(self) -> dict[str, str]:
        return {f.name: _encode(f, getattr(self, f.name)) for f in self.parameter_fields()}

    @classmethod
    def from_parameters(cls: type[P], parameters: Mapping[str, str], **not_parameters: Any) -> P:
        """Raises ValueError naming the missing or malformed keys."""
        fields = cls.parameter_fields()
        missing = [f.name for f in fields if f.name not in parameters]
        if missing:
            raise ValueError(f"{cls.__name__}: the model config lacks parameters {missing}")
        return cls(**{f.name: _decode(f, parameters[f.name]) for f in fields}, **not_parameters)


@dataclass(frozen=True)
class ModelInfo(Parameters):
    """What a served detector publishes in its ``parameters`` (the image and tensor entry points, the postprocess).

    Attributes:
        class_names: label of each class id.
        input_width, input_height: network input size in pixels.
        letterbox: whether the image is letterboxed (aspect kept, 0.5 padding) or stretched.
        score_threshold, nms_threshold, beta_nms: the server's thresholds (a call can only raise the score threshold).
        class_agnostic: whether NMS ignores classes.
        max_detections: the server's cap on detections per image.
        weights: SHA-256 of the weights, or :data:`RANDOM_WEIGHTS`.
        target, precision: how the detector was built (``cpu``/``tensorrt``, ``auto``/``fp16``...).
        name: the Triton model these values were read from (not a parameter).
        max_batch_size: the model's ``max_batch_size``, the largest batch in one request (not a parameter).
    """

    NOT_PARAMETERS: ClassVar[frozenset[str]] = frozenset({"name", "max_batch_size"})

    class_names: tuple[str, ...]
    input_width: int
    input_height: int
    letterbox: bool
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    nms_threshold: float = DEFAULT_NMS_THRESHOLD
    beta_nms: float = DEFAULT_BETA_NMS
    class_agnostic: bool = False
    max_detections: int = DEFAULT_MAX_DETECTIONS
    weights: str = ""
    target: str = ""
    precision: str = ""
    name: str = ""
    max_batch_size: int = 0

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> ModelInfo:
        """From ``get_model_config(name, as_json=True)`` (or its ``"config"`` member); ValueError if not ours."""
        config = config.get("config", config)
        info = cls.from_parameters(
            read_parameters(config), name=name, max_batch_size=int(config.get("max_batch_size", 0))
        )
        if info.input_width <= 0 or info.input_height <= 0:
            raise ValueError(f"input {info.input_width}x{info.input_height}")
        check_score_threshold(info.score_threshold)
        return info

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def trained(self) -> bool:
        """False when the server runs random (calibrated, untrained) weights."""
        return bool(self.weights) and self.weights != RANDOM_WEIGHTS

    def label(self, class_id: int) -> str:
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else fallback_label(class_id)
