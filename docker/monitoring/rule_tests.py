"""The promtool unit tests of the rules (``docker/prometheus/tests/yolo_rules_test.yml``).

Each alert is tested once firing and once silent, with synthetic scrapes placed on either side of its threshold, so
a rule whose threshold drifts from :class:`Thresholds` fails ``promtool test rules``. The inputs are computed from
the same thresholds as the rules; the expected annotations are the rules' own templates, expanded here as
Prometheus would expand them, so a reworded alert needs no second edit.
"""

from __future__ import annotations

import re
from typing import Any

from monitoring.rules import DOWN_ALERT, FAILURE_ALERT, FPS_ALERT, LATENCY_ALERT, QUEUE_ALERT, alert_rules
from monitoring.thresholds import TRITON_JOB, Thresholds, number
from yolo_client.contract import IMAGES, METRICS_PORT, model_name

Series = dict[str, str]
Case = dict[str, Any]

STEP_S, STEPS = 15, 60  # 15 s scrapes for 15 minutes
EVAL_AT = "10m"  # late enough for every rate window and every alert's `for`
BASE = "yolov4_tiny"  # the detector the synthetic series come from
INSTANCE = f"triton-0:{METRICS_PORT}"
DETECTOR_MODEL = model_name(BASE, "detector")
ENTRY_MODEL = model_name(BASE, IMAGES)
PREPROCESS_MODEL = model_name(BASE, "preprocess")


def _labels(model: str) -> str:
    """The labels Prometheus puts on a series scraped from one Triton instance."""
    return f'model="{model}", version="1", instance="{INSTANCE}", job="{TRITON_JOB}"'


DET, ENS, PRE = _labels(DETECTOR_MODEL), _labels(ENTRY_MODEL), _labels(PREPROCESS_MODEL)


def _counter(name: str, per_second: float) -> Series:
    """A promtool input series for a counter growing at ``per_second``."""
    return {"series": name, "values": f"0+{number(per_second * STEP_S)}x{STEPS}"}


def _gauge(name: str, value: float) -> Series:
    """A promtool input series for a gauge that holds ``value``."""
    return {"series": name, "values": f"{number(value)}x{STEPS}"}


# ------------------------------------------------------------------------------------------------- input series
def _fps_series(fps: float, pending: float, model: str = DET, fused: bool = False) -> list[Series]:
    """``model``'s images/s and pending requests; ``fused``: it exports the detector histogram too."""
    series = [
        _counter(f"nv_inference_count{{{model}}}", fps),
        _gauge(f"nv_inference_pending_request_count{{{model}}}", pending),
    ]
    if fused:
        series.append(_counter(f"yolo_detector_duration_seconds_count{{{model}}}", fps))
    return series


def _latency_series(p99_us: float) -> list[Series]:
    """The entry point's p99 request latency, as Triton's summary reports it."""
    return [_gauge(f'nv_inference_request_summary_us{{{ENS}, quantile="0.99"}}', p99_us)]


def _queue_series(queue_us: float, compute_us: float, rps: float = 50) -> list[Series]:
    """The detector's requests, each waiting ``queue_us`` and computing ``compute_us``."""
    return [
        _counter(f"nv_inference_request_success{{{DET}}}", rps),
        _counter(f"nv_inference_queue_duration_us{{{DET}}}", rps * queue_us),
        _counter(f"nv_inference_compute_infer_duration_us{{{DET}}}", rps * compute_us),
    ]


def _failure_series(ratio: float, rejected_ratio: float = 0.0, rps: float = 100) -> list[Series]:
    """The entry point failing ``ratio`` of its requests, the preprocess rejecting ``rejected_ratio`` of its inputs."""
    return [
        _counter(f"nv_inference_request_success{{{ENS}}}", rps * (1 - ratio)),
        _counter(f'nv_inference_request_failure{{{ENS}, reason="OTHER"}}', rps * ratio),
        _gauge(f'nv_inference_request_failure{{{ENS}, reason="REJECTED"}}', 0),
        # the Python backend counts a request it answered with an error as a success
        _counter(f"nv_inference_request_success{{{PRE}}}", rps),
        _gauge(f'nv_inference_request_failure{{{PRE}, reason="OTHER"}}', 0),
        _counter(
            f'yolo_rejected_inputs_total{{model="{PREPROCESS_MODEL}", reason="undecodable", instance="{INSTANCE}", '
            f'job="{TRITON_JOB}"}}',
            rps * rejected_ratio,
        ),
    ]


def _up_series(up: int) -> list[Series]:
    """The scrape of one Triton target, answering (1) or not (0)."""
    return [_gauge(f'up{{job="{TRITON_JOB}", instance="{INSTANCE}"}}', up)]


# ---------------------------------------------------------------------------------------------- expected alerts
def expand(template: str, labels: dict[str, str], value: float) -> str:
    """Expand the few Go-template forms the alert annotations use, as Prometheus would."""

    def one(match: re.Match[str]) -> str:
        body = match.group(1).strip()
        if body.startswith("$labels."):
            return labels[body.removeprefix("$labels.")]
        fmt = re.fullmatch(r'\$value \| printf "(%[.0-9]*f)"', body)
        if fmt:
            return fmt.group(1) % value
        if body == "$value | humanizePercentage":
            return f"{value * 100:.4g}%"
        raise ValueError(f"unsupported template {{{{ {body} }}}}")

    return re.sub(r"\{\{(.*?)\}\}", one, template)


class _Expect:
    """What the alerts of ``t`` should report when they fire: their labels and expanded annotations."""

    def __init__(self, t: Thresholds) -> None:
        self.annotations = {rule["alert"]: rule["annotations"] for rule in alert_rules(t)["groups"][0]["rules"]}
        # one object for every detector warning: the YAML dump writes it once and refers back to it
        self.detector_warning = {"severity": "warning", "model": DETECTOR_MODEL}

    def fired(self, alert: str, labels: dict[str, str], value: float) -> list[dict[str, Any]]:
        expanded = {key: expand(text, labels, value) for key, text in self.annotations[alert].items()}
        return [{"exp_labels": labels, "exp_annotations": expanded}]


def _case(name: str, series: list[Series], alert: str, fires: list[dict[str, Any]]) -> Case:
    """One promtool test: ``alert`` evaluated over ``series``, expected to fire as ``fires`` ([] for silent)."""
    return {
        "name": name,
        "interval": f"{STEP_S}s",
        "input_series": series,
        "alert_rule_test": [{"eval_time": EVAL_AT, "alertname": alert, "exp_alerts": fires}],
    }


# ------------------------------------------------------------------------------------------- cases, per alert
def _fps_cases(t: Thresholds, expect: _Expect) -> list[Case]:
    """Low FPS fires only under demand, and only on what runs the network (a detector, or a fused model)."""
    half, busy = t.target_fps * 0.5, t.demand_min_pending + 2
    return [
        _case(
            "FPS at half the target with requests pending fires",
            _fps_series(half, busy),
            FPS_ALERT,
            expect.fired(FPS_ALERT, expect.detector_warning, half),
        ),
        _case(
            "FPS at half the target with nothing pending is low demand, not an alert",
            _fps_series(half, 0),
            FPS_ALERT,
            [],
        ),
        _case("FPS above the target under demand is silent", _fps_series(t.target_fps * 1.5, busy), FPS_ALERT, []),
        _case(
            "a stalled detector with requests pending fires",
            _fps_series(0, busy),
            FPS_ALERT,
            expect.fired(FPS_ALERT, expect.detector_warning, 0),
        ),
        _case(
            "the fused cpu model at half the target with requests pending fires",
            _fps_series(half, busy, ENS, fused=True),
            FPS_ALERT,
            expect.fired(FPS_ALERT, {"severity": "warning", "model": ENTRY_MODEL}, half),
        ),
        _case(
            "an ensemble's own count is not the served FPS (its detector's is)",
            _fps_series(half, busy, ENS) + _fps_series(t.target_fps * 1.5, busy),
            FPS_ALERT,
            [],
        ),
    ]


def _latency_cases(t: Thresholds, expect: _Expect) -> list[Case]:
    """p99 30 % over and 30 % under the budget, in whole microseconds as Triton reports them (and no rounding tie
    for the expected summary to depend on)."""
    over, within = round(t.latency_budget_us * 1.3), round(t.latency_budget_us * 0.7)
    return [
        _case(
            "p99 over the budget fires",
            _latency_series(over),
            LATENCY_ALERT,
            expect.fired(LATENCY_ALERT, {"severity": "warning", "model": ENTRY_MODEL, "quantile": "0.99"}, over),
        ),
        _case("p99 within the budget is silent", _latency_series(within), LATENCY_ALERT, []),
    ]


def _queue_cases(t: Thresholds, expect: _Expect) -> list[Case]:
    """Queue time at twice, and at half, the allowed multiple of a 1 ms compute time."""
    qc = t.queue_compute_ratio_max
    return [
        _case(
            "queue time twice the allowed multiple of compute time fires",
            _queue_series(qc * 2000, 1000),
            QUEUE_ALERT,
            expect.fired(QUEUE_ALERT, expect.detector_warning, qc * 2),
        ),
        _case("queue time under compute time is silent", _queue_series(qc * 500, 1000), QUEUE_ALERT, []),
    ]


def _failure_cases(t: Thresholds, expect: _Expect) -> list[Case]:
    """Triton's failures and the models' rejections each fire on their own at five times the limit."""
    fr = t.failure_ratio_max
    return [
        _case(
            "Triton failures over the limit fire",
            _failure_series(fr * 5),
            FAILURE_ALERT,
            expect.fired(FAILURE_ALERT, {"severity": "critical", "model": ENTRY_MODEL}, fr * 5),
        ),
        _case(
            "rejected inputs over the limit fire",
            _failure_series(0, rejected_ratio=fr * 5),
            FAILURE_ALERT,
            expect.fired(FAILURE_ALERT, {"severity": "critical", "model": PREPROCESS_MODEL}, fr * 5),
        ),
        _case(
            "failures under the limit are silent",
            _failure_series(fr * 0.2, rejected_ratio=fr * 0.2),
            FAILURE_ALERT,
            [],
        ),
    ]


def _down_cases(expect: _Expect) -> list[Case]:
    """A Triton target that stops answering, and one that answers."""
    labels = {"severity": "critical", "job": TRITON_JOB, "instance": INSTANCE}
    return [
        _case(
            "a Triton target that stopped answering fires",
            _up_series(0),
            DOWN_ALERT,
            expect.fired(DOWN_ALERT, labels, 0),
        ),
        _case("a Triton target that answers is silent", _up_series(1), DOWN_ALERT, []),
    ]


def rule_tests(t: Thresholds) -> dict[str, Any]:
    """promtool unit tests: each alert once firing and once silent, with inputs placed around its threshold."""
    expect = _Expect(t)
    tests = [
        *_fps_cases(t, expect),
        *_latency_cases(t, expect),
        *_queue_cases(t, expect),
        *_failure_cases(t, expect),
        *_down_cases(expect),
    ]
    return {
        "rule_files": ["../rules/yolo_recording.rules.yml", "../rules/yolo_alerts.rules.yml"],
        "evaluation_interval": f"{STEP_S}s",
        "tests": tests,
    }
