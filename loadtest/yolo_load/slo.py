"""The end-of-run SLO check: failure ratio, p95 latency and served FPS against thresholds.

Example:
    >>> result = RunResult(requests=1300, failures=0, duration_s=20.0, p50_ms=9, p95_ms=14, p99_ms=15)
    >>> check(result, Slo(max_failure_ratio=0.0, max_p95_ms=15.4, min_fps=65)).passed
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Slo:
    """Thresholds; None means "not checked". The failure ratio is always checked (default: no failure at all)."""

    max_failure_ratio: float = 0.0
    max_p95_ms: float | None = None
    min_fps: float | None = None


@dataclass(frozen=True)
class RunResult:
    """What a run measured, over every request (one request = one image)."""

    requests: int
    failures: int
    duration_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    @property
    def fps(self) -> float:
        """Images answered successfully per second."""
        return (self.requests - self.failures) / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True)
class Verdict:
    passed: bool
    violations: tuple[str, ...] = field(default_factory=tuple)

    def exit_code(self) -> int:
        return 0 if self.passed else 1


def check(result: RunResult, slo: Slo) -> Verdict:
    """Every threshold ``result`` misses, in words."""
    violations = []
    if result.requests == 0:
        violations.append("no request completed")
    if result.failure_ratio > slo.max_failure_ratio:
        violations.append(
            f"failure ratio {result.failure_ratio:.4f} > {slo.max_failure_ratio:g} "
            f"({result.failures} of {result.requests})"
        )
    if slo.max_p95_ms is not None and not result.p95_ms <= slo.max_p95_ms:
        violations.append(f"p95 latency {result.p95_ms:.1f} ms > {slo.max_p95_ms:g} ms")
    if slo.min_fps is not None and not result.fps >= slo.min_fps:
        violations.append(f"served {result.fps:.1f} FPS < {slo.min_fps:g} FPS")
    return Verdict(not violations, tuple(violations))


def report(result: RunResult, slo: Slo, verdict: Verdict) -> dict[str, Any]:
    """JSON-ready summary (written by ``--slo-report``)."""
    return {
        "passed": verdict.passed,
        "violations": list(verdict.violations),
        "measured": {**asdict(result), "fps": result.fps, "failure_ratio": result.failure_ratio},
        "slo": asdict(slo),
    }
