"""Custom Prometheus metrics of the Python models (docs/metrics.md), via Triton's custom-metrics API.

Every series carries ``model`` (the Triton model name). Families are created
once per model instance in ``initialize``; a series per extra label value
(``format``, ``reason``) is created on first use.

Example (inside a Triton Python model):
    >>> import triton_python_backend_utils as pb_utils
    >>> metrics = ModelMetrics(pb_utils, args["model_name"], ("yolo_preprocess_duration_seconds",))
    >>> with metrics.timer("yolo_preprocess_duration_seconds"):
    ...     decode()
    >>> metrics.rejected("undecodable")
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
COUNT_BUCKETS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0)


@dataclass(frozen=True)
class FamilySpec:
    """One metric family: ``kind`` is ``counter`` or ``histogram``."""

    name: str
    kind: str
    description: str
    buckets: tuple[float, ...] = ()


FAMILIES = {
    spec.name: spec
    for spec in (
        FamilySpec("yolo_preprocess_duration_seconds", "histogram", "decode + resize time per image", DURATION_BUCKETS),
        FamilySpec("yolo_detector_duration_seconds", "histogram", "detector forward time per batch", DURATION_BUCKETS),
        FamilySpec(
            "yolo_postprocess_duration_seconds", "histogram", "decode + NMS + mapping time per batch", DURATION_BUCKETS
        ),
        FamilySpec("yolo_images_decoded_total", "counter", "images decoded, by format"),
        FamilySpec(
            "yolo_candidates_per_image", "histogram", "candidates above the score threshold before NMS", COUNT_BUCKETS
        ),
        FamilySpec("yolo_detections_per_image", "histogram", "detections after NMS", COUNT_BUCKETS),
        FamilySpec("yolo_rejected_inputs_total", "counter", "requests answered INVALID_ARG, by reason"),
    )
}
REJECTED = "yolo_rejected_inputs_total"


class ModelMetrics:
    """The custom metric families one model uses, labelled with its name.

    Args:
        pb_utils: the ``triton_python_backend_utils`` module of the running stub.
        model_name: the Triton model name (label ``model``).
        families: names from :data:`FAMILIES`; ``yolo_rejected_inputs_total`` is always included.
    """

    def __init__(self, pb_utils: Any, model_name: str, families: Sequence[str]) -> None:
        self._pb_utils = pb_utils
        self._model_name = model_name
        self._families: dict[str, Any] = {}
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        for name in dict.fromkeys([*families, REJECTED]):
            spec = FAMILIES[name]
            kind = pb_utils.MetricFamily.HISTOGRAM if spec.kind == "histogram" else pb_utils.MetricFamily.COUNTER
            self._families[name] = pb_utils.MetricFamily(name=name, description=spec.description, kind=kind)

    def _metric(self, name: str, labels: dict[str, str]) -> Any:
        key = (name, tuple(sorted(labels.items())))
        if key not in self._series:
            spec = FAMILIES[name]
            all_labels = {"model": self._model_name, **labels}
            family = self._families[name]
            if spec.kind == "histogram":
                self._series[key] = family.Metric(labels=all_labels, buckets=list(spec.buckets))
            else:
                self._series[key] = family.Metric(labels=all_labels)
        return self._series[key]

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Add one observation to a histogram."""
        self._metric(name, labels).observe(float(value))

    def observe_all(self, name: str, values: Sequence[float], **labels: str) -> None:
        metric = self._metric(name, labels)
        for value in values:
            metric.observe(float(value))

    def increment(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        self._metric(name, labels).increment(float(value))

    def rejected(self, reason: str) -> None:
        self.increment(REJECTED, reason=reason)

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Observe the block's wall time in seconds into histogram ``name``."""
        start = time.perf_counter()
        yield
        self.observe(name, time.perf_counter() - start)
