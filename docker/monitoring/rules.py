"""The Prometheus recording and alerting rules (``docker/prometheus/rules/``).

The recording rules do the arithmetic once: rates per model summed over Triton instances, time per request, ratios,
and the SLOs as constant ``yolo:slo_*`` series, so that the alerts, the dashboard and the HPA's adapter read short,
identical names. Each alert compares one of those series with its :class:`Thresholds` number.

Metric names are Triton 2.51's (read off a running tritonserver 2.51: ``nv_inference_count``,
``nv_inference_request_failure{reason=REJECTED|CANCELED|BACKEND|OTHER}``, the ``nv_inference_*_summary_us``
summaries with ``--metrics-config=summary_latencies=true``) and the custom ``yolo_*`` families of docs/metrics.md.
"""

from __future__ import annotations

from typing import Any

from monitoring.thresholds import (
    ENSEMBLE,
    TRITON_JOB,
    Thresholds,
    network_models,
    number,
    queue_compute_ratio,
    series,
)
from yolo_client.contract import STAGES

Rule = dict[str, Any]

# the alert names, which the promtool tests name too
FPS_ALERT = "YoloServedFpsBelowTarget"
LATENCY_ALERT = "YoloLatencyP99OverBudget"
QUEUE_ALERT = "YoloQueueTimeAboveComputeTime"
FAILURE_ALERT = "YoloRequestFailureRatioHigh"
DOWN_ALERT = "YoloTritonDown"

# the parts of a request Triton times, each a nv_inference_<part>_duration_us counter
TRITON_PARTS = ("request", "queue", "compute_input", "compute_infer", "compute_output")
STAGE_QUANTILES = (0.5, 0.95, 0.99)


def _rec(name: str, expr: str) -> Rule:
    return {"record": name, "expr": expr}


# ----------------------------------------------------------------------------------------------- recording rules
def _throughput(w: str) -> list[Rule]:
    """Images, executions and requests per second, and the batch size they imply."""
    return [
        _rec(f"model:nv_inference_count:rate{w}", f"sum by (model) (rate(nv_inference_count[{w}]))"),
        # the served FPS: images through each model that runs the network (network_models: the fused cpu model, or
        # the detector step; no name tells a fused model from an ensemble, the histogram only it exports does)
        _rec(
            f"model:yolo_served_images:rate{w}",
            network_models(lambda matchers: series(f"model:nv_inference_count:rate{w}", matchers)),
        ),
        _rec(f"model:nv_inference_exec_count:rate{w}", f"sum by (model) (rate(nv_inference_exec_count[{w}]))"),
        _rec(
            f"model:nv_inference_batch_size:avg{w}",
            f"model:nv_inference_count:rate{w} / model:nv_inference_exec_count:rate{w}",
        ),
        _rec(
            f"model:nv_inference_request_success:rate{w}", f"sum by (model) (rate(nv_inference_request_success[{w}]))"
        ),
        _rec(
            f"model:nv_inference_request_failure:rate{w}", f"sum by (model) (rate(nv_inference_request_failure[{w}]))"
        ),
        _rec(
            f"model:nv_inference_request:rate{w}",
            f"model:nv_inference_request_success:rate{w} + model:nv_inference_request_failure:rate{w}",
        ),
    ]


def _time_per_request(w: str) -> list[Rule]:
    """Microseconds per successful request for each part Triton measures, the queue/compute ratio, the backlog."""
    return [
        *(
            _rec(
                f"model:nv_inference_{part}_us_per_request:avg{w}",
                f"sum by (model) (rate(nv_inference_{part}_duration_us[{w}])) / model:nv_inference_request_success:rate{w}",
            )
            for part in TRITON_PARTS
        ),
        _rec(
            f"model:nv_inference_queue_compute_ratio:avg{w}",
            f"model:nv_inference_queue_us_per_request:avg{w} / model:nv_inference_compute_infer_us_per_request:avg{w}",
        ),
        # the HPA's signal (the prometheus-adapter rule's query, per pod there): the models that run the network
        _rec(f"instance:yolo_queue_compute_ratio:avg{w}", queue_compute_ratio(w, "instance")),
        _rec(
            f"model:nv_inference_pending_request_count:avg{w}",
            f"sum by (model) (avg_over_time(nv_inference_pending_request_count[{w}]))",
        ),
    ]


def _latency_summaries() -> list[Rule]:
    """End-to-end latency quantiles: Triton's summaries cannot be merged across instances, so the worst instance."""
    return [
        _rec(
            "model_quantile:nv_inference_request_summary_us:max",
            "max by (model, quantile) (nv_inference_request_summary_us)",
        ),
        _rec(
            "model_quantile:nv_inference_queue_summary_us:max",
            "max by (model, quantile) (nv_inference_queue_summary_us)",
        ),
    ]


def _stage_histograms(w: str) -> list[Rule]:
    """Quantiles and means of the custom per-stage histograms of the Python-backend models (docs/metrics.md)."""
    rules = []
    for stage in STAGES:
        family = f"yolo_{stage}_duration_seconds"
        rules += [
            _rec(
                f"model:{family}:p{int(q * 100)}_{w}",
                f"histogram_quantile({q}, sum by (model, le) (rate({family}_bucket[{w}])))",
            )
            for q in STAGE_QUANTILES
        ]
        rules.append(
            _rec(
                f"model:{family}:mean{w}",
                f"sum by (model) (rate({family}_sum[{w}])) / sum by (model) (rate({family}_count[{w}]))",
            )
        )
    return rules


def _failure_ratios(w: str, aw: str) -> list[Rule]:
    """Failures as a share of the model's requests: by reason for the dashboard, per model over ``aw`` to alert on.

    Triton's failures carry its reasons; the models' own rejections (an undecodable image...) theirs.
    """
    requests_aw = (
        f"(sum by (model) (rate(nv_inference_request_success[{aw}]))"
        f" + sum by (model) (rate(nv_inference_request_failure[{aw}])))"
    )
    return [
        _rec(
            f"model_reason:nv_inference_request_failure:ratio_rate{w}",
            f"sum by (model, reason) (rate(nv_inference_request_failure[{w}]))"
            f" / on (model) group_left () model:nv_inference_request:rate{w}",
        ),
        _rec(
            f"model_reason:yolo_rejected_inputs:ratio_rate{w}",
            f"sum by (model, reason) (rate(yolo_rejected_inputs_total[{w}]))"
            f" / on (model) group_left () model:nv_inference_request:rate{w}",
        ),
        _rec(
            f"model:nv_inference_request_failure:ratio_rate{aw}",
            f"sum by (model) (rate(nv_inference_request_failure[{aw}])) / {requests_aw}",
        ),
        _rec(
            f"model:yolo_rejected_inputs:ratio_rate{aw}",
            f"sum by (model) (rate(yolo_rejected_inputs_total[{aw}])) / {requests_aw}",
        ),
    ]


def _slo_constants(t: Thresholds) -> list[Rule]:
    """The SLOs as constant series, so dashboards draw target lines without literals of their own."""
    return [
        _rec("yolo:slo_target_fps", f"vector({number(t.target_fps)})"),
        _rec("yolo:slo_latency_budget_us", f"vector({number(t.latency_budget_us)})"),
        _rec("yolo:slo_failure_ratio_max", f"vector({number(t.failure_ratio_max)})"),
        _rec("yolo:slo_queue_compute_ratio_max", f"vector({number(t.queue_compute_ratio_max)})"),
    ]


def recording_rules(t: Thresholds) -> dict[str, Any]:
    """The recording rules: rates per model summed over Triton instances, and the SLO constants."""
    w = t.rate_window
    rules = [
        *_throughput(w),
        *_time_per_request(w),
        *_latency_summaries(),
        *_stage_histograms(w),
        *_failure_ratios(w, t.alert_window),
        _rec("yolo:triton_instances:up", f'sum(up{{job="{TRITON_JOB}"}})'),
        *_slo_constants(t),
    ]
    return {"groups": [{"name": "yolo-triton.recording", "rules": rules}]}


# ------------------------------------------------------------------------------------------------------ alerts
def _alert(name: str, expr: str, *, for_: str, severity: str, summary: str, description: str = "") -> Rule:
    """An alerting rule that fires once ``expr`` has held for ``for_``; ``summary`` and ``description`` are Go
    templates, expanded by Prometheus when it fires."""
    annotations = {"summary": summary, **({"description": description} if description else {})}
    return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity}, "annotations": annotations}


def _slo_alert(t: Thresholds, name: str, expr: str, severity: str, summary: str, description: str) -> Rule:
    """An alert on an SLO: it waits the thresholds' ``alert_for``, so one slow scrape does not page anyone."""
    return _alert(name, expr, for_=t.alert_for, severity=severity, summary=summary, description=description)


def _fps_alert(t: Thresholds) -> Rule:
    """Too few images per second, but only while requests wait: an idle server is not slow."""
    w = t.rate_window
    return _slo_alert(
        t,
        FPS_ALERT,
        f"model:yolo_served_images:rate{w} < {number(t.target_fps)}"
        f" and on (model) model:nv_inference_pending_request_count:avg{w} >= {number(t.demand_min_pending)}",
        "warning",
        f'{{{{ $labels.model }}}} serves {{{{ $value | printf "%.1f" }}}} FPS (target {number(t.target_fps)}) '
        "with requests waiting",
        "Requests are pending, yet the detector serves fewer images per second than the target: add "
        "instances or replicas, or a faster target (tensorrt).",
    )


def _latency_alert(t: Thresholds) -> Rule:
    """The entry points' p99 over the frame budget (the stages' latencies add up to theirs)."""
    return _slo_alert(
        t,
        LATENCY_ALERT,
        f'model_quantile:nv_inference_request_summary_us:max{{{ENSEMBLE},quantile="0.99"}}'
        f" > {number(t.latency_budget_us)}",
        "warning",
        f'{{{{ $labels.model }}}} p99 latency {{{{ $value | printf "%.0f" }}}} us is over the '
        f"{t.latency_budget_text} frame budget",
        "Server-side end-to-end p99 (Triton's request summary of the entry point, the ensemble or the "
        "fused cpu model).",
    )


def _queue_alert(t: Thresholds) -> Rule:
    """Requests wait longer than they compute: the saturation signal the HPA scales on too."""
    return _slo_alert(
        t,
        QUEUE_ALERT,
        f"model:nv_inference_queue_compute_ratio:avg{t.rate_window} > {number(t.queue_compute_ratio_max)}"
        f" and on (model) model:nv_inference_request_success:rate{t.rate_window} > 0",
        "warning",
        '{{ $labels.model }} requests wait {{ $value | printf "%.2f" }}x longer in the queue than they compute',
        "The model is saturated: scale out or add instances (the HPA scales on this ratio over the models that "
        "run the network, per pod: instance:yolo_queue_compute_ratio).",
    )


def _failure_alert(t: Thresholds) -> Rule:
    """Too many failed requests, Triton's or the models' own rejections, over the longer alert window."""
    aw, limit = t.alert_window, number(t.failure_ratio_max)
    return _slo_alert(
        t,
        FAILURE_ALERT,
        f"model:nv_inference_request_failure:ratio_rate{aw} > {limit}"
        f" or model:yolo_rejected_inputs:ratio_rate{aw} > {limit}",
        "critical",
        "{{ $labels.model }} fails {{ $value | humanizePercentage }} of its requests "
        f"(limit {number(t.failure_ratio_max * 100)}%)",
        "Triton failures (reason label) or inputs rejected by the models (yolo_rejected_inputs_total, "
        "reason label); see the dashboard's failures panel.",
    )


def _down_alert() -> Rule:
    """A Triton target that stopped answering its metrics scrape: every other alert goes blind with it."""
    return _alert(
        DOWN_ALERT,
        f'up{{job="{TRITON_JOB}"}} == 0',
        for_="1m",
        severity="critical",
        summary="Triton metrics endpoint {{ $labels.instance }} does not answer",
    )


def alert_rules(t: Thresholds) -> dict[str, Any]:
    """One alert per SLO (and one for a Triton target that stopped answering)."""
    alerts = [_fps_alert(t), _latency_alert(t), _queue_alert(t), _failure_alert(t), _down_alert()]
    return {"groups": [{"name": "yolo-triton.alerts", "rules": alerts}]}
