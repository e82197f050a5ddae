"""``yolo-client bench --video FILE --streams N`` against the session's real server: per-stream frames/s, latency
percentiles, drops and the 65 FPS verdict, as fast as served and paced as a live camera.

The clip is written here with OpenCV (MJPG in .avi), small frames at 25 fps, as tests/integration/test_video.py does.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import cv2
import pytest

from tests.helpers.images import scene
from yolo_client.cli import main as cli_main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FRAMES, FPS, WIDTH, HEIGHT = 12, 25.0, 320, 240


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video_bench") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(scene(HEIGHT, WIDTH, seed=300 + i))
    writer.release()
    return path


def bench(triton_server, *args: str) -> list[str]:
    common = ["--url", triton_server.grpc_url, "--model", triton_server.model_name]
    return ["bench", *common, *args]


def no_stream_threads_left() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("yolo-client")]


def test_two_looping_streams_for_a_duration_report_each_stream_and_the_verdict(
    triton_server, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--video", str(clip), "--streams", "2", "--duration", "3", "--concurrency", "2")
    code = cli_main(bench(triton_server, *args))
    out, err = capsys.readouterr()
    print(f"\n{out}")
    assert code == 0, out + err
    assert "2 streams of" in err and "3 s (looping the file)" in err
    lines = out.splitlines()
    for k in (0, 1):
        line = next(line for line in lines if line.startswith(f"stream {k} "))
        match = re.search(r"([\d.]+) frames/s  \((\d+) frames in ([\d.]+) s\)", line)
        assert match, line
        assert int(match[2]) >= 1  # (looping past the clip's end: tests/unit/test_client_video_bench.py)
        assert 2.9 <= float(match[3]) < 10 and "dropped 0" in line and "errors none" in line
        assert re.search(r"latency ms p50 [\d.]+  p95 [\d.]+  p99 [\d.]+", line), line
    assert re.search(r"^frames/s +[\d.]+ +\(\d+ frames in [\d.]+ s, 2 streams\)$", out, re.MULTILINE), out
    assert re.search(r"^latency ms +p50 [\d.]+  p95 [\d.]+  p99 [\d.]+$", out, re.MULTILINE), out
    assert re.search(r"^dropped +0 frames \(0\.0%\)$", out, re.MULTILINE), out
    assert re.search(r"^verdict +per stream (MEETS|BELOW) the 65 FPS target", out, re.MULTILINE), out
    assert re.search(r"^verdict +in total (MEETS|BELOW) the 65 FPS target: [\d.]+ frames/s$", out, re.MULTILINE), out
    assert no_stream_threads_left()


def test_live_streams_play_the_file_once_at_its_frame_rate_as_json(
    triton_server, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(bench(triton_server, "--video", str(clip), "--streams", "2", "--live", "--json"))
    out, err = capsys.readouterr()
    assert code == 0, out + err
    report = json.loads(out)
    assert len(report["streams"]) == 2
    for stream in report["streams"]:
        assert stream["frames"] + stream["dropped"] == FRAMES and stream["frames"] >= 1
        # paced at 25 fps: never faster than the camera (the clip lasts 12 / 25 = 0.48 s)
        assert stream["seconds"] >= (FRAMES - 1) / FPS - 0.05 and stream["frames_per_second"] <= FPS * 1.3
        assert set(stream["latency_ms"]) == {"p50", "p95", "p99"} and stream["errors"] == {}
    total = report["total"]
    assert total["frames"] == sum(s["frames"] for s in report["streams"])
    assert total["dropped"] == sum(s["dropped"] for s in report["streams"])
    assert total["meets_target"] is False and report["meets_target_per_stream"] is False  # 25 fps < 65
    assert no_stream_threads_left()
