"""``yolo-server tune``: the serving settings that give the most images/s on this machine, measured through the
real server with Triton's ``perf_analyzer``, searched by Optuna within a time budget.

Each trial writes a tuning file, serves the repository with it as ``serve`` would (the staged repository, on
free loopback ports; without the nginx front, which is the same for every setting, so the figures are Triton's
own, as other perf_analyzer users report them) and measures every concurrency asked. Trial 0 is the
defaults, the sizing rule's answer. The objective is the geometric mean of images/s over the concurrencies,
and a trial whose p99 exceeds ``p99_ms`` at any of them does not count. At the end the defaults and the best
trial are measured again, one after the other, and the best is kept only if it still wins, overall and within 2%
at every concurrency (:func:`beats`): the pick is never slower than the defaults in that side-by-side run. The
file holds the pick's every setting, the defaults' where they won, so ``serve`` shows each as tuned. Ctrl-C
stops the search and keeps what was measured.

Example:
    >>> result = tune(TuneOptions(Path("model_repository"), concurrencies=(1, 16), budget_s=600))
    >>> print(result.summary())
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolo_client.benchmark import sample_images
from yolo_client.contract import model_roles
from yolo_server.extras import import_extra
from yolo_server.launcher.launch import loopback_server
from yolo_server.launcher.staging import plan_serving
from yolo_server.launcher.tuned import TUNING_FILE, Tuning
from yolo_server.precision import CpuFeatures
from yolo_server.tuning.perf_analyzer import (
    Measurement,
    MeasurementSettings,
    PerfAnalyzer,
    PerfAnalyzerError,
    find_perf_analyzer,
    measure,
    write_input_data,
)
from yolo_server.tuning.space import Knob, SearchSpace, search_space

SEARCH, DEFAULTS, TUNED = "search", "defaults", "tuned"


@dataclass(frozen=True)
class TuneOptions:
    """What to tune and how long.

    Attributes:
        repository: a built model repository.
        concurrencies: the concurrencies the objective is measured at.
        p99_ms: the latency bound every concurrency must keep (None: none).
        budget_s: the search's time; the final side-by-side run comes on top (about two trials).
        output: the tuning file (default ``repository/tuning.json``, which ``serve`` applies on this machine).
        report: the report's directory (CSV, HTML page and its plots).
        images: the encoded images the requests send in turn (default: the SDK bench's eight 640x480 JPEGs).
        measurement: perf_analyzer's window and stability.
        seed: the sampler's.
    """

    repository: Path
    concurrencies: tuple[int, ...] = (1, 4, 16)
    p99_ms: float | None = None
    budget_s: float = 600.0
    output: Path | None = None
    report: Path = Path("build/tune-report")
    images: tuple[bytes, ...] = ()
    measurement: MeasurementSettings = field(default_factory=MeasurementSettings)
    seed: int = 0

    @property
    def tuning_file(self) -> Path:
        return self.output or self.repository / TUNING_FILE


@dataclass(frozen=True)
class Trial:
    """One measured point: its settings by knob key, what perf_analyzer gave per concurrency, or why it failed."""

    number: int
    phase: str
    values: Mapping[str, Any]
    measurements: tuple[Measurement, ...] = ()
    error: str = ""
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        """The objective's throughput: the geometric mean of images/s over the concurrencies (0 on failure)."""
        if self.error or not self.measurements:
            return 0.0
        return math.exp(sum(math.log(max(m.throughput, 1e-9)) for m in self.measurements) / len(self.measurements))

    @property
    def worst_p99_ms(self) -> float:
        return max((m.p99_ms for m in self.measurements), default=math.inf)

    def feasible(self, p99_ms: float | None) -> bool:
        return not self.error and bool(self.measurements) and (p99_ms is None or self.worst_p99_ms <= p99_ms)


@dataclass(frozen=True)
class TuneResult:
    """Every trial, the defaults and the pick as measured side by side at the end, and what was written."""

    options: TuneOptions
    space: SearchSpace
    trials: tuple[Trial, ...]
    defaults: Trial
    tuned: Trial
    tuning: Tuning
    interrupted: bool

    @property
    def ratio(self) -> float:
        return self.tuned.images_per_s / self.defaults.images_per_s if self.defaults.images_per_s else math.inf

    def summary(self) -> list[str]:
        """Default against tuned per concurrency, in images/s and p99, with the ratios: printed last."""
        lines = [f"{'concurrency':>11}  {'default img/s':>13}  {'tuned img/s':>11}  {'ratio':>5}  "
                 f"{'default p99 ms':>14}  {'tuned p99 ms':>12}"]  # fmt: skip
        for default, tuned in zip(self.defaults.measurements, self.tuned.measurements, strict=False):
            lines.append(
                f"{default.concurrency:>11}  {default.throughput:>13.1f}  {tuned.throughput:>11.1f}  "
                f"{tuned.throughput / default.throughput:>5.2f}  {default.p99_ms:>14.1f}  {tuned.p99_ms:>12.1f}"
            )
        lines.append(
            f"geometric mean: default {self.defaults.images_per_s:.1f} images/s, tuned {self.tuned.images_per_s:.1f} "
            f"images/s: {self.ratio:.2f}x"
        )
        return lines


def _progress(total_s: float) -> Any:
    import tqdm  # a dependency of the server itself

    return tqdm.tqdm(total=round(total_s), unit="s", desc="tune", file=sys.stderr, dynamic_ncols=True)


def measure_settings(
    options: TuneOptions, model: str, tuning: Tuning, data: Path, workdir: Path, number: int, tool: PerfAnalyzer
) -> tuple[tuple[Measurement, ...], str]:
    """Serve ``options.repository`` with ``tuning`` and measure it; (measurements, why it failed or "")."""
    tuning_path = workdir / f"trial-{number}.json"
    tuning.write(tuning_path)
    try:
        with loopback_server(options.repository, tuning=tuning_path, front=False) as server:
            measured = measure(server.endpoints.grpc, model, data, options.concurrencies, options.measurement, tool)
            return tuple(measured), ""
    except (PerfAnalyzerError, RuntimeError, ValueError) as exc:  # a load that failed, an unstable measurement
        lines = str(exc).strip().splitlines()
        return (), lines[-1][:300] if lines else type(exc).__name__


def image_model(plan_models: Sequence[str]) -> str:
    """The image entry point of the repository (one detector per repository is tuned at a time)."""
    images = [name for name, (_, role) in model_roles(plan_models).items() if role == "images"]
    if len(images) != 1:
        raise ValueError(f"tune needs a repository of one detector; its image models are {images}")
    return images[0]


def tune(options: TuneOptions, log: Callable[[str], None] = print) -> TuneResult:
    """Search, then measure the defaults and the best side by side, write the tuning file; see the module."""
    optuna = import_extra("optuna", "tune", "tune searches the serving settings with Optuna")
    tool = find_perf_analyzer()  # missing: said before anything starts
    cpu = CpuFeatures.of_this_machine()
    plan = plan_serving(options.repository)
    model = image_model([m.name for m in plan.models])
    space = search_space(plan, cpu)
    log(f"tune {options.repository} ({model}) on {plan.budget.describe()}, {cpu.isa()}: {len(space.knobs)} knobs, "
        f"concurrency {','.join(map(str, options.concurrencies))}, budget {options.budget_s / 60:g} min"
        + (f", p99 <= {options.p99_ms:g} ms" if options.p99_ms else ""))  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=options.seed))
    study.enqueue_trial(space.defaults)
    trials: list[Trial] = []
    interrupted = False
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="yolo-tune-") as scratch:
        workdir = Path(scratch)
        data = write_input_data(workdir / "input.json", options.images or sample_images())
        progress = _progress(options.budget_s)

        def run(number: int, phase: str, values: Mapping[str, Any]) -> Trial:
            begun = time.monotonic()
            measured, error = measure_settings(options, model, space.tuning(values), data, workdir, number, tool)
            trial = Trial(number, phase, dict(values), measured, error, time.monotonic() - begun)
            trials.append(trial)
            progress.n = min(round(time.monotonic() - started), progress.total)
            progress.set_postfix_str(f"trial {number}: {trial.images_per_s:.1f} img/s{' ' + error if error else ''}")
            return trial

        try:
            while not trials or _time_left(started, options.budget_s, trials) > 0:
                asked = study.ask()
                values = {knob.key: _suggest(asked, knob) for knob in space}
                trial = run(len(trials), SEARCH, values)
                if trial.error:
                    study.tell(asked, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(asked, trial.images_per_s if trial.feasible(options.p99_ms) else 0.0)
            progress.close()
            best = _best(trials, options.p99_ms)
            defaults = run(len(trials), DEFAULTS, space.defaults)
            tuned = defaults if best.values == space.defaults else run(len(trials), TUNED, best.values)
        except KeyboardInterrupt:
            interrupted = True
            progress.close()
            log("tune: interrupted: keeping what was measured")
            if not trials:
                raise
            defaults = next((t for t in trials if t.values == space.defaults and not t.error), trials[0])
            best = _best(trials, options.p99_ms)
            tuned = best
    chosen, tuning = _write_pick(options, space, trials, defaults, tuned, log)
    return TuneResult(options, space, tuple(trials), defaults, chosen, tuning, interrupted)


def _write_pick(
    options: TuneOptions,
    space: SearchSpace,
    trials: Sequence[Trial],
    defaults: Trial,
    tuned: Trial,
    log: Callable[[str], None],
) -> tuple[Trial, Tuning]:
    """The pick, ``tuned`` where it is within the bound and :func:`beats` the defaults, else the defaults, and its
    settings, written to the tuning file."""
    if not any(trial.measurements for trial in trials):  # nothing to choose from: write no settings never measured
        raise RuntimeError(f"tune: no trial could be served and measured; the first: {trials[0].error}")
    keep = tuned.feasible(options.p99_ms) and beats(tuned, defaults)
    chosen = tuned if keep else defaults
    tuning = space.tuning(chosen.values)
    options.tuning_file.parent.mkdir(parents=True, exist_ok=True)
    tuning.write(options.tuning_file)
    if not keep:
        log("tune: no trial beat the defaults when measured again: the defaults stay")
    return chosen, tuning


def _suggest(asked: Any, knob: Knob) -> Any:
    """An Optuna suggestion: an int range as ordered (TPE learns that more is more), the rest as categories."""
    low, high = knob.choices[0], knob.choices[-1]
    if all(isinstance(c, int) for c in knob.choices) and knob.choices == tuple(range(low, high + 1)):
        return asked.suggest_int(knob.key, low, high)
    return asked.suggest_categorical(knob.key, list(knob.choices))


def _time_left(started: float, budget_s: float, trials: Sequence[Trial]) -> float:
    """Seconds left after one more trial of the average length (the side-by-side run comes after the budget)."""
    average = sum(t.seconds for t in trials) / len(trials)
    return budget_s - (time.monotonic() - started) - average


# a pick may lose this much at one concurrency to what it gains overall: less than these machines' noise
LOSS_TOLERATED = 0.98


def beats(tuned: Trial, defaults: Trial) -> bool:
    """Whether ``tuned`` serves more images/s than ``defaults`` overall and not fewer at any concurrency (within
    :data:`LOSS_TOLERATED`): a pick that trades concurrency 16 for concurrency 1 is not kept."""
    if not defaults.measurements:  # the defaults failed to serve or to measure
        return True
    paired = zip(tuned.measurements, defaults.measurements, strict=True)
    return tuned.images_per_s >= defaults.images_per_s and all(
        t.throughput >= LOSS_TOLERATED * d.throughput for t, d in paired
    )


def _best(trials: Sequence[Trial], p99_ms: float | None) -> Trial:
    """The search trial with the most images/s within the bound (the first trial where none is within it)."""
    search = [t for t in trials if t.phase == SEARCH]
    feasible = [t for t in search if t.feasible(p99_ms)]
    return max(feasible, key=lambda t: t.images_per_s) if feasible else search[0]
