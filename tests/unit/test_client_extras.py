"""Client extras: metrics (lazy prometheus), drawing, a light `import yolo_client`, the CLI's argument handling."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from yolo_client import Detection, InvalidInputError, RetryPolicy, UnavailableError, YoloClient, draw_detections
from yolo_client.metrics import ClientMetrics, outcome_of


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_import_is_light() -> None:
    code = "import sys, yolo_client; bad = [m for m in ('grpc', 'tritonclient', 'cv2', 'PIL', 'prometheus_client') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_metrics_count_outcomes_and_time_calls() -> None:
    import prometheus_client
    registry = prometheus_client.CollectorRegistry()
    metrics = ClientMetrics.shared(registry)
    assert ClientMetrics.shared(registry) is metrics  # one set of families per registry
    with YoloClient(_dead_url(), "m", timeout=2, metrics=metrics, retries=RetryPolicy(max_attempts=2, initial_backoff=0)) as c:
        with pytest.raises(UnavailableError):
            c.detect(b"\x89PNG\r\n\x1a\n")  # model info cannot be read: unavailable
    value = registry.get_sample_value
    assert value("yolo_client_requests_total", {"model": "m", "transport": "bytes", "outcome": "unavailable"}) == 1
    assert value("yolo_client_request_duration_seconds_count", {"model": "m", "transport": "bytes"}) == 1
    assert value("yolo_client_retries_total", {"model": "m", "status": "UNAVAILABLE"}) == 1
    assert outcome_of(InvalidInputError("x")) == "invalid_input" and outcome_of(None) == "ok"


def test_metrics_name_the_extra_when_prometheus_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"yolo-client\[metrics\]"):
        ClientMetrics()


def test_draw_detections_copies_and_marks_the_boxes() -> None:
    image = np.full((60, 80, 3), 30, np.uint8)
    out = draw_detections(image, [Detection((10.0, 20.0, 50.0, 55.0), 0.9, 3, "car")])
    assert out.shape == image.shape and (image == 30).all()  # the input is untouched
    assert (out[40, 10] != 30).any() and (out[40, 30] == 30).all()  # the edge is drawn, the inside is not
    with pytest.raises(InvalidInputError):
        draw_detections(np.zeros((4, 4), np.uint8), [])


def test_cli_reports_errors_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from yolo_client.cli import main

    code = main(["detect", "/nonexistent.jpg", "--json", "--url", _dead_url(), "--timeout", "2"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err + captured.out
    report = json.loads(captured.out)
    assert report[0]["image"] == "/nonexistent.jpg" and report[0]["error_type"] == "InvalidInputError"
    assert main(["health", "--url", _dead_url(), "--timeout", "1"]) == 1
    assert "NOT READY" in capsys.readouterr().out


def test_close_closes_each_channel_once_even_when_repeated_and_collected() -> None:
    import gc

    client = YoloClient([_dead_url(), _dead_url()], "m", health_check=None)
    channels = [conn._channel for conn in client._conns.values()]
    closes: list[object] = []
    for channel in channels:  # count real closes of the real grpc channels
        original = channel.close
        channel.close = lambda original=original, channel=channel: (closes.append(channel), original())[1]
    client.close()
    client.close()  # the context manager's exit after an explicit close, say
    del client
    gc.collect()  # tritonclient's __del__ calls close() again: it must not reach the channel
    assert sorted(map(id, closes)) == sorted(map(id, channels))
