"""``yolo-server serve`` as a test process: start it, wait for it, stop it, and find its tritonserver and stubs.

The session's shared server (``tests/integration/conftest.py``, fixture ``triton_server``) is built from the
constants here and described by :class:`TritonTestServer`; tests that start servers of their own use
:func:`build_repository`, :func:`start_serve`, :func:`wait_ready` and :func:`stop_process` (:func:`kill_server`
for a crash). Every wait here is bounded (:func:`wait_until`), and every process is stopped by its pid.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.server_processes import stub_models
from tests.helpers.darknet_files import COCO_NAMES, cfg_path
from yolo_server.launcher.ports import free_ports
from yolo_server.launcher.process import shm_prefix, workdir_prefix
from yolo_server.launcher.supervise import STUB_NAME

if TYPE_CHECKING:
    from yolo_server.pipeline import Detector

CFG = cfg_path("yolov4-tiny")
NAMES = COCO_NAMES
INPUT_WIDTH, INPUT_HEIGHT = 320, 256
MAX_BATCH_SIZE = 8
MAX_PIXELS = 50_000_000
READY_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class TritonTestServer:
    """A running server and what it was built from (see ``tests/integration/conftest.py``)."""

    grpc_url: str
    http_url: str
    metrics_url: str
    model_name: str
    tensor_model_name: str
    repository: Path
    cfg: Path
    weights: Path
    names: Path
    input_width: int
    input_height: int
    max_batch_size: int
    max_pixels: int
    detector: Detector
    pid: int
    admin_headers: dict[str, str]
    admin_http_headers: dict[str, str]


def write_random_weights(path: Path) -> Path:
    """Calibrated random weights for yolov4-tiny, written with the project's darknet writer."""
    from yolo_server.darknet import load_spec, write_weights
    from yolo_server.darknet.random_weights import calibrated_random_weights

    spec = load_spec(CFG, (INPUT_WIDTH, INPUT_HEIGHT))
    write_weights(path, spec, calibrated_random_weights(spec, seed=7))
    return path


def build_repository(weights: Path, output: Path, *options: str) -> Path:
    """``yolo-server build`` of the test cfg (:data:`CFG`, :data:`NAMES`) on ``weights`` into ``output``, with
    ``options`` (``--size``, ``--instances``, queue settings...); returns ``output``."""
    from yolo_server.cli import main as cli_main

    argv = ["build", "--cfg", str(CFG), "--weights", str(weights), "--names", str(NAMES), "--output", str(output)]
    assert cli_main([*argv, *options]) == 0, f"yolo-server build {' '.join(options)} failed"
    return output


def wait_until(
    condition: Callable[[], object],
    timeout_s: float,
    what: str,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
    interval_s: float = 0.25,
) -> None:
    """Poll ``condition`` until it is true; AssertionError naming ``what`` after ``timeout_s``, or at once when
    ``process`` (the server the condition waits on) has exited. ``log``: its output, quoted in the error."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} while waiting for {what}{_tail(log)}")
        if condition():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{_tail(log)}")
        time.sleep(interval_s)


def _tail(log: Path | None) -> str:
    return f":\n{log.read_text()[-4000:]}" if log is not None and log.exists() else ""


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """``GET url`` answered 200 (False while nothing listens or it answers otherwise)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def wait_ready(grpc_url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Until gRPC answers ready and the launcher has said so too.

    Triton starts its endpoints one after another (gRPC, then HTTP, then metrics), and through the front a gRPC
    client reaches the gRPC endpoint the instant it listens: ready there does not yet mean HTTP answers. The
    launcher prints tritonserver's pid only once HTTP answered ready through the front.
    """
    import tritonclient.grpc as grpcclient

    def ready() -> bool:
        try:
            return client.is_server_ready() and printed_triton_pid(log) is not None
        except Exception:  # not listening yet
            return False

    with grpcclient.InferenceServerClient(grpc_url) as client:
        wait_until(ready, timeout_s, f"yolo-server serve ready at {grpc_url}", process, log, interval_s=0.5)


def start_serve(
    repository: Path,
    log: Path,
    *extra: str,
    ports: tuple[int, int, int] | None = None,
    exit_timeout_s: int = 10,
    wrapper: tuple[str, ...] = (),
) -> tuple[subprocess.Popen, tuple[int, int, int]]:
    """``yolo-server serve`` on loopback, in a session of its own, output to ``log``; run by ``wrapper`` if given
    (e.g. ``("taskset", "-c", "0")``).

    Returns the process and its (HTTP, gRPC, metrics) ports: ``ports``, else free ones.
    """
    if ports is None:
        http_port, grpc_port, metrics_port = free_ports(3)
    else:
        http_port, grpc_port, metrics_port = ports
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "yolo_server.cli", "serve", str(repository), "--host", "127.0.0.1",
             "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
             "--exit-timeout", str(exit_timeout_s), *extra],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    return process, (http_port, grpc_port, metrics_port)


@contextmanager
def serving(repository: Path, workdir: Path, *extra: str) -> Iterator[str]:
    """``yolo-server serve REPOSITORY`` (``start_serve``) until the block ends, stopped by pid; yields its gRPC
    URL once ready. Its log is ``workdir/serve.log``."""
    log = workdir / "serve.log"
    process, (_, grpc_port, _) = start_serve(repository, log, *extra)
    try:
        grpc_url = f"127.0.0.1:{grpc_port}"
        wait_ready(grpc_url, process, log, READY_TIMEOUT_S)
        yield grpc_url
    finally:
        stop_process(process)


def remove_crash_leftovers(launcher_pid: int) -> None:
    """What a SIGKILLed launcher could not remove: its Python-backend shared memory and its work directory."""
    for leftover in Path("/dev/shm").glob(f"{shm_prefix(launcher_pid)}*"):
        leftover.unlink(missing_ok=True)
    for workdir in Path(tempfile.gettempdir()).glob(f"{workdir_prefix(launcher_pid)}*"):
        shutil.rmtree(workdir, ignore_errors=True)


def stop_process(process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """SIGTERM by pid (yolo-server forwards it to Triton, which drains; nginx and locust stop too), SIGKILL if it
    hangs: its process group where it leads one (``start_new_session=True``), else the process."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait(30)


def kill_server(process: subprocess.Popen, log: Path) -> None:
    """Crash a :func:`start_serve` server: SIGKILL tritonserver's process group (with its Python stubs), then the
    launcher's, by pid; then remove what the launcher could not (:func:`remove_crash_leftovers`). Idempotent.

    Triton runs in a process group of its own; killing only the launcher's would let Triton, SIGTERMed by
    PR_SET_PDEATHSIG, shut down gracefully, unloading models under requests in flight: a drain, not a crash.
    """
    groups = [process.pid]
    triton = printed_triton_pid(log)
    if triton is not None:
        with suppress(ProcessLookupError):
            groups.insert(0, os.getpgid(triton))
    for group in groups:
        with suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    process.wait(30)
    remove_crash_leftovers(process.pid)


def metric_value(metrics_url: str, name: str, model: str) -> float:
    """The sum of the samples ``name`` labelled ``model`` on a server's Prometheus endpoint (``metrics_url``)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("model") == model
    )


# -- processes of a running server (bench/server_processes.py reads them) -------------------------------------
def model_stubs(triton_pid: int, model: str) -> list[int]:
    """The stub processes of every instance of ``model`` (the fused image model has one per instance)."""
    stubs = [pid for pid, name in stub_models(triton_pid).items() if name == model]
    assert stubs, f"no stub ({STUB_NAME}) of {model} under tritonserver {triton_pid}"
    return stubs


def printed_triton_pid(log: Path) -> int | None:
    """tritonserver's pid if the launcher has printed it (it does once its own readiness poll sees ready)."""
    match = re.search(r"tritonserver pid (\d+)", log.read_text()) if log.exists() else None
    return int(match.group(1)) if match else None


def triton_pid(log: Path, timeout_s: float = 30.0) -> int:
    """tritonserver's pid from the launcher's log, waiting for the line: the launcher's readiness poll may see
    the server ready a moment after a test's own wait saw it."""
    wait_until(lambda: printed_triton_pid(log) is not None, timeout_s, "the launcher to print tritonserver's pid",
               interval_s=0.1)  # fmt: skip
    pid = printed_triton_pid(log)
    assert pid is not None
    return pid
