"""A stand-in for ``triton_python_backend_utils``, and a loader that runs a repository's ``model.py`` on it.

The real module exists only inside Triton's Python-backend stub. This one keeps the parts the adapters use
(``Tensor``, ``InferenceResponse``, ``TritonError``, ``get_input_tensor_by_name``, ``Logger``, ``MetricFamily``)
and refuses what the real one refuses where the adapters could get it wrong: a ``Tensor`` of anything but a
numpy array, a response of anything but a list of tensors. It imports numpy only, so that a fresh interpreter
that loads a stub's ``model.py`` on it shows what that stub imports (``tests/unit/test_import_rules.py``).

Example:
    >>> install()                                         # before importing a model.py
    >>> model = load_model(model_args(repository, "yolov4_tiny_shapes_detector"))
    >>> [response] = model.execute([InferenceRequest({"INPUT__0": batch})])
    >>> response.output_tensors()[0].as_numpy().shape
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

MODULE = "triton_python_backend_utils"


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        if not isinstance(name, str) or not isinstance(array, np.ndarray):
            raise TypeError(f"pb_utils.Tensor takes a name and a numpy array, got {type(name)}, {type(array)}")
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        if not isinstance(output_tensors, list) or not all(isinstance(t, Tensor) for t in output_tensors):
            raise TypeError("InferenceResponse takes a list of pb_utils.Tensor")
        self._tensors, self._error = output_tensors, error

    def output_tensors(self) -> list[Tensor]:
        return self._tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def outputs(self) -> dict[str, np.ndarray]:
        """The test's view (not in the real API): output name -> array."""
        return {tensor.name(): tensor.as_numpy() for tensor in self._tensors}


class InferenceRequest:
    """A request as ``execute`` gets it: its input tensors by name (absent optional inputs are left out)."""

    def __init__(self, inputs: Mapping[str, np.ndarray]) -> None:
        self.arrays = dict(inputs)
        self.inputs = {name: Tensor(name, array) for name, array in inputs.items()}


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return request.inputs.get(name)


class Logger:
    lines: ClassVar[list[tuple[str, str]]] = []

    @staticmethod
    def log_info(message: str) -> None:
        Logger.lines.append(("info", message))

    @staticmethod
    def log_warn(message: str) -> None:
        Logger.lines.append(("warn", message))

    @staticmethod
    def log_error(message: str) -> None:
        Logger.lines.append(("error", message))


class Metric:
    def __init__(self, labels: dict[str, str], buckets: list[float] | None = None) -> None:
        self.labels, self.buckets, self.values = labels, buckets, []

    def observe(self, value: float) -> None:
        self.values.append(value)

    def increment(self, value: float) -> None:
        self.values.append(value)


class MetricFamily:
    COUNTER, HISTOGRAM = "COUNTER", "HISTOGRAM"
    created: ClassVar[list[MetricFamily]] = []

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name, self.description, self.kind, self.series = name, description, kind, []
        MetricFamily.created.append(self)

    def Metric(self, labels: dict[str, str], buckets: list[float] | None = None) -> Metric:
        self.series.append(Metric(labels, buckets))
        return self.series[-1]


def install() -> ModuleType:
    """Make ``import triton_python_backend_utils`` give this module."""
    sys.modules[MODULE] = sys.modules[__name__]
    return sys.modules[__name__]


def model_args(repository: Path, model: str, kind: str = "CPU") -> dict[str, str]:
    """``initialize``'s ``args`` for ``model`` of ``repository``, as Triton gives them: the config as JSON."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2 as pb

    config = text_format.Parse((repository / model / "config.pbtxt").read_text(), pb.ModelConfig())
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return {
        "model_config": json.dumps(as_json),
        "model_repository": str(repository / model),
        "model_version": "1",
        "model_name": model,
        "model_instance_kind": kind,
        "model_instance_device_id": "0",
    }


def load_model(args: Mapping[str, str]) -> Any:
    """The model's ``model.py`` imported (on this module, :func:`install`-ed), its model initialized with ``args``."""
    install()
    path = Path(args["model_repository"]) / args["model_version"] / "model.py"
    spec = importlib.util.spec_from_file_location(f"stub_{args['model_name']}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize(dict(args))
    return model
