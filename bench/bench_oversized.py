"""Oversized requests straight at a server's gRPC port: time to refuse, and the memory the server keeps afterwards.

Two servers on the demo repository (``model_repository``: run ``make build`` first), one after the other:
  * ``before``: tritonserver on the port itself (``--no-front``) with Triton's default gRPC request pool (8), as
    ``yolo-server serve`` ran before the front;
  * ``after``: ``yolo-server serve``'s defaults: the nginx front capping requests, Triton's request pool off.

Each gets the same phases, and the memory of tritonserver plus its stubs (resident) and of the server's
Python-backend pools in /dev/shm is printed after each:
  1. one request each of 16, 64, 256 and 1024 MiB (an image of zero bytes: refused by the model if it gets there);
  2. 20 requests of 60 MiB, under the cap: what Triton keeps of requests it does read;
  3. ``--gigabytes`` more 1 GiB requests in sequence (``before``: 2, each costs about 1 GiB for good), then 4 at once.

Usage:
    python bench/bench_oversized.py                     # about 3 minutes; needs ~12 GB free for `before`
    python bench/bench_oversized.py --shapes after --gigabytes 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oversized import MIB, Outcome, RawChannel, oversized_request
from server_processes import server_memory

from yolo_client.contract import DEFAULT_MODEL
from yolo_server.launcher.launch import Serving, loopback_server
from yolo_server.launcher.supervise import Supervision

ROOT = Path(__file__).resolve().parents[1]
MODEL = DEFAULT_MODEL
TRITON_DEFAULT_REQUEST_POOL = ("--grpc-infer-allocation-pool-size=8",)
SHAPES: dict[str, dict[str, Any]] = {"before": {"front": False, "extra_args": TRITON_DEFAULT_REQUEST_POOL}, "after": {}}


def cpu_flags() -> str:
    flags = set(Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split())
    return " ".join(sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_tile"})) or "no AVX2"


def summary(outcomes: list[Outcome]) -> str:
    codes = sorted({o.code.name for o in outcomes})
    seconds = [o.seconds for o in outcomes]
    return f"{'/'.join(codes)}, median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s"


@contextmanager
def demo_server(setup: dict[str, Any], log: Path) -> Iterator[Serving]:
    """A ready server on the demo repository, free loopback ports, no supervision, ``setup`` on top; its output
    goes to ``log``."""
    with (
        open(log, "a") as out,
        loopback_server(
            ROOT / "model_repository", out, exit_timeout_s=5, supervision=Supervision(0), **setup
        ) as server,
    ):
        yield server


def run_shape(name: str, gigabytes: int, workdir: Path) -> None:
    with demo_server(SHAPES[name], workdir / f"{name}.log") as server:
        measure(name, server, gigabytes)


def measure(name: str, serving: Serving, gigabytes: int) -> None:
    server, front = serving.server, serving.front
    triton = server.pid
    assert triton is not None
    cap = front.config.cap_text if front else "none"
    print(f"\n== {name}: front {cap}, gRPC {server.endpoints.grpc}")

    def memory() -> str:
        return str(server_memory(triton, server.shm_prefix))

    print(f"  start                        {memory()}")
    with RawChannel(server.endpoints.grpc) as channel:
        for size in (16, 64, 256, 1024):
            outcome = channel.send(oversized_request(MODEL, size * MIB), timeout_s=300)
            print(
                f"  {size:5d} MiB  {outcome.code.name:20s} {outcome.seconds:6.2f} s  {memory()}  {outcome.message[:60]}"
            )
        below = oversized_request(MODEL, 60 * MIB)
        print(f"  20 x 60 MiB: {summary([channel.send(below) for _ in range(20)])}  {memory()}")
        gib = oversized_request(MODEL, 1024 * MIB)
        sequential = [channel.send(gib, timeout_s=300) for _ in range(gigabytes)]
        print(f"  {gigabytes} x 1 GiB in sequence: {summary(sequential)}  {memory()}")
        with ThreadPoolExecutor(4) as pool:
            at_once = list(pool.map(lambda _: channel.send(gib, timeout_s=300), range(4)))
        print(f"  4 x 1 GiB at once: {summary(at_once)}  {memory()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="before,after")
    parser.add_argument(
        "--gigabytes", type=int, default=0, help="1 GiB requests in sequence (default: before 2, after 20)"
    )
    args = parser.parse_args()
    print(f"CPU: {cpu_flags()}; memory in MiB: tritonserver + stubs resident (shared pages in each), shm pools")
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.shapes.split(","):
            run_shape(name, args.gigabytes or (2 if name == "before" else 20), Path(workdir))


if __name__ == "__main__":
    main()
