"""What the front costs normal traffic: images/s and latency straight to Triton vs through nginx, side by side.

Three servers on the demo repository (``model_repository``: run ``make build`` first), taking turns for
``--rounds`` rounds (these machines drift, so only ratios within one run compare):
  * ``triton, pool 8``: no front, Triton's default gRPC request pool (``yolo-server serve`` before the front);
  * ``triton, pool 0``: no front, the request pool off (what the front's server runs behind it);
  * ``front, pool 0``: ``yolo-server serve``'s defaults.
Each round: the SDK sends generated 640x480 JPEGs from ``--concurrency`` threads for ``--seconds``.

Usage:
    python bench/bench_front.py                 # about 4 minutes
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_oversized import MODEL, TRITON_DEFAULT_REQUEST_POOL, cpu_flags, demo_server

from yolo_client import YoloClient
from yolo_client.benchmark import run_closed_loop, sample_images

SETUPS: dict[str, dict[str, Any]] = {
    "triton, pool 8": {"front": False, "extra_args": TRITON_DEFAULT_REQUEST_POOL},
    "triton, pool 0": {"front": False},
    "front, pool 0": {},
}


def one_round(setup: dict[str, Any], concurrency: int, seconds: float, log: Path) -> tuple[float, float]:
    """images/s and p50 latency (ms) of one server with ``setup``."""
    with (
        demo_server(setup, log) as server,
        YoloClient(server.endpoints.grpc, model=MODEL, max_in_flight=concurrency) as client,
    ):
        result = run_closed_loop(client.detect, sample_images(), concurrency=concurrency, duration=seconds, warmup=3.0)
    assert not result.errors, result.errors
    return result.throughput, result.percentile(50) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    log = Path("build") / "bench_front.log"
    log.parent.mkdir(exist_ok=True)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in SETUPS}
    for _ in range(args.rounds):
        for name, setup in SETUPS.items():
            runs[name].append(one_round(setup, args.concurrency, args.seconds, log))
    print(f"CPU: {cpu_flags()}; concurrency {args.concurrency}, {args.rounds} rounds of {args.seconds:g} s (median)")
    base = statistics.median(t for t, _ in runs["triton, pool 8"])
    for name, results in runs.items():
        throughput = statistics.median(t for t, _ in results)
        p50 = statistics.median(p for _, p in results)
        print(f"  {name:16s} {throughput:7.1f} images/s  x{throughput / base:.2f}  p50 {p50:6.1f} ms")


if __name__ == "__main__":
    main()
