"""Triton's own figures for the demo server: ``perf_analyzer`` tables, and sized against fixed instances.

The demo repository (``model_repository``: run ``make build`` first) is served as ``serve`` sizes it; requests
go straight to Triton (no front), so the figures read like every other perf_analyzer user's.

``--mode table`` (the default): a 640x480 and a 1920x1080 JPEG at each ``--concurrency``, with Triton's split of
the latency (queue, compute input, infer, output) and the client's view (p50, p99).

``--mode decode``: camera frames (640x480, 1280x720, 1920x1080 JPEGs) served with each ``--jpeg-decode`` (the
repository copied with only that parameter changed), taking turns for ``--rounds``; per decode, the images/s of
each frame size and its ratio to 640x480's.

``--mode sizing``: the server pinned to ``--server-cpus`` (perf_analyzer on the other CPUs), served sized by the
rule against today's-before-sizing fixed layout (2 fused instances, a lone image on every core, a batch on one
thread), taking turns for ``--rounds``; the ratio sized/fixed per concurrency.

Usage:
    python bench/bench_perf_analyzer.py                                   # the tables, about 4 minutes
    python bench/bench_perf_analyzer.py --mode sizing --server-cpus 0 --concurrency 16,64
    python bench/bench_perf_analyzer.py --mode decode --concurrency 1,16      # about 8 minutes
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from isa import isa_line

from yolo_client.benchmark import sample_images
from yolo_client.contract import DEFAULT_MODEL
from yolo_server.launcher.launch import loopback_server
from yolo_server.launcher.sizing import cpu_budget
from yolo_server.launcher.tuned import ModelTuning, Tuning
from yolo_server.precision import CpuFeatures
from yolo_server.triton.imaging import JPEG_DECODES
from yolo_server.tuning.perf_analyzer import Measurement, MeasurementSettings, measure, write_input_data

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
# the fused model's layout before serve sized it: 2 instances, a lone image on every core, a batch on one thread
FIXED = ModelTuning(instances=2, lone_threads=0, batch_threads=1)
SETTINGS = MeasurementSettings(measurement_interval_ms=4000, stability_percentage=50, max_trials=10, timeout_s=900)


FRAMES = {"640x480": (640, 480), "1280x720": (1280, 720), "1920x1080": (1920, 1080)}


def measured(
    tuning: Tuning | None,
    images: list[bytes],
    concurrencies: list[int],
    server_cpus: set[int],
    repository: Path = REPOSITORY,
) -> list[Measurement]:
    """Serve ``repository`` with ``tuning`` (None: as serve would) pinned to ``server_cpus``, and measure it from
    the other CPUs (from all where it has them all)."""
    everywhere = os.sched_getaffinity(0)
    with tempfile.TemporaryDirectory() as scratch:
        path = None
        if tuning is not None:
            path = Path(scratch) / "tuning.json"
            tuning.write(path)
        data = write_input_data(Path(scratch) / "input.json", images)
        os.sched_setaffinity(0, server_cpus)
        try:
            with loopback_server(repository, tuning=path, front=False) as server:
                os.sched_setaffinity(0, (everywhere - server_cpus) or everywhere)
                return measure(server.endpoints.grpc, DEFAULT_MODEL, data, concurrencies, SETTINGS)
        finally:
            os.sched_setaffinity(0, everywhere)


def table(concurrencies: list[int]) -> None:
    small = sample_images(count=1)[0]
    large = sample_images(count=1, width=1920, height=1080)[0]
    cpus = os.sched_getaffinity(0)
    print("| image | concurrency | images/s | p50 ms | p99 ms | queue ms | compute input ms | compute infer ms "
          "| compute output ms | network + client ms |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for label, image in (("640x480", small), ("1920x1080", large)):
        for m in measured(None, [image], concurrencies, cpus):
            rest = m.avg_ms - m.server_ms
            print(f"| {label} ({len(image) // 1024} KiB) | {m.concurrency} | {m.throughput:.1f} | {m.p50_ms:.1f} | "
                  f"{m.p99_ms:.1f} | {m.server_queue_ms:.2f} | {m.server_compute_input_ms:.2f} | "
                  f"{m.server_compute_infer_ms:.2f} | {m.server_compute_output_ms:.2f} | {rest:.2f} |", flush=True)  # fmt: skip


def sizing(concurrencies: list[int], server_cpus: set[int], rounds: int) -> None:
    everywhere = os.sched_getaffinity(0)
    os.sched_setaffinity(0, server_cpus)
    budget = cpu_budget()  # what serve sizes for, pinned there
    os.sched_setaffinity(0, everywhere)
    isa = CpuFeatures.of_this_machine().isa()
    layouts = {"sized": Tuning(budget.cpus, isa, {}), "fixed": Tuning(budget.cpus, isa, {DEFAULT_MODEL: FIXED})}
    results: dict[str, dict[int, list[Measurement]]] = {name: {c: [] for c in concurrencies} for name in layouts}
    images = sample_images()
    for round_ in range(rounds):
        for name, tuning in layouts.items():
            for m in measured(tuning, images, concurrencies, server_cpus):
                results[name][m.concurrency].append(m)
                print(f"round {round_ + 1} {name:>5} c={m.concurrency}: {m.throughput:.1f} images/s, "
                      f"p99 {m.p99_ms:.1f} ms", flush=True)  # fmt: skip
    print(f"\nserver on CPUs {sorted(server_cpus)}: {budget.describe()}; medians of {rounds} rounds")
    print(
        "| concurrency | fixed images/s | sized images/s | sized/fixed | fixed p99 ms | sized p99 ms |\n|---|---|---|---|---|---|"
    )
    for c in concurrencies:
        fixed = statistics.median(m.throughput for m in results["fixed"][c])
        sized = statistics.median(m.throughput for m in results["sized"][c])
        fixed_p99 = statistics.median(m.p99_ms for m in results["fixed"][c])
        sized_p99 = statistics.median(m.p99_ms for m in results["sized"][c])
        print(f"| {c} | {fixed:.1f} | {sized:.1f} | {sized / fixed:.2f} | {fixed_p99:.1f} | {sized_p99:.1f} |")


def with_jpeg_decode(jpeg_decode: str, scratch: Path) -> Path:
    """A copy of the demo repository whose models decode JPEGs as ``jpeg_decode`` says; nothing else changed."""
    copy = Path(shutil.copytree(REPOSITORY, scratch / f"repository-{jpeg_decode}"))
    parameter = re.compile(r'(key: "jpeg_decode"\s*value \{\s*string_value: )"\w+"')
    for config in copy.glob("*/config.pbtxt"):
        config.write_text(parameter.sub(rf'\1"{jpeg_decode}"', config.read_text()))
    return copy


def decode(concurrencies: list[int], rounds: int) -> None:
    frames = {label: sample_images(count=4, width=w, height=h) for label, (w, h) in FRAMES.items()}
    cpus = os.sched_getaffinity(0)
    throughput: dict[tuple[str, str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        repositories = {name: with_jpeg_decode(name, Path(scratch)) for name in JPEG_DECODES}
        for round_ in range(rounds):
            for name, repository in repositories.items():
                for label, images in frames.items():
                    for m in measured(None, images, concurrencies, cpus, repository):
                        throughput.setdefault((name, label, m.concurrency), []).append(m.throughput)
                        print(f"round {round_ + 1} {name:>6} {label:>9} c={m.concurrency}: {m.throughput:.1f} "
                              f"images/s, p99 {m.p99_ms:.1f} ms", flush=True)  # fmt: skip
    sizes = {label: f"{len(images[0]) // 1024} KiB" for label, images in frames.items()}
    print(f"\nmedians of {rounds} rounds; images/s (ratio to 640x480 of the same decode)")
    print("| JPEG decode | concurrency | " + " | ".join(f"{label} ({sizes[label]})" for label in FRAMES) + " |")
    print("|---|---|" + "---|" * len(FRAMES))
    for name in JPEG_DECODES:
        for c in concurrencies:
            small = statistics.median(throughput[(name, "640x480", c)])
            cells = []
            for label in FRAMES:
                value = statistics.median(throughput[(name, label, c)])
                cells.append(f"{value:.1f} ({value / small:.2f}x)")
            print(f"| {name} | {c} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("table", "sizing", "decode"), default="table")
    parser.add_argument("--concurrency", default="1,8,16,64")
    parser.add_argument("--server-cpus", default="0", help="sizing: the CPUs the server is pinned to, e.g. 0 or 0-7")
    parser.add_argument("--rounds", type=int, default=2, help="sizing, decode: turns each layout takes")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    print(isa_line(), f"; {os.cpu_count()} CPUs", flush=True)
    if args.mode == "table":
        table(concurrencies)
    elif args.mode == "decode":
        decode(concurrencies, args.rounds)
    else:
        first, _, last = args.server_cpus.partition("-")
        sizing(concurrencies, set(range(int(first), int(last or first) + 1)), args.rounds)


if __name__ == "__main__":
    main()
