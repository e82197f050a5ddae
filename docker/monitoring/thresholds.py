"""The service-level objectives and the model selectors that every generated monitoring file shares.

They live apart from the generators so that an alert, the promtool test placed around its threshold and the
dashboard's target line all read the same number, and the same selector for "the models that run the network"
(:func:`network_models`: the HPA's signal, the served FPS) or "an entry point". The numbers and the model names come from the wire contract (``yolo_client.contract``), where the server,
the client, ``bench/`` and ``loadtest/`` read them too: nothing here is typed a second time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from yolo_client.contract import IMAGES, NETWORK_ROLES, ROLES, STAGES, TARGET_FPS, model_name, role_pattern

# Which Triton models play which role (docs/triton-interface.md; the contract's role patterns): NAME and NAME_tensor
# are the entry points (ensembles, or on the cpu target NAME the fused model, which runs the network itself),
# NAME_<stage> the steps. The entry points are what matches no stage, since the image entry point has no suffix.
STAGE_MODELS = f'model=~"{role_pattern(STAGES)}"'
ENSEMBLE = f'model!~"{role_pattern(STAGES)}"'
# What only the models that run the network on the cpu target export, the fused model and the cpu detector step: it
# tells the fused NAME from an ensemble NAME, which no name does (docs/metrics.md).
NETWORK_MARKER = "yolo_detector_duration_seconds_count"
TRITON_JOB = "triton"  # the scrape job of docker/prometheus/prometheus.yml


def series(name: str, matchers: str = "") -> str:
    """``name{matchers}``, or ``name`` alone without matchers."""
    return f"{name}{{{matchers}}}" if matchers else name


def _and(*matchers: str) -> str:
    return ",".join(m for m in matchers if m)


def _network_role(select: Callable[[str], str], role: str, matchers: str, on: str) -> str:
    """The models of ``role`` among ``select``'s series (one role of the contract's ``NETWORK_ROLES``)."""
    if role == IMAGES:
        # the image entry point runs the network where it is the fused model: the one that exports the marker (the
        # cpu detector step exports it too, and runs the network as well: the `or` of network_models keeps it once)
        return f"({select(matchers)} and on ({on}) {series(NETWORK_MARKER, matchers)})"
    # NAME_<role> is that step only where NAME is served too (the contract's model_roles): an ensemble served as
    # cars_detector is an entry point, and cars_detector_detector its detector
    named = select(_and(matchers, f'model=~"{role_pattern([role])}"'))
    bases = f'label_replace({select(matchers)}, "model", "{model_name("${1}", role)}", "model", "(.+)")'
    return f"({named} and on ({on}) {bases})"


def network_models(select: Callable[[str], str], matchers: str = "", sep: str = " or ", on: str = "model") -> str:
    """``select`` (label matchers -> an instant vector with a ``model`` label) narrowed to the models that run the
    network: in each layout the one of the contract's ``NETWORK_ROLES``, each series once.

    The image entry point counts only where it runs the network itself (the fused model, told by the marker), so
    an ensemble ``NAME``, whose counters repeat its steps', is never counted beside ``NAME_detector``. In the fused
    layout ``NAME_detector`` is counted too: it runs
    the network for the tensor entry point alone, whose requests never pass through the fused model, so each image
    the network ran is counted once on both layouts, and the tensor traffic's wait for the network, on the same
    CPUs, is load the autoscaler should see.

    ``on``: the labels that tie a model's series to the marker and to its base's: ``model`` where ``select`` sums
    over instances, ``instance, model`` on raw series (a fused and an ensemble deployment of one name, scraped by
    one Prometheus, stay apart). ``sep`` joins the roles' selections (an ``or``, and a line break).
    """
    roles = sorted(set(NETWORK_ROLES.values()), key=ROLES.index)
    return sep.join(_network_role(select, role, matchers, on) for role in roles)


def queue_compute_ratio(window: str, by: str, matchers: str = "") -> str:
    """Queue time per unit of compute time of the models that run the network, summed ``by`` those labels: what
    the HPA scales on (``by`` the pod, in the prometheus-adapter rule) and the dashboard draws per instance."""

    def total(counter: str) -> str:
        def rate(selected_by: str) -> str:
            return f"rate({series(counter, selected_by)}[{window}])"

        selected = network_models(rate, matchers, sep="\n  or ", on="instance, model")  # raw series: per instance
        return f"sum by ({by}) (\n  {selected}\n)"

    return f"{total('nv_inference_queue_duration_us')}\n/\n{total('nv_inference_compute_infer_duration_us')}"


def frame_ms(fps: float) -> float:
    """How long one frame may take at ``fps`` frames per second, in milliseconds: the latency that keeps up."""
    return 1000.0 / fps


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The service-level objectives; every generated file takes its numbers from here.

    Attributes:
        target_fps: images per second the detector must serve while there is demand.
        latency_budget_ms: server-side p99 end-to-end budget per request; by default one frame at the contract's
            target rate (1000 / 65 = 15.4 ms), :meth:`for_target` derives it from another rate.
        failure_ratio_max: largest tolerated share of failed requests.
        queue_compute_ratio_max: queue time per request may not exceed this multiple of compute time.
        demand_min_pending: average pending requests that count as "there is demand" for the FPS alert.
        rate_window: window of the recording rules' rates.
        alert_window: window of the failure-ratio alert's rates.
        alert_for: how long a condition must hold before an alert fires.
    """

    target_fps: float = TARGET_FPS
    latency_budget_ms: float = frame_ms(TARGET_FPS)
    failure_ratio_max: float = 0.01
    queue_compute_ratio_max: float = 1.0
    demand_min_pending: float = 1.0
    rate_window: str = "1m"
    alert_window: str = "5m"
    alert_for: str = "2m"

    @classmethod
    def for_target(cls, target_fps: float = TARGET_FPS, **others: Any) -> Thresholds:
        """Thresholds for ``target_fps`` whose latency budget, unless ``others`` sets it, is one frame at that rate.

        The command line builds its thresholds here, so that ``--target-fps 30`` alone moves the budget with it.
        """
        others.setdefault("latency_budget_ms", frame_ms(target_fps))
        return cls(target_fps=target_fps, **others)

    @property
    def latency_budget_us(self) -> int:
        """The budget in whole microseconds: Triton's summaries are in microseconds, finer would be noise."""
        return round(self.latency_budget_ms * 1000.0)

    @property
    def latency_budget_text(self) -> str:
        """The budget as people read it in alerts and panel descriptions: ``15.4 ms``."""
        return f"{self.latency_budget_ms:.1f} ms"


def number(value: float) -> str:
    """A threshold as PromQL/YAML text: ``65`` rather than ``65.0``, so rules read like hand-written ones."""
    return f"{value:g}"
