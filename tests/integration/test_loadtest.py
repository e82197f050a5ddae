"""The locust load test, headless, against the real server: a CI-sized run passes its SLO, an impossible SLO fails.

Each run is a real `locust` process (as a person would start it), bounded by --run-time and a subprocess timeout.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from tests.helpers.serving import stop_process

pytestmark = pytest.mark.integration

LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"
# small frames keep the CPU server's decode cost low on a 2-core CI machine; every format still appears
CI_MIX = "320x240:jpeg:4,640x480:jpeg:1,320x240:png:1,320x240:webp:1,320x240:bmp:1"


def run_locust(triton_server, workdir: Path, *args: str, timeout: float = 90) -> tuple[int, str, dict]:
    prefix = workdir / "run"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--host",
        triton_server.grpc_url,
        "--model",
        triton_server.model_name,
        "--image-mix",
        CI_MIX,
        "--csv",
        str(prefix),
        "--html",
        str(workdir / "report.html"),
        "--slo-report",
        str(workdir / "slo.json"),
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    output = done.stdout + done.stderr
    report = json.loads((workdir / "slo.json").read_text()) if (workdir / "slo.json").exists() else {}
    return done.returncode, output, report


def test_ci_sized_run_meets_its_slo_with_zero_failures(triton_server, tmp_path: Path) -> None:
    users = 3
    code, output, report = run_locust(
        triton_server,
        tmp_path,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        "20s",
        "--load-shape",
        "steady",
        "--slo-max-failure-ratio",
        "0",
        "--slo-p95-ms",
        "20000",
        "--slo-min-fps",
        "0.5",
    )
    assert code == 0, output[-3000:]
    measured = report["measured"]
    assert report["passed"] and measured["failures"] == 0 and measured["requests"] >= 10
    print(
        f"\nlocust CI run: {measured['fps']:.1f} FPS, p50 {measured['p50_ms']:.0f} ms, "
        f"p95 {measured['p95_ms']:.0f} ms, p99 {measured['p99_ms']:.0f} ms, {measured['requests']} requests"
    )
    with open(tmp_path / "run_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    # the last CSV is written as the users stop: the SLO check, later, also counts calls in flight then (<= 1 a user)
    assert 0 <= measured["requests"] - int(rows["Aggregated"]["Request Count"]) <= users
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    kinds = {name for name in rows if name.startswith("detect ")}
    assert len(kinds) >= 3, kinds  # the mix really mixes sizes and formats
    assert "video" not in report and not [n for n in rows if n.startswith("video ")]  # named only: YoloVideoUser
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_impossible_slo_exits_non_zero_and_ramp_shape_steps_users(triton_server, tmp_path: Path) -> None:
    code, output, report = run_locust(
        triton_server,
        tmp_path,
        "-u",
        "2",
        "-r",
        "5",
        "-t",
        "6s",
        "--load-shape",
        "ramp",
        "--ramp-steps",
        "2",
        "--slo-p95-ms",
        "0.001",
    )
    assert code == 1, output[-3000:]
    assert not report["passed"]
    assert any(v.startswith("p95 latency") for v in report["violations"]), report
    assert report["measured"]["failures"] == 0
    with open(tmp_path / "run_stats_history.csv", newline="") as handle:
        users = [int(row["User Count"]) for row in csv.DictReader(handle)]
    assert 1 in users and 2 in users and users.index(1) < users.index(2), users


def test_video_users_play_at_their_frame_rate_and_count_late_and_dropped_frames(triton_server, tmp_path: Path) -> None:
    # 2 cameras at 100 fps, one request in flight each: the CPU server answers far slower than a frame each 10 ms,
    # so most frames are dropped; locust runs only the class named last
    users, fps = 2, 100
    code, output, report = run_locust(
        triton_server, tmp_path, "-u", str(users), "-r", str(users), "-t", "6s", "--video-fps", str(fps),
        "--video-size", "320x240", "--video-frames", "8", "--video-window", "1", "YoloVideoUser",
    )  # fmt: skip
    assert code == 0, output[-3000:]
    video, measured = report["video"], report["measured"]
    assert video["frames"] == video["sent"] + video["late"] + video["dropped"], video
    assert video["dropped"] > 0 and 0 < video["dropped_ratio"] < 1 and 0 <= video["late_ratio"] < 1, video
    # ~6 s of 2 streams at 100 fps were due (spawning and stopping take a little of the 6 s)
    assert users * fps * 2 <= video["frames"] <= users * fps * 7, video
    # every frame not dropped was sent: one request each (a request cut off by the stop is never reported)
    assert 0 <= video["sent"] + video["late"] - measured["requests"] <= users, (video, measured)
    assert measured["failures"] == 0 and measured["requests"] >= 4, measured
    assert f"video: {video['frames']} frames due" in output
    print(f"\nlocust video run: {video}, {measured['requests']} requests, p50 {measured['p50_ms']:.0f} ms")
    with open(tmp_path / "run_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert int(rows[f"video 320x240@{fps}fps"]["Request Count"]) >= 4, rows.keys()
    assert not [name for name in rows if name.startswith("detect ")], rows.keys()  # no image user ran


def test_bad_image_mix_is_refused_before_any_request(triton_server, tmp_path: Path) -> None:
    code, output, _ = run_locust(
        triton_server, tmp_path, "-u", "1", "-t", "3s", "--image-mix", "640x480:gif:1", timeout=60
    )
    assert code != 0
    assert "format must be one of" in output


def test_distributed_master_and_worker_aggregate_and_check_the_slo(triton_server, tmp_path: Path) -> None:
    from yolo_server.launcher.ports import free_ports

    [master_port] = free_ports(1)
    worker = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", "127.0.0.1",
         "--master-port", str(master_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    try:
        code, output, report = run_locust(
            triton_server,
            tmp_path,
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(master_port),
            "--expect-workers",
            "1",
            "--expect-workers-max-wait",
            "30",
            "-u",
            "2",
            "-r",
            "2",
            "-t",
            "8s",
            "--slo-max-failure-ratio",
            "0",
        )
        worker_output, _ = worker.communicate(timeout=60)
    finally:
        stop_process(worker, timeout_s=10)
    assert code == 0, output[-3000:]
    assert report["passed"] and report["measured"]["requests"] >= 4, report
    assert worker.returncode == 0, worker_output[-3000:]
