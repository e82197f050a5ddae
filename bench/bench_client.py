"""The SDK's overhead: ``YoloClient.detect`` vs bare ``tritonclient`` calls, same server, same JPEGs, one run.

    .venv/bin/python bench/bench_client.py [--seconds 6] [--rounds 3] [--concurrency 1 8]

One yolov4-tiny server (cpu, calibrated random weights) is started; at each concurrency, closed-loop clients
(one per thread, each with its own channel) alternate between the two sides round by round (bare, SDK, bare,
SDK, ...), so drift of this noisy machine hits both alike. The SDK side does all it does for a user: input
checks, the request, mapping outputs to ``Detection`` objects with labels. Target: SDK / bare >= 0.95.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from yolo_client.benchmark import sample_images
from yolo_client.contract import OUTPUT_NAMES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import MODELS, build

MODEL = "yolov4_tiny"


def bare_caller(url: str) -> tuple[Callable[[bytes], object], Callable[[], None]]:
    client = grpcclient.InferenceServerClient(url)

    def call(data: bytes) -> object:
        tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[data]], dtype=object))
        result = client.infer(MODEL, [tensor])
        return [result.as_numpy(name) for name in OUTPUT_NAMES]

    return call, client.close


def sdk_caller(url: str) -> tuple[Callable[[bytes], object], Callable[[], None]]:
    from yolo_client import YoloClient

    client = YoloClient(url, MODEL)
    client.model_info()  # read once, as every application does at start
    return client.detect, client.close


def rate(
    make: Callable[[str], tuple[Callable[[bytes], object], Callable[[], None]]],
    url: str,
    images: list[bytes],
    concurrency: int,
    seconds: float,
) -> float:
    """Images/s of ``concurrency`` closed-loop threads, each with its own client, for ``seconds``."""
    counts = [0] * concurrency
    barrier = threading.Barrier(concurrency + 1)
    stop = threading.Event()

    def loop(index: int) -> None:
        call, close = make(url)
        try:
            call(images[index % len(images)])
            barrier.wait()
            i = index
            while not stop.is_set():
                call(images[i % len(images)])
                counts[index] += 1
                i += concurrency
        finally:
            close()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - start
    for thread in threads:
        thread.join()
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--seconds", type=float, default=6.0, help="per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    from yolo_server.launcher.launch import loopback_server

    images = sample_images(16)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        repository = Path(tmp) / "repository"
        build(MODELS["yolov4-tiny"], repository, args.size, 8, [])
        # tritonserver behind its nginx front, as `yolo-server serve` runs it
        with loopback_server(repository, exit_timeout_s=5, ready_timeout_s=300) as server:
            url = server.endpoints.grpc
            rate(bare_caller, url, images, max(args.concurrency), 2.0)  # warm every instance
            for concurrency in args.concurrency:
                bare, sdk = [], []
                for _ in range(args.rounds):
                    bare.append(rate(bare_caller, url, images, concurrency, args.seconds))
                    sdk.append(rate(sdk_caller, url, images, concurrency, args.seconds))
                rows.append((concurrency, statistics.median(bare), statistics.median(sdk)))

    print(
        f"\nyolov4-tiny @{args.size}, cpu, 640x480 JPEGs, bytes transport, median of {args.rounds} alternating rounds"
    )
    print(f"{'concurrency':>11} {'bare img/s':>10} {'SDK img/s':>10} {'SDK/bare':>9}")
    for concurrency, bare_rate, sdk_rate in rows:
        print(f"{concurrency:>11} {bare_rate:>10.1f} {sdk_rate:>10.1f} {sdk_rate / bare_rate:>9.3f}")


if __name__ == "__main__":
    main()
