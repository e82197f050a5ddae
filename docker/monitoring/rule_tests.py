"""The promtool unit tests of the rules (``docker/prometheus/tests/yolo_rules_test.yml``).

Each alert is tested once firing and once silent, with synthetic scrapes placed on either side of its threshold, so
a rule whose threshold drifts from :class:`Thresholds` fails ``promtool test rules``. The inputs are computed from
the same thresholds as the rules; the expected annotations are the rules' own templates, expanded here as
Prometheus would expand them, so a reworded alert needs no second edit. The selector of the models that run the
network is tested on both layouts' series: the served FPS, the HPA's ratio per instance, and the prometheus-adapter
rule's query filled in as the adapter fills it for a pod.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from monitoring.adapter import metrics_query
from monitoring.rules import DOWN_ALERT, FAILURE_ALERT, FPS_ALERT, LATENCY_ALERT, QUEUE_ALERT, alert_rules
from monitoring.thresholds import NETWORK_MARKER, TRITON_JOB, Thresholds, number
from yolo_client.contract import ENSEMBLE, FUSED, IMAGES, METRICS_PORT, TENSOR, model_name, network_model

Series = dict[str, str]
Case = dict[str, Any]

STEP_S, STEPS = 15, 60  # 15 s scrapes for 15 minutes
EVAL_AT = "10m"  # late enough for every rate window and every alert's `for`
BASE = "yolov4_tiny"  # the detector the synthetic series come from
INSTANCE = f"triton-0:{METRICS_PORT}"
DETECTOR_MODEL = model_name(BASE, "detector")
ENTRY_MODEL = model_name(BASE, IMAGES)
PREPROCESS_MODEL = model_name(BASE, "preprocess")
NAMESPACE = "default"  # the pods of the prometheus-adapter cases


def _labels(model: str, instance: str = INSTANCE, pod: str = "") -> str:
    """The labels Prometheus puts on a series scraped from one Triton instance (in k8s, with the pod's labels)."""
    in_pod = f', namespace="{NAMESPACE}", pod="{pod}"' if pod else ""
    return f'model="{model}", version="1", instance="{instance}", job="{TRITON_JOB}"{in_pod}'


DET, ENS, PRE = _labels(DETECTOR_MODEL), _labels(ENTRY_MODEL), _labels(PREPROCESS_MODEL)


def _counter(name: str, per_second: float) -> Series:
    """A promtool input series for a counter growing at ``per_second``."""
    return {"series": name, "values": f"0+{number(per_second * STEP_S)}x{STEPS}"}


def _gauge(name: str, value: float) -> Series:
    """A promtool input series for a gauge that holds ``value``."""
    return {"series": name, "values": f"{number(value)}x{STEPS}"}


# ------------------------------------------------------------------------------------------------- input series
def _fps_series(fps: float, pending: float, layout: str = ENSEMBLE, entry_fps: float | None = None) -> list[Series]:
    """Images/s and pending requests at the model that runs the network in ``layout``; in the ensemble layout the
    image entry point counts its own requests (``entry_fps``, by default the same images) and pending ones too."""
    network = _labels(network_model(BASE, layout))
    series = [
        _counter(f"nv_inference_count{{{network}}}", fps),
        _gauge(f"nv_inference_pending_request_count{{{network}}}", pending),
    ]
    if layout == FUSED:  # the fused model exports the detector histogram
        return [*series, _counter(f"{NETWORK_MARKER}{{{network}}}", fps)]
    return [
        *series,
        _counter(f"nv_inference_count{{{ENS}}}", fps if entry_fps is None else entry_fps),
        _gauge(f"nv_inference_pending_request_count{{{ENS}}}", pending),
    ]


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


# per request at each kind of model: (queue us, compute us); an ensemble's compute is its whole pipeline, its queue
# next to nothing, so counting it beside its steps would show in every ratio below
ENSEMBLE_TIMES, FUSED_TIMES = (20.0, 9000.0), (2000.0, 1000.0)
STEP_TIMES = {"preprocess": (5000.0, 2000.0), "detector": (4000.0, 1000.0), "postprocess": (500.0, 500.0)}


@dataclasses.dataclass(frozen=True)
class _Pod:
    """One Triton serving ``base`` in ``layout`` (cpu: the Python detector exports the detector histogram; not on
    tensorrt) to ``images`` and ``tensors`` requests/s at its two entry points; ``name``: its pod, if in k8s."""

    layout: str
    images: float
    tensors: float
    base: str = BASE
    cpu: bool = True
    name: str = ""

    @property
    def instance(self) -> str:
        return f"{self.name or 'triton-0'}:{METRICS_PORT}"

    def models(self) -> dict[str, tuple[float, tuple[float, float], bool]]:
        """Each model -> (requests/s, its times per request, whether it exports the detector histogram)."""

        def name(role: str) -> str:
            return model_name(self.base, role)

        if self.layout == FUSED:
            steps = {name(stage): (self.tensors, STEP_TIMES[stage], False) for stage in ("detector", "postprocess")}
            images = (self.images, FUSED_TIMES, True)
        else:
            both = self.images + self.tensors
            steps = {
                name("preprocess"): (self.images, STEP_TIMES["preprocess"], False),
                name("detector"): (both, STEP_TIMES["detector"], False),
                name("postprocess"): (both, STEP_TIMES["postprocess"], False),
            }
            images = (self.images, ENSEMBLE_TIMES, False)
        detector = name("detector")
        steps[detector] = (*steps[detector][:2], self.cpu)
        return {name(IMAGES): images, name(TENSOR): (self.tensors, ENSEMBLE_TIMES, False), **steps}

    def series(self) -> list[Series]:
        series = []
        for model, (rps, (queue_us, compute_us), marker) in self.models().items():
            labels = _labels(model, self.instance, self.name)
            series += [
                _counter(f"nv_inference_count{{{labels}}}", rps),
                _counter(f"nv_inference_queue_duration_us{{{labels}}}", rps * queue_us),
                _counter(f"nv_inference_compute_infer_duration_us{{{labels}}}", rps * compute_us),
            ]
            if marker:
                series.append(_counter(f"{NETWORK_MARKER}{{{labels}}}", rps))
        return series

    def network(self) -> dict[str, float]:
        """What runs the network, by the contract: the images' model in this layout, NAME_detector the tensors'."""
        served = {network_model(self.base, self.layout): self.images}
        detector = model_name(self.base, "detector")
        served[detector] = served.get(detector, 0.0) + self.tensors
        return served

    def ratio(self) -> float:
        """Queue time per unit of compute time over what runs the network."""
        models = self.models()
        queue = sum(rps * models[model][1][0] for model, rps in self.network().items())
        return queue / sum(rps * models[model][1][1] for model, rps in self.network().items())


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
            _fps_series(half, busy, FUSED),
            FPS_ALERT,
            expect.fired(FPS_ALERT, {"severity": "warning", "model": ENTRY_MODEL}, half),
        ),
        _case(
            "an ensemble's own count is not the served FPS (its detector's is)",
            _fps_series(t.target_fps * 1.5, busy, entry_fps=half),
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


# ---------------------------------------------------------------------------- the models that run the network
def _network_case(name: str, t: Thresholds, pods: list[_Pod], by_model: bool = True) -> Case:
    """The served FPS of each model that runs the network (``by_model``: where a model name means one layout), the
    HPA's ratio per instance, and the prometheus-adapter query filled in for each pod and for all of them at once
    (``pod=~"a|b"``), as the adapter fills it."""
    w = t.rate_window
    served: dict[str, float] = {}
    for pod in pods:
        for model, rps in pod.network().items():
            served[model] = served.get(model, 0.0) + rps
    tests = [
        _expr(f"instance:yolo_queue_compute_ratio:avg{w}",
              [(f'instance:yolo_queue_compute_ratio:avg{w}{{instance="{p.instance}"}}', p.ratio()) for p in pods]),
    ]  # fmt: skip
    if by_model:
        samples = [(f'model:yolo_served_images:rate{w}{{model="{m}"}}', v) for m, v in served.items()]
        tests.append(_expr(f"model:yolo_served_images:rate{w}", samples))
    in_k8s = [pod for pod in pods if pod.name]
    for group in [[pod] for pod in in_k8s] + ([in_k8s] if len(in_k8s) > 1 else []):
        names = "|".join(pod.name for pod in group)
        pod_matcher = f'pod="{names}"' if len(group) == 1 else f'pod=~"{names}"'
        query = metrics_query(t, f'namespace="{NAMESPACE}",{pod_matcher}', "pod")
        tests.append(_expr(query, [(f'{{pod="{pod.name}"}}', pod.ratio()) for pod in group]))
    series = [item for pod in pods for item in pod.series()]
    return {"name": name, "interval": f"{STEP_S}s", "input_series": series, "promql_expr_test": tests}


def _expr(expr: str, samples: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "expr": expr,
        "eval_time": EVAL_AT,
        "exp_samples": [{"labels": labels, "value": value} for labels, value in samples],
    }


def _network_cases(t: Thresholds) -> list[Case]:
    """Each layout's images counted once, at the model that runs the network; the tensor entry point's too."""
    return [
        _network_case(
            "fused layout: the fused model serves the images, NAME_detector the tensor entry point's, on two pods",
            t,
            [_Pod(FUSED, images=30, tensors=10, name="yolo-0"), _Pod(FUSED, images=20, tensors=0, name="yolo-1")],
        ),
        _network_case(
            "ensemble layout (cpu --no-fused): NAME_detector, and not the ensemble NAME",
            t,
            [_Pod(ENSEMBLE, images=30, tensors=10, name="yolo-0")],
        ),
        _network_case(
            "ensemble layout on tensorrt, where no model exports the detector histogram",
            t,
            [_Pod(ENSEMBLE, images=30, tensors=10, cpu=False, name="yolo-0")],
        ),
        _network_case(
            "a detector served as cars_detector: its ensemble is an entry point, cars_detector_detector the step",
            t,
            [_Pod(ENSEMBLE, images=30, tensors=10, base="cars_detector", cpu=False, name="yolo-0")],
        ),
        _network_case(
            "the fused model served as cars_detector runs the network",
            t,
            [_Pod(FUSED, images=30, tensors=10, base="cars_detector", name="yolo-0")],
        ),
        _network_case(
            "a fused (cpu) and an ensemble (tensorrt) deployment of one name: each pod's own models",
            t,
            [_Pod(FUSED, images=30, tensors=10, name="yolo-0"), _Pod(ENSEMBLE, 60, 0, cpu=False, name="yolo-gpu-0")],
            by_model=False,  # per model, the rules sum both deployments' NAME: one name, two layouts
        ),
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
        *_network_cases(t),
    ]
    return {
        "rule_files": ["../rules/yolo_recording.rules.yml", "../rules/yolo_alerts.rules.yml"],
        "evaluation_interval": f"{STEP_S}s",
        "tests": tests,
    }
