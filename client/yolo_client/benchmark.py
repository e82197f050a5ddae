"""Closed-loop load from one process: N workers each sending one image at a time for a fixed duration.

Used by ``yolo-client bench`` and ``bench/bench_client.py``.

Example:
    >>> with YoloClient("localhost:8001") as client:
    ...     result = run_closed_loop(lambda image: client.detect(image), sample_images(), concurrency=8, duration=10)
    >>> print(result.report(target_fps=65))
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .contract import TARGET_FPS

# the YOLOv4 paper's real-time bar (Bochkovskiy et al. 2020: 65 FPS on a Tesla V100)


@dataclass
class BenchResult:
    """What a run measured: successes with their latencies, errors by type, and the wall time."""

    concurrency: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        """Successful images per second."""
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile in seconds (nan without successes)."""
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def latency_ms(self) -> dict[str, float]:
        """p50, p95 and p99 latency in milliseconds (nan without successes)."""
        return {f"p{q}": round(self.percentile(q) * 1000, 2) for q in (50, 95, 99)}

    def latency_text(self) -> str:
        return "p50 {:.1f}  p95 {:.1f}  p99 {:.1f}".format(*(self.percentile(q) * 1000 for q in (50, 95, 99)))

    def error_text(self) -> str:
        return ", ".join(f"{name}: {n}" for name, n in sorted(self.errors.items())) or "none"

    def to_dict(self, target_fps: float = TARGET_FPS) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "seconds": round(self.elapsed, 3),
            "images": self.ok,
            "images_per_second": round(self.throughput, 2),
            "latency_ms": self.latency_ms(),
            "errors": dict(self.errors),
            "target_fps": target_fps,
            "meets_target": verdict(self.throughput, target_fps) == "MEETS",
        }

    def report(self, target_fps: float = TARGET_FPS) -> str:
        return "\n".join(
            [
                f"images/s     {self.throughput:.1f}  ({self.ok} images in {self.elapsed:.1f} s, concurrency {self.concurrency})",
                f"latency ms   {self.latency_text()}",
                f"errors       {self.error_text()}",
                f"verdict      {verdict(self.throughput, target_fps)} the {target_fps:g} FPS target (YOLOv4 paper, "
                f"V100): {self.throughput:.1f} images/s",
            ]
        )


def verdict(rate: float, target_fps: float = TARGET_FPS) -> str:
    """``MEETS`` or ``BELOW`` the target (frames or images per second)."""
    return "MEETS" if rate >= target_fps else "BELOW"


def sample_images(count: int = 8, width: int = 640, height: int = 480, seed: int = 0) -> list[bytes]:
    """JPEG test images: synthetic scenes (:mod:`yolo_client.scenes`: shapes on a gradient, compress like photos,
    unlike white noise), each at its own quality (70 to 95)."""
    from .scenes import draw_scene, encode_jpeg

    rng = np.random.default_rng(seed)
    return [encode_jpeg(draw_scene(rng, width, height)) for _ in range(count)]


def run_closed_loop(
    call: Callable[[Any], object],
    images: Sequence[Any],
    *,
    concurrency: int,
    duration: float,
    warmup: float = 0.0,
    progress: bool = False,
) -> BenchResult:
    """Run ``call(image)`` from ``concurrency`` threads for ``duration`` seconds (after ``warmup`` seconds).

    Exceptions are counted by type name and do not stop the run.
    """
    if concurrency < 1 or duration <= 0 or not images:
        raise ValueError("need concurrency >= 1, duration > 0 and at least one image")
    lock = threading.Lock()
    result = BenchResult(concurrency=concurrency, elapsed=0.0)
    t0 = time.perf_counter()
    start, end = t0 + warmup, t0 + warmup + duration

    def worker(index: int) -> None:
        i = index
        while True:
            began = time.perf_counter()
            if began >= end:
                return
            try:
                call(images[i % len(images)])
                failure = None
            except Exception as exc:  # counted, never fatal
                failure = type(exc).__name__
            done = time.perf_counter()
            i += concurrency
            if began < start or done > end:
                continue  # warm-up, or finished after the window closed
            with lock:
                if failure is None:
                    result.latencies.append(done - began)
                else:
                    result.errors[failure] += 1

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    _wait(threads, start, end, result, lock, progress)
    result.elapsed = duration
    return result


def _wait(
    threads: list[threading.Thread], start: float, end: float, result: BenchResult, lock: threading.Lock, progress: bool
) -> None:
    bar = _progress_bar(end - start) if progress else None
    last_plain = time.perf_counter()
    while True:
        alive = [t for t in threads if t.is_alive()]
        if not alive:
            break
        alive[0].join(timeout=0.5)
        now = time.perf_counter()
        if not progress or now < start:
            continue
        with lock:
            done, errors = result.ok, sum(result.errors.values())
        elapsed = min(now, end) - start
        rate = done / elapsed if elapsed > 0 else 0.0
        if bar is not None:
            bar.n = round(elapsed, 1)
            bar.set_postfix_str(f"{rate:.1f} images/s, {errors} errors", refresh=True)
        elif now - last_plain >= 5.0:
            last_plain = now
            print(
                f"  {elapsed:5.1f}/{end - start:g} s  {done} images  {rate:.1f} images/s  {errors} errors",
                file=sys.stderr,
            )
    if bar is not None:
        bar.n = bar.total
        bar.close()


def _progress_bar(total: float) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=round(total, 1), unit="s", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}", file=sys.stderr
    )
