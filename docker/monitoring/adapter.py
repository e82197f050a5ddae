"""The prometheus-adapter rule (``docker/k8s/prometheus-adapter/config.yaml``): the HPA's pods metric.

prometheus-adapter fills ``metricsQuery``, a Go template with ``<<`` ``>>`` delimiters, for the pods the HPA asks
about: ``<<.LabelMatchers>>`` becomes ``namespace="default",pod="yolo-0"`` (``pod=~"yolo-0|yolo-1"`` for several)
and ``<<.GroupBy>>`` the pod label, ``pod`` (``pkg/naming/metrics_query.go``); it reads a NaN as 0. The query is
:func:`~monitoring.thresholds.queue_compute_ratio`, the one the recording rule ``instance:yolo_queue_compute_ratio``
draws on the dashboard, so it sees the models that run the network on either layout.
"""

from __future__ import annotations

from typing import Any

from monitoring.thresholds import Thresholds, queue_compute_ratio

HPA_METRIC = "yolo_queue_compute_ratio"  # the pods metric docker/k8s/base/hpa.yaml scales on
LABEL_MATCHERS, GROUP_BY = "<<.LabelMatchers>>", "<<.GroupBy>>"  # the template's fields the query uses
SERIES = "nv_inference_queue_duration_us"  # the series that names the metric (discovery)

COMMENT = """\
# prometheus-adapter rules (custom metrics API), the ConfigMap of docker/k8s/prometheus-adapter/kustomization.yaml.
# `yolo_queue_compute_ratio`, per pod over the rate window: the queue time of the models that run the network for
# images (the fused model on the cpu target's default layout, NAME_detector on tensorrt and cpu --no-fused, and
# NAME_detector for the tensor entry point on both; the contract's NETWORK_ROLES) divided by their compute time.
# The fused model is told from an ensemble NAME by the detector histogram only it exports (docs/metrics.md).
# Series need `namespace` and `pod` labels (Prometheus' kubernetes-pods job adds them to the pods annotated
# prometheus.io/scrape in docker/k8s/base/deployment.yaml).
"""


def metrics_query(t: Thresholds, label_matchers: str = LABEL_MATCHERS, group_by: str = GROUP_BY) -> str:
    """The rule's ``metricsQuery``: the template, or with the adapter's values for a pod already in (promtool)."""
    return queue_compute_ratio(t.rate_window, group_by, label_matchers)


def adapter_config(t: Thresholds) -> dict[str, Any]:
    """The adapter's config file: one rule, the HPA's metric."""
    rule = {
        "seriesQuery": f'{SERIES}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{SERIES}$", "as": HPA_METRIC},
        "metricsQuery": metrics_query(t),
    }
    return {"rules": [rule]}
