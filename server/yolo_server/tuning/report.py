"""The report of a ``yolo-server tune`` run: a CSV of every trial and an HTML page with its plots.

The page shows images/s and p99 against concurrency for the defaults and the pick (measured side by side at
the end), every trial's images/s and worst p99 in the order they ran, and the settings chosen.

Example:
    >>> paths = write_report(result, Path("build/tune-report"))
    >>> paths.page                                   # build/tune-report/index.html
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolo_server.extras import import_extra
from yolo_server.tuning.tune import TuneResult

CSV_NAME, PAGE_NAME = "trials.csv", "index.html"
CURVES_PNG, TRIALS_PNG = "default-vs-tuned.png", "trials.png"


@dataclass(frozen=True)
class ReportFiles:
    csv: Path
    page: Path
    plots: tuple[Path, ...]


def trials_csv(result: TuneResult) -> str:
    """One row per trial: its phase, settings, objective and, per concurrency, images/s, latency and its split."""
    keys = [knob.key for knob in result.space]
    concurrencies = result.options.concurrencies
    per_concurrency = ("images_per_s", "p50_ms", "p99_ms", "queue_ms", "compute_infer_ms")
    header = ["trial", "phase", "seconds", "error", "feasible", "images_per_s_geomean", "worst_p99_ms", *keys]
    header += [f"c{c}_{name}" for c in concurrencies for name in per_concurrency]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for trial in result.trials:
        by_concurrency = {m.concurrency: m for m in trial.measurements}
        row: list[Any] = [trial.number, trial.phase, f"{trial.seconds:.1f}", trial.error,
                          trial.feasible(result.options.p99_ms), f"{trial.images_per_s:.2f}",
                          f"{trial.worst_p99_ms:.2f}" if trial.measurements else ""]  # fmt: skip
        row += [trial.values.get(key, "") for key in keys]
        for c in concurrencies:
            m = by_concurrency.get(c)
            row += (
                [
                    f"{m.throughput:.2f}",
                    f"{m.p50_ms:.2f}",
                    f"{m.p99_ms:.2f}",
                    f"{m.server_queue_ms:.2f}",
                    f"{m.server_compute_infer_ms:.2f}",
                ]  # fmt: skip
                if m
                else [""] * len(per_concurrency)
            )
        writer.writerow(row)
    return out.getvalue()


def _plots(result: TuneResult, directory: Path, machine: str) -> tuple[Path, Path]:
    matplotlib = import_extra("matplotlib", "tune", "tune plots its report")
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (throughput, p99) = pyplot.subplots(1, 2, figsize=(11, 4))
    for trial, label, style in ((result.defaults, "default", "o--"), (result.tuned, "tuned", "s-")):
        x = [m.concurrency for m in trial.measurements]
        throughput.plot(x, [m.throughput for m in trial.measurements], style, label=label)
        p99.plot(x, [m.p99_ms for m in trial.measurements], style, label=label)
    for axes, ylabel in ((throughput, "images/s"), (p99, "p99 latency (ms)")):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("concurrency (requests in flight)")
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        axes.legend()
    if result.options.p99_ms:
        p99.axhline(result.options.p99_ms, color="red", linewidth=1, label="p99 bound")
    figure.suptitle(f"default against tuned, measured side by side: {machine}", fontsize=10)
    figure.tight_layout()
    curves = directory / CURVES_PNG
    figure.savefig(curves, dpi=110)
    pyplot.close(figure)

    figure, (objective, latency) = pyplot.subplots(2, 1, figsize=(11, 5.5), sharex=True)
    for trial in result.trials:
        feasible = trial.feasible(result.options.p99_ms)
        colour = "tab:green" if feasible else ("tab:red" if trial.error else "tab:orange")
        marker = {"search": "o", "defaults": "D", "tuned": "*"}[trial.phase]
        objective.scatter(trial.number, trial.images_per_s, color=colour, marker=marker, s=40)
        if trial.measurements:
            latency.scatter(trial.number, trial.worst_p99_ms, color=colour, marker=marker, s=40)
    objective.set_ylabel("images/s (geo. mean)")
    latency.set_ylabel("worst p99 (ms)")
    latency.set_xlabel(
        "trial (o search, D defaults again, * pick again; green ok, orange over the p99 bound, red failed)"
    )
    for axes in (objective, latency):
        axes.grid(True, alpha=0.3)
    figure.suptitle(f"every trial, in the order it ran: {machine}", fontsize=10)
    figure.tight_layout()
    trials = directory / TRIALS_PNG
    figure.savefig(trials, dpi=110)
    pyplot.close(figure)
    return curves, trials


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def write_report(result: TuneResult, directory: Path) -> ReportFiles:
    """Write the CSV, the plots and the page into ``directory`` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    machine = f"{result.space.budget.describe()}, {result.space.isa}"
    csv_path = directory / CSV_NAME
    csv_path.write_text(trials_csv(result))
    curves, trials = _plots(result, directory, machine)
    summary = [
        [
            d.concurrency,
            f"{d.throughput:.1f}",
            f"{t.throughput:.1f}",
            f"{t.throughput / d.throughput:.2f}",
            f"{d.p99_ms:.1f}",
            f"{t.p99_ms:.1f}",
        ]  # fmt: skip
        for d, t in zip(result.defaults.measurements, result.tuned.measurements, strict=False)
    ]
    chosen = [[knob.key, knob.default, result.tuned.values.get(knob.key, "")] for knob in result.space]
    options = result.options
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>yolo-server tune: {html.escape(str(options.repository))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}</style></head><body>
<h1>yolo-server tune: {html.escape(str(options.repository))}</h1>
<p>{html.escape(machine)}; concurrency {", ".join(map(str, options.concurrencies))};
p99 bound {options.p99_ms or "none"}; budget {options.budget_s / 60:g} min; {len(result.trials)} trials
{"(interrupted)" if result.interrupted else ""}. Tuning file: {html.escape(str(options.tuning_file))}.</p>
<h2>Default against tuned</h2>
{_table(summary, ["concurrency", "default images/s", "tuned images/s", "ratio", "default p99 ms", "tuned p99 ms"])}
<p>Geometric mean: {result.ratio:.2f}x.</p>
<img src="{CURVES_PNG}" alt="images/s and p99 against concurrency, default against tuned">
<h2>Every trial</h2>
<img src="{TRIALS_PNG}" alt="images/s and worst p99 of every trial">
<p>All figures: <a href="{CSV_NAME}">{CSV_NAME}</a>.</p>
<h2>Settings</h2>
{_table(chosen, ["setting", "default", "chosen"])}
</body></html>
"""
    page_path = directory / PAGE_NAME
    page_path.write_text(page)
    return ReportFiles(csv_path, page_path, (curves, trials))
