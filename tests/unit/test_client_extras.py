"""Client extras: metrics (lazy prometheus), drawing, a light `import yolo_client`, the CLI's argument handling."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.clients import KINDS, open_client
from tests.helpers.clients import dead_url as _dead_url
from yolo_client import (
    AsyncYoloClient,
    ClientOptions,
    Detection,
    InvalidInputError,
    RetryPolicy,
    TlsConfig,
    UnavailableError,
    YoloClient,
    draw_detections,
)
from yolo_client.metrics import ClientMetrics, outcome_of


def test_import_is_light() -> None:
    code = "import sys, yolo_client; bad = [m for m in ('grpc', 'tritonclient', 'cv2', 'PIL', 'prometheus_client') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attempts", [1, 3])
def test_metrics_count_outcomes_and_time_calls(kind: str, attempts: int) -> None:
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    metrics = ClientMetrics.shared(registry)
    assert ClientMetrics.shared(registry) is metrics  # one set of families per registry
    retries = RetryPolicy(max_attempts=attempts, initial_backoff=0)
    with open_client(kind, _dead_url(), "m", timeout=2, metrics=metrics, retries=retries) as c:
        with pytest.raises(UnavailableError):
            c.detect(b"\x89PNG\r\n\x1a\n")  # model info cannot be read: unavailable
        with pytest.raises(InvalidInputError):
            c.detect(b"")  # rejected before any request, and counted
    value = registry.get_sample_value
    assert value("yolo_client_requests_total", {"model": "m", "transport": "bytes", "outcome": "unavailable"}) == 1
    assert value("yolo_client_requests_total", {"model": "m", "transport": "bytes", "outcome": "invalid_input"}) == 1
    assert value("yolo_client_request_duration_seconds_count", {"model": "m", "transport": "bytes"}) == 2
    assert value("yolo_client_retries_total", {"model": "m", "status": "UNAVAILABLE"}) == (attempts - 1 or None)
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


def test_close_closes_each_channel_once_even_when_repeated_and_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import tritonclient.grpc

    closes: list[int] = []

    class CountingClient(tritonclient.grpc.InferenceServerClient):
        """tritonclient's client, counting the calls that reach its real close (which closes the channel)."""

        def close(self) -> None:
            closes.append(id(self))
            super().close()

    monkeypatch.setattr(tritonclient.grpc, "InferenceServerClient", CountingClient)
    client = YoloClient([_dead_url(), _dead_url()], "m", health_check=None)
    client.close()
    client.close()  # the context manager's exit after an explicit close, say
    del client
    gc.collect()  # tritonclient's __del__ calls close() again: it must not reach the channel
    assert len(closes) == 2 and len(set(closes)) == 2


@pytest.mark.parametrize("cls", [YoloClient, AsyncYoloClient])
def test_both_clients_take_the_same_arguments_written_once_in_client_options(cls: type) -> None:
    params = inspect.signature(cls).parameters
    fields = inspect.signature(ClientOptions).parameters
    assert list(params) == [*fields, "options"]
    assert all(params[name].default == field.default for name, field in fields.items())
    assert [p for p in params if params[p].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD] == ["url_or_urls", "model"]


@pytest.mark.parametrize("kind", KINDS)
def test_keywords_and_options_build_the_same_client(kind: str) -> None:
    url, tls = _dead_url(), TlsConfig()
    retries = RetryPolicy.disabled()
    with open_client(kind, url, model="m", timeout=3, retries=retries, tls=tls) as by_keywords:
        expected = ClientOptions(url, "m", timeout=3, retries=retries, tls=tls)
        assert by_keywords.options == expected
    with open_client(kind, options=expected) as by_options:
        assert by_options.options is expected
    with open_client(kind, "other:1", options=expected, timeout=1) as overridden:  # arguments win over options
        assert overridden.options == ClientOptions("other:1", "m", timeout=1, retries=retries, tls=tls)
    assert ClientOptions(iter([url])).url_or_urls == (url,)  # an iterable of URLs is read once, kept as a tuple
    with open_client(kind) as default:
        assert default.options == ClientOptions() and default.urls == ("localhost:8001",)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("a:1", "m", "bytes"), {}, "positional"),
        (("a:1",), {"url_or_urls": "b:1"}, "multiple values"),
        ((), {"retry": RetryPolicy()}, "unexpected keyword argument 'retry'"),
        ((), {"options": {"timeout": 1}}, "must be a ClientOptions"),
    ],
)
def test_wrong_constructor_arguments_are_type_errors(kind: str, args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        open_client(kind, *args, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model": ""}, "non-empty name"),
        ({"timeout": 0}, "positive"),
        ({"timeout": True}, "positive"),
        ({"max_in_flight": 0}, ">= 1"),
        ({"url_or_urls": []}, "at least one server URL"),
        ({"url_or_urls": "http://h:8000"}, "URL"),
    ],
)
def test_bad_options_are_invalid_input_in_both_clients(kind: str, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        open_client(kind, **kwargs)
    with pytest.raises(InvalidInputError, match=message):
        open_client(kind, options=ClientOptions(**kwargs))


def test_run_blocking_runs_a_coroutine_that_never_suspends_and_refuses_one_that_does() -> None:
    import asyncio

    from yolo_client._base import run_blocking

    async def blocking(value: int) -> int:
        return value + 1

    async def failing() -> None:
        raise ValueError("raised inside")

    assert run_blocking(blocking(1)) == 2
    with pytest.raises(ValueError, match="raised inside"):
        run_blocking(failing())
    with pytest.raises(RuntimeError, match="suspended"):
        run_blocking(asyncio.sleep(0))  # an event-loop await: the sync client must never reach one
