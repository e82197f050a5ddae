"""The service-level objectives and the model selectors that every generated monitoring file shares.

They live apart from the generators so that an alert, the promtool test placed around its threshold and the
dashboard's target line all read the same number, and the same regular expression for "the detector" or "an entry
point". The numbers and the model names come from the wire contract (``yolo_client.contract``), where the server,
the client, ``bench/`` and ``loadtest/`` read them too: nothing here is typed a second time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from yolo_client.contract import STAGES, TARGET_FPS, role_pattern

# Which Triton models play which role (docs/triton-interface.md; the contract's role patterns): NAME and NAME_tensor
# are the entry points (ensembles, or on the cpu target NAME the fused model, which runs the network itself),
# NAME_<stage> the steps. The entry points are what matches no stage, since the image entry point has no suffix.
DETECTOR = f'model=~"{role_pattern(["detector"])}"'
STAGE_MODELS = f'model=~"{role_pattern(STAGES)}"'
ENSEMBLE = f'model!~"{role_pattern(STAGES)}"'
TRITON_JOB = "triton"  # the scrape job of docker/prometheus/prometheus.yml


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
