"""``yolo-server tune`` on the demo at 128x128: a short budget through the real server and perf_analyzer, its
report and tuning file, and ``serve`` running what it chose; Ctrl-C keeps what was measured."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.serving import READY_TIMEOUT_S, model_stubs, start_serve, stop_process, triton_pid, wait_ready
from tests.helpers.small_repository import SMALL_NAME, build_small_repository
from yolo_server.launcher.sizing import cpu_budget, sized_settings
from yolo_server.launcher.tuned import TUNING_FILE, Tuning

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tune_argv(repository: Path, report: Path, budget_minutes: float) -> list[str]:
    return [sys.executable, "-m", "yolo_server.cli", "tune", str(repository), "--budget", str(budget_minutes),
            "--concurrency", "1,4", "--report", str(report)]  # fmt: skip


def check_report(report: Path, tuning: Tuning, phases: set[str]) -> list[dict[str, str]]:
    """The CSV has ``phases`` (the pick measured again only where it is not the defaults), the page its plots."""
    with open(report / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    measured = {row["phase"] for row in rows}
    assert phases <= measured and measured - phases <= {"tuned"}, measured
    first = rows[0]
    assert first["phase"] == "search" and not first["error"] and float(first["images_per_s_geomean"]) > 0
    assert float(first["c4_p99_ms"]) >= float(first["c4_p50_ms"]) > 0
    page = (report / "index.html").read_text()
    for plot in re.findall(r'<img src="([^"]+)"', page):
        assert (report / plot).read_bytes().startswith(PNG_MAGIC)
    assert len(re.findall(r"<img ", page)) == 2 and "trials.csv" in page
    assert set(tuning.models) == {SMALL_NAME}
    assert {f"{SMALL_NAME}/instances"} <= set(first)
    return rows


@pytest.mark.timeout(420)
def test_a_short_tune_writes_its_report_and_serve_runs_the_pick(tmp_path: Path) -> None:
    repository = build_small_repository(tmp_path / "model_repository", "fused")
    report = tmp_path / "report"
    done = subprocess.run(tune_argv(repository, report, 0.5), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()
    assert last[-1].startswith("geometric mean: default ") and last[-1].endswith("x"), done.stdout
    assert re.match(r" +1 +[\d.]+ +[\d.]+ +[\d.]+ ", last[-3]) and re.match(r" +4 ", last[-2])
    tuning = Tuning.read(repository / TUNING_FILE)
    rows = check_report(report, tuning, {"search", "defaults"})
    sized = sized_settings("images", python=True, cpus=cpu_budget().cpus)["instances"]
    assert rows[0][f"{SMALL_NAME}/instances"] == str(sized)  # trial 0: the sizing rule's answer on this machine

    chosen = tuning.models[SMALL_NAME]
    log = tmp_path / "serve.log"
    process, (_, grpc_port, _) = start_serve(repository, log)
    try:
        wait_ready(f"127.0.0.1:{grpc_port}", process, log, READY_TIMEOUT_S)
        text = log.read_text()
        assert f"tuning: {repository / TUNING_FILE} (measured on " in text
        assert re.search(rf"\n  {SMALL_NAME} +instances {chosen.instances} \(tuned\), ", text), text[-2000:]
        assert len(model_stubs(triton_pid(log), SMALL_NAME)) == chosen.instances
    finally:
        stop_process(process)


@pytest.mark.timeout(300)
def test_ctrl_c_keeps_what_was_measured(tmp_path: Path) -> None:
    repository = build_small_repository(tmp_path / "model_repository", "fused")
    report = tmp_path / "report"
    errors = tmp_path / "tune.err"
    with open(errors, "wb") as stderr:
        process = subprocess.Popen(
            tune_argv(repository, report, 30), stdout=subprocess.PIPE, stderr=stderr, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 240
        while "trial 0:" not in errors.read_text(errors="replace"):  # the progress bar names each trial measured
            assert process.poll() is None and time.monotonic() < deadline, errors.read_text()[-2000:]
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole foreground group
        stdout, _ = process.communicate(timeout=120)
    finally:
        stop_process(process)
    assert process.returncode == 0, errors.read_text()[-3000:]
    assert "interrupted: keeping what was measured" in stdout.decode()
    tuning = Tuning.read(repository / TUNING_FILE)
    rows = check_report(report, tuning, {"search"})
    assert {row["phase"] for row in rows} == {"search"}
