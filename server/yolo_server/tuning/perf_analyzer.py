"""Triton's ``perf_analyzer`` driven from Python: one encoded image as its input data, a list of concurrencies,
and per concurrency the throughput, the client's latency percentiles and Triton's server-side split.

The binary is the one ``make perf-tools`` installs beside the venv (``.venv/perf-tools``: the tritonclient
2.50.0 wheel's, with the libcudart it links), else ``$PERF_ANALYZER_BIN`` or ``perf_analyzer`` on ``PATH`` (the
Triton SDK container). It runs once per concurrency, so a failure names its concurrency and each run has what is
left of the timeout.

Example:
    >>> tool = find_perf_analyzer()
    >>> data = write_input_data(Path("input.json"), Path("street.jpg").read_bytes())
    >>> settings = MeasurementSettings(batch_size=4, measurement_interval_ms=2000)
    >>> for m in measure("127.0.0.1:8001", "yolov4_tiny_shapes", data, [1, 2, 4], settings, tool):
    ...     print(m.concurrency, f"{m.throughput:.1f} images/s p99 {m.p99_ms:.1f} ms queue {m.server_queue_ms:.1f} ms")
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolo_client.contract import IMAGE

BINARY = "perf_analyzer"
BINARY_ENV = "PERF_ANALYZER_BIN"
# where `make perf-tools` installs the tritonclient 2.50.0 wheel (pip --target): inside the venv, so the venv's own,
# newer tritonclient (which no longer ships the binary) stays
PERF_TOOLS_DIR = Path(sys.prefix) / "perf-tools"
# the binary links libcudart.so.12 even against a CPU server; the nvidia-cuda-runtime-cu12 wheel puts it here
_CUDART_DIR = Path("nvidia") / "cuda_runtime" / "lib"
_STDERR_TAIL = 2000
_US_PER_MS = 1000.0


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer is missing, failed, timed out, or wrote a report this module cannot read."""


@dataclass(frozen=True)
class PerfAnalyzer:
    """A perf_analyzer binary and the library directories it needs on ``LD_LIBRARY_PATH``."""

    binary: Path
    library_dirs: tuple[Path, ...] = ()

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with :attr:`library_dirs` first on LD_LIBRARY_PATH."""
        env = dict(os.environ if base is None else base)
        parts = [*(str(d) for d in self.library_dirs), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(part for part in parts if part)  # no empty entry: the cwd
        return env


def find_perf_analyzer() -> PerfAnalyzer:
    """``$PERF_ANALYZER_BIN``, then ``make perf-tools``'s install, then ``perf_analyzer`` on PATH.

    Raises:
        PerfAnalyzerError: none found, or a wheel's binary without its libcudart; the message names
            ``make perf-tools``.
    """
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise PerfAnalyzerError(f"{BINARY_ENV}={explicit} is not an executable file")
        return _installation(Path(explicit))
    installed = PERF_TOOLS_DIR / "bin" / BINARY
    if installed.is_file():
        return _installation(installed)
    on_path = shutil.which(BINARY)
    if on_path:
        return _installation(Path(on_path))
    raise PerfAnalyzerError(
        f"no {BINARY}: run `make perf-tools` (installs it into {PERF_TOOLS_DIR}), or set {BINARY_ENV}"
    )


def _installation(binary: Path) -> PerfAnalyzer:
    """``binary`` with its wheel's libcudart directory where it sits in a pip ``--target`` tree."""
    root = binary.resolve().parent.parent
    if root == PERF_TOOLS_DIR.resolve() and not (root / _CUDART_DIR / "libcudart.so.12").is_file():
        raise PerfAnalyzerError(f"{binary} has no libcudart.so.12 beside it: run `make perf-tools`")
    cudart = root / _CUDART_DIR
    return PerfAnalyzer(binary, (cudart,) if cudart.is_dir() else ())


def input_data(images: bytes | Sequence[bytes], input_name: str = IMAGE) -> dict[str, object]:
    """perf_analyzer's ``--input-data`` JSON (as a dict) sending ``images`` to the BYTES input ``input_name``.

    Each image is one batch-1 entry: the serialized BYTES element (a 4-byte little-endian length, then the
    bytes), base64-encoded, as perf_analyzer reads a ``b64`` value raw into the request. A batch (``-b N``) takes
    N consecutive entries, cycling, so a single image serves any batch size.

    Args:
        images: one encoded image (JPEG, PNG...), or several, sent in turn.
        input_name: the model's BYTES input, [1] per batch row.
    """
    entries = [images] if isinstance(images, bytes) else list(images)
    if not entries:
        raise ValueError("input_data needs at least one image")
    return {"data": [{input_name: {"b64": base64.b64encode(_bytes_element(data)).decode("ascii")}} for data in entries]}


def _bytes_element(data: bytes) -> bytes:
    """One element of a serialized Triton BYTES tensor (what tritonclient's serialize_byte_tensor writes)."""
    return struct.pack("<I", len(data)) + data


def write_input_data(path: Path, images: bytes | Sequence[bytes], input_name: str = IMAGE) -> Path:
    """:func:`input_data` written to ``path`` as JSON; returns ``path`` (what :func:`measure` takes)."""
    path.write_text(json.dumps(input_data(images, input_name)))
    return path


@dataclass(frozen=True)
class MeasurementSettings:
    """How perf_analyzer measures each concurrency. The defaults are short and tolerant for a busy CPU host;
    perf_analyzer's own are a 5000 ms window, 10 % stability and 10 trials.

    Attributes:
        batch_size: images per request (``-b``); the model must batch (max_batch_size >= it).
        measurement_interval_ms: one measurement window (``-p``).
        stability_percentage: the max/min spread of the last 3 windows' throughput and latency that counts as
            stable (``-s``).
        max_trials: windows before an unstable concurrency fails the run (``-r``; stability needs 3).
        percentile: stabilise on this latency percentile instead of the average (``--percentile``).
        request_count: if set, one measurement of exactly this many requests per concurrency, no stability
            check (``--request-count``): repeatable in time where windows never settle.
        timeout_s: for all the concurrencies together; perf_analyzer is killed when it runs out.
    """

    batch_size: int = 1
    measurement_interval_ms: int = 1000
    stability_percentage: float = 50.0
    max_trials: int = 6
    percentile: int | None = None
    request_count: int | None = None
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.measurement_interval_ms < 1 or self.timeout_s <= 0:
            raise ValueError(f"batch_size, measurement_interval_ms and timeout_s must be positive: {self}")
        if self.max_trials < 3:  # perf_analyzer compares the last 3 windows: fewer can never be stable
            raise ValueError(f"max_trials must be at least 3, got {self.max_trials}")
        if self.request_count is not None and self.request_count < 1:
            raise ValueError(f"request_count must be positive, got {self.request_count}")

    def arguments(self) -> list[str]:
        """These settings as perf_analyzer flags."""
        flags = ["-b", str(self.batch_size), "-p", str(self.measurement_interval_ms),
                 "-s", f"{self.stability_percentage:g}", "-r", str(self.max_trials)]  # fmt: skip
        if self.percentile is not None:
            flags += ["--percentile", str(self.percentile)]
        if self.request_count is not None:
            flags += ["--request-count", str(self.request_count)]
        return flags


@dataclass(frozen=True)
class Measurement:
    """One concurrency's result. Latencies in ms; the percentiles and average are the client's, per request.

    ``throughput`` is perf_analyzer's inferences/s, which counts ``batch_size`` per request: images/s. The split
    is perf_analyzer's ``--verbose-csv`` average per request: the client's send and receive, the network with
    Triton's gRPC send/receive, and Triton's own queue and compute input/infer/output (its statistics API).
    """

    concurrency: int
    batch_size: int
    throughput: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    client_send_ms: float
    network_ms: float
    server_queue_ms: float
    server_compute_input_ms: float
    server_compute_infer_ms: float
    server_compute_output_ms: float
    client_recv_ms: float

    @property
    def requests_per_s(self) -> float:
        """Requests answered per second (``throughput`` / ``batch_size``)."""
        return self.throughput / self.batch_size

    @property
    def server_ms(self) -> float:
        """Triton's queue and compute time of an average request (what the network and client do not add)."""
        compute = self.server_compute_input_ms + self.server_compute_infer_ms + self.server_compute_output_ms
        return self.server_queue_ms + compute


# Measurement field -> perf_analyzer 2.50's --verbose-csv column (microseconds, but the throughput)
_COLUMNS = {
    "throughput": "Inferences/Second", "avg_ms": "Avg latency",
    "p50_ms": "p50 latency", "p90_ms": "p90 latency", "p95_ms": "p95 latency", "p99_ms": "p99 latency",
    "client_send_ms": "Client Send", "network_ms": "Network+Server Send/Recv", "client_recv_ms": "Client Recv",
    "server_queue_ms": "Server Queue", "server_compute_input_ms": "Server Compute Input",
    "server_compute_infer_ms": "Server Compute Infer", "server_compute_output_ms": "Server Compute Output",
}  # fmt: skip


def parse_csv(text: str, batch_size: int = 1) -> list[Measurement]:
    """The rows of a ``-f`` report written with ``--verbose-csv``, one :class:`Measurement` per concurrency.

    Raises:
        PerfAnalyzerError: a column is missing (a report without ``--verbose-csv``, or another layout).
    """
    rows = list(csv.DictReader(io.StringIO(text)))
    needed = ["Concurrency", *_COLUMNS.values()]
    missing = [column for column in needed if rows and column not in rows[0]]
    if not rows or missing:
        raise PerfAnalyzerError(f"perf_analyzer's CSV lacks {missing or 'rows'}:\n{text[:_STDERR_TAIL]}")
    return [
        Measurement(
            concurrency=int(row["Concurrency"]),
            batch_size=batch_size,
            **{
                field: float(row[column]) if field == "throughput" else float(row[column]) / _US_PER_MS
                for field, column in _COLUMNS.items()
            },
        )
        for row in rows
    ]


def measure(
    url: str,
    model: str,
    data: Path,
    concurrencies: Sequence[int],
    settings: MeasurementSettings | None = None,
    tool: PerfAnalyzer | None = None,
) -> list[Measurement]:
    """perf_analyzer over gRPC against ``model`` at ``url``, once per concurrency, in the order given.

    Args:
        url: Triton's gRPC endpoint, ``host:port``.
        model: the model to load (its latest version).
        data: an ``--input-data`` JSON file (:func:`write_input_data`).
        concurrencies: requests in flight, one run each.
        settings: the measurement (default :class:`MeasurementSettings`).
        tool: the binary (default :func:`find_perf_analyzer`).

    Raises:
        PerfAnalyzerError: it exited non-zero (its stderr's tail in the message: an unstable measurement, an
            unknown model, a refused connection, a request the model rejected), or ran past the timeout.
    """
    settings = settings or MeasurementSettings()
    tool = tool or find_perf_analyzer()
    if not concurrencies or min(concurrencies) < 1:
        raise ValueError(f"concurrencies must be positive, got {list(concurrencies)}")
    deadline = time.monotonic() + settings.timeout_s
    argv = [str(tool.binary), "-m", model, "-u", url, "-i", "grpc", "--input-data", str(data), *settings.arguments()]
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as workdir:
        for concurrency in concurrencies:
            report = Path(workdir) / f"concurrency-{concurrency}.csv"
            run = [*argv, "--concurrency-range", f"{concurrency}:{concurrency}", "-f", str(report), "--verbose-csv"]
            _run(run, tool.environment(), deadline - time.monotonic(), concurrency, settings.timeout_s)
            results.extend(parse_csv(report.read_text(), settings.batch_size))
    return results


def _run(argv: list[str], env: dict[str, str], timeout_s: float, concurrency: int, budget_s: float) -> None:
    """One perf_analyzer run; its stdout (the human report) is dropped, its stderr quoted on failure."""
    if timeout_s <= 0:
        raise PerfAnalyzerError(f"perf_analyzer: the {budget_s:g} s timeout ran out before concurrency {concurrency}")
    try:
        done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as expired:  # subprocess.run has killed it by its pid
        raise PerfAnalyzerError(
            f"perf_analyzer timed out (the {budget_s:g} s timeout) at concurrency {concurrency}{_tail(expired.stderr)}"
        ) from None
    if done.returncode != 0:
        hint = " (`make perf-tools` installs its libraries)" if b"error while loading shared" in done.stderr else ""
        raise PerfAnalyzerError(
            f"perf_analyzer exited with {done.returncode} at concurrency {concurrency}{hint}{_tail(done.stderr)}"
        )


def _tail(stderr: bytes | None) -> str:
    text = (stderr or b"").decode(errors="replace").strip()
    return f":\n{text[-_STDERR_TAIL:]}" if text else ""
