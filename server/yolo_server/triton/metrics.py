"""Custom Prometheus metrics of the Python models (docs/metrics.md), via Triton's custom-metrics API.

Each family is declared once here as a :class:`Family` handle; call sites pass
the handle, never a name string, so a misspelt family is an ``ImportError`` /
``AttributeError`` (and a type-checker error) when the model loads instead of
an INTERNAL response on the first request that reaches it.

Every series carries ``model`` (the Triton model name). Families are created
once per model instance in ``initialize``; a series per extra label value
(``format``, ``reason``) is created on first use.

Example (inside a Triton Python model):
    >>> import triton_python_backend_utils as pb_utils
    >>> from yolo_server.triton import metrics as m
    >>> metrics = m.ModelMetrics(pb_utils, args["model_name"], (m.PREPROCESS_DURATION, m.IMAGES_DECODED))
    >>> with metrics.timer(m.PREPROCESS_DURATION):
    ...     decode()
    >>> metrics.increment(m.IMAGES_DECODED, format="jpeg")
    >>> metrics.rejected("undecodable")
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
COUNT_BUCKETS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0)


@dataclass(frozen=True, eq=False)
class Family:
    """One metric family: Prometheus ``name``, ``kind``, help text, extra labels (besides ``model``), buckets.

    Compared and hashed by identity (``eq=False``): each family is one module constant, and a series lookup on
    every observation then hashes a pointer rather than the name, help text and buckets.
    """

    name: str
    kind: Literal["counter", "histogram"]
    description: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


PREPROCESS_DURATION = Family(
    "yolo_preprocess_duration_seconds", "histogram", "decode + resize time per image", buckets=DURATION_BUCKETS
)
DETECTOR_DURATION = Family(
    "yolo_detector_duration_seconds", "histogram", "detector forward time per batch", buckets=DURATION_BUCKETS
)
POSTPROCESS_DURATION = Family(
    "yolo_postprocess_duration_seconds", "histogram", "decode + NMS + mapping time per batch", buckets=DURATION_BUCKETS
)
IMAGES_DECODED = Family("yolo_images_decoded_total", "counter", "images decoded, by format", labels=("format",))
CANDIDATES_PER_IMAGE = Family(
    "yolo_candidates_per_image", "histogram", "candidates above the score threshold before NMS", buckets=COUNT_BUCKETS
)
DETECTIONS_PER_IMAGE = Family("yolo_detections_per_image", "histogram", "detections after NMS", buckets=COUNT_BUCKETS)
REJECTED_INPUTS = Family(
    "yolo_rejected_inputs_total", "counter", "requests answered INVALID_ARG, by reason", labels=("reason",)
)

PREPROCESS_FAMILIES = (PREPROCESS_DURATION, IMAGES_DECODED)
POSTPROCESS_FAMILIES = (POSTPROCESS_DURATION, CANDIDATES_PER_IMAGE, DETECTIONS_PER_IMAGE)
FAMILIES: tuple[Family, ...] = (
    PREPROCESS_DURATION,
    DETECTOR_DURATION,
    POSTPROCESS_DURATION,
    IMAGES_DECODED,
    CANDIDATES_PER_IMAGE,
    DETECTIONS_PER_IMAGE,
    REJECTED_INPUTS,
)


class CountedDetections(Protocol):
    """What :meth:`ModelMetrics.detected` reads of one image's detections (``ops.postprocess.Detections``)."""

    @property
    def candidates(self) -> int: ...

    def __len__(self) -> int: ...


class ModelMetrics:
    """The custom metric families one model uses, labelled with its name.

    Args:
        pb_utils: the ``triton_python_backend_utils`` module of the running stub
            (any object with its ``MetricFamily``: tests pass a fake).
        model_name: the Triton model name (label ``model``).
        families: the :class:`Family` handles this model records; :data:`REJECTED_INPUTS` is always included.
    """

    def __init__(self, pb_utils: Any, model_name: str, families: Sequence[Family]) -> None:
        self._model_name = model_name
        self._families: dict[Family, Any] = {}
        self._series: dict[tuple[Family, tuple[tuple[str, str], ...]], Any] = {}
        for family in dict.fromkeys([*families, REJECTED_INPUTS]):
            kind = pb_utils.MetricFamily.HISTOGRAM if family.kind == "histogram" else pb_utils.MetricFamily.COUNTER
            self._families[family] = pb_utils.MetricFamily(name=family.name, description=family.description, kind=kind)

    def _metric(self, family: Family, kind: str, labels: dict[str, str]) -> Any:
        if family.kind != kind:
            raise TypeError(f"{family.name} is a {family.kind}, not a {kind}")
        key = (family, tuple(sorted(labels.items())))
        series = self._series.get(key)
        if series is not None:
            return series
        # checked once per series, not per observation: a mismatch is a programming error, found by the first test
        if family not in self._families:
            raise ValueError(f"{family.name} is not among this model's families: {[f.name for f in self._families]}")
        if sorted(labels) != sorted(family.labels):
            raise ValueError(f"{family.name} takes labels {list(family.labels)}, got {sorted(labels)}")
        all_labels = {"model": self._model_name, **labels}
        if family.kind == "histogram":
            series = self._families[family].Metric(labels=all_labels, buckets=list(family.buckets))
        else:
            series = self._families[family].Metric(labels=all_labels)
        self._series[key] = series
        return series

    def observe(self, family: Family, value: float, **labels: str) -> None:
        """Add one observation to a histogram."""
        self._metric(family, "histogram", labels).observe(float(value))

    def observe_all(self, family: Family, values: Sequence[float], **labels: str) -> None:
        metric = self._metric(family, "histogram", labels)
        for value in values:
            metric.observe(float(value))

    def increment(self, family: Family, value: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        self._metric(family, "counter", labels).increment(float(value))

    def rejected(self, reason: str) -> None:
        self.increment(REJECTED_INPUTS, reason=reason)

    def decoded(self, formats: Sequence[str], seconds: Sequence[float]) -> None:
        """Per image of one request: its decode + resize time and its format."""
        for image_format, image_seconds in zip(formats, seconds, strict=True):
            self.observe(PREPROCESS_DURATION, image_seconds)
            self.increment(IMAGES_DECODED, format=image_format)

    def detected(self, detections: Sequence[CountedDetections]) -> None:
        """Per image: the candidates before NMS and the detections after."""
        self.observe_all(CANDIDATES_PER_IMAGE, [d.candidates for d in detections])
        self.observe_all(DETECTIONS_PER_IMAGE, [len(d) for d in detections])

    @contextmanager
    def timer(self, family: Family) -> Iterator[None]:
        """Observe the block's wall time in seconds into histogram ``family``."""
        start = time.perf_counter()
        yield
        self.observe(family, time.perf_counter() - start)
