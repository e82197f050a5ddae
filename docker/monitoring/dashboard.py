"""The Grafana dashboard (``docker/grafana/dashboards/yolo-triton.json``).

Its panels read the recording rules' series rather than raw metrics, so the dashboard and the alerts cannot compute
the same figure two ways; its target lines are the ``yolo:slo_*`` constant series, and its colour thresholds the
same :class:`Thresholds` numbers, so a changed SLO moves line, colours and alert together.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from monitoring.thresholds import ENSEMBLE, STAGE_MODELS, Thresholds, number
from yolo_client.contract import STAGES

# the provisioned data source every panel names (docker/grafana/provisioning/datasources/prometheus.yml)
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

Panel = dict[str, Any]
Grid = tuple[int, int, int, int]  # x, y, width, height, in Grafana's 24-column grid
Panels = dict[tuple[str, Grid], Panel]  # (title, grid) -> panel, in the order of their ids
Target = tuple[str, str]  # (PromQL, legend)


@dataclasses.dataclass(frozen=True)
class SloLine:
    """A panel's SLO: the ``series`` drawn as a dashed red line named ``name``, and the threshold colours
    (red on the wrong side of ``value``; ``higher_is_better`` for throughput)."""

    series: str
    name: str
    value: float
    higher_is_better: bool = False

    def thresholds(self) -> list[tuple[str, float | None]]:
        """Grafana's colour steps: the base colour (value None), then the colour from ``value`` up."""
        if self.higher_is_better:
            return [("red", None), ("green", self.value)]
        return [("green", None), ("red", self.value)]


def _target_line(name: str) -> dict[str, Any]:
    """Draw a series (an SLO line) dashed and red."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
        ],
    }


def _panel(
    targets: list[Target],
    *,
    unit: str = "short",
    kind: str = "timeseries",
    description: str = "",
    thresholds: list[tuple[str, float | None]] | None = None,
    slo: SloLine | None = None,
) -> Panel:
    """A panel of ``targets`` on the provisioned data source; ``slo`` adds its line and sets the colours."""
    if slo is not None:
        targets, thresholds = [*targets, (slo.series, slo.name)], slo.thresholds()
    steps = [{"color": color, "value": value} for color, value in (thresholds or [("green", None)])]
    return {
        "type": kind,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [] if slo is None else [_target_line(slo.name)],
        },
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


# ----------------------------------------------------------------------------------------------------- rows
def _slo_row(t: Thresholds) -> Panels:
    """The two figures the service is judged on: served FPS and end-to-end latency, each against its SLO."""
    w = t.rate_window
    served = [
        (f"model:yolo_served_images:rate{w}", "{{model}}"),
        (f"model:nv_inference_count:rate{w}{{{ENSEMBLE}}}", "{{model}} (requests)"),
    ]
    latency = [
        (f"model_quantile:nv_inference_request_summary_us:max{{{ENSEMBLE}}} / 1000", "{{model}} p{{quantile}}"),
        (f"model:nv_inference_request_us_per_request:avg{w}{{{ENSEMBLE}}} / 1000", "{{model}} mean"),
    ]
    return {
        ("Served FPS (detector images/s)", (0, 0, 12, 8)): _panel(
            served,
            slo=SloLine("yolo:slo_target_fps", "target", t.target_fps, higher_is_better=True),
            description=f"Images per second through the network (the detector, or the fused cpu model); the target "
            f"is {number(t.target_fps)} FPS.",
        ),
        ("End-to-end latency quantiles (server side, entry points)", (12, 0, 12, 8)): _panel(
            latency,
            unit="ms",
            # the colours change where the line is drawn: the recorded budget, in whole microseconds
            slo=SloLine("yolo:slo_latency_budget_us / 1000", "budget", t.latency_budget_us / 1000),
            description=f"Triton's request summaries (worst instance); the frame budget is {t.latency_budget_text}.",
        ),
    }


def _saturation_row(t: Thresholds) -> Panels:
    """Whether the models keep up: queue against compute time, and how well dynamic batching fills."""
    w = t.rate_window
    return {
        ("Queue vs compute time per request", (0, 8, 12, 8)): _panel(
            [
                (f"model:nv_inference_queue_us_per_request:avg{w} / 1000", "{{model}} queue"),
                (f"model:nv_inference_compute_infer_us_per_request:avg{w} / 1000", "{{model}} compute"),
            ],
            unit="ms",
            description="Queue time above compute time means the model is saturated.",
        ),
        ("Queue / compute ratio", (12, 8, 6, 8)): _panel(
            [
                (f"model:nv_inference_queue_compute_ratio:avg{w}", "{{model}}"),
                (f"instance:yolo_queue_compute_ratio:avg{w}", "{{instance}} network (the HPA's signal)"),
            ],
            slo=SloLine("yolo:slo_queue_compute_ratio_max", "limit", t.queue_compute_ratio_max),
            description="Per model, and per instance over the models that run the network (the fused cpu model "
            "or NAME_detector): the ratio the HPA scales on, per pod, through prometheus-adapter.",
        ),
        ("Average batch size", (18, 8, 6, 8)): _panel(
            [(f"model:nv_inference_batch_size:avg{w}", "{{model}}")],
            description="Inferences per execution (dynamic batching).",
        ),
    }


def _breakdown_row(t: Thresholds) -> Panels:
    """Where the time goes, stage by stage, and what fails."""
    w = t.rate_window
    stages = [(f"model:yolo_{stage}_duration_seconds:p95_{w} * 1000", f"{{{{model}}}} {stage} p95") for stage in STAGES]
    triton_compute = (
        f"model:nv_inference_compute_infer_us_per_request:avg{w}{{{STAGE_MODELS}}} / 1000",
        "{{model}} Triton compute mean",
    )
    return {
        ("Stage breakdown: pre / detector / post (p95, custom histograms)", (0, 16, 12, 8)): _panel(
            [*stages, triton_compute], unit="ms"
        ),
        ("Failures by reason (share of requests)", (12, 16, 12, 8)): _panel(
            [
                (f"model_reason:nv_inference_request_failure:ratio_rate{w} > 0", "{{model}} {{reason}}"),
                (f"model_reason:yolo_rejected_inputs:ratio_rate{w} > 0", "{{model}} rejected: {{reason}}"),
            ],
            description="Failed requests by Triton's reason, and inputs refused with INVALID_ARG by the models' reason.",
            unit="percentunit",
            slo=SloLine("yolo:slo_failure_ratio_max", "limit", t.failure_ratio_max),
        ),
    }


def _health_row(t: Thresholds) -> Panels:
    """The service's vital signs: instances up, backlog, and what the detector finds per image."""

    def per_image_p50(family: str) -> str:
        # a raw histogram at Grafana's own rate interval: no alert reads it, so no recording rule
        return f"histogram_quantile(0.5, sum by (model, le) (rate({family}_bucket[$__rate_interval])))"

    return {
        ("Triton instances up", (0, 24, 6, 6)): _panel(
            [("yolo:triton_instances:up", "instances")],
            kind="stat",
            thresholds=[("red", None), ("green", 1)],
        ),
        ("Pending requests", (6, 24, 9, 6)): _panel(
            [(f"model:nv_inference_pending_request_count:avg{t.rate_window}", "{{model}}")],
        ),
        ("Detections and candidates per image (p50)", (15, 24, 9, 6)): _panel(
            [
                (per_image_p50("yolo_detections_per_image"), "{{model}} detections"),
                (per_image_p50("yolo_candidates_per_image"), "{{model}} candidates"),
            ],
        ),
    }


def dashboard(t: Thresholds) -> dict[str, Any]:
    """The Grafana dashboard; its target lines come from the ``yolo:slo_*`` series of the recording rules."""
    panels = {**_slo_row(t), **_saturation_row(t), **_breakdown_row(t), **_health_row(t)}
    return {
        "uid": "yolo-triton",
        "title": "YOLO on Triton",
        "tags": ["yolo", "triton"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": [
            {"id": pid, "title": title, **panel, "gridPos": dict(zip("xywh", grid, strict=True))}
            for pid, ((title, grid), panel) in enumerate(panels.items(), 1)
        ],
    }
