"""``wait_ready``'s timeout message and ``serve``'s single stop, without a tritonserver (fakes only)."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import pytest

from yolo_server.launcher import launch, process
from yolo_server.launcher.installation import TritonError, TritonInstallation
from yolo_server.launcher.options import ServeOptions
from yolo_server.launcher.process import TritonServer
from yolo_server.launcher.staging import plan_serving
from yolo_server.launcher.supervise import Supervision


class NeverExits:
    """A started tritonserver that prints nothing and never exits (a :class:`process.ServerProcess`)."""

    pid = 999999

    def __init__(self) -> None:
        self.stdout = io.BytesIO()

    def poll(self) -> None:
        return None

    def wait(self, timeout: float | None = None) -> int:
        raise AssertionError("the test never waits for the process")

    def send_signal(self, sig: int) -> None:
        raise AssertionError("the test never signals the process")

    def kill(self) -> None:
        raise AssertionError("the test never kills the process")


def test_wait_ready_without_an_argument_names_the_options_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "server_ready", lambda url, timeout_s: False)
    server = TritonServer(
        ServeOptions(tmp_path, ready_timeout_s=0.2, front=False),
        TritonInstallation(Path("/bin/true")),
        spawn=lambda argv, env: NeverExits(),
    )
    server.start(stream=None)
    started = time.monotonic()
    with pytest.raises(TritonError) as caught:
        server.wait_ready()
    assert time.monotonic() - started < 5
    assert "not ready after 0.2s" in str(caught.value) and "None" not in str(caught.value)


class FakeServer:
    stops = 0

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.plan = plan_serving(options.repository)

    def start(self, stream: object = None) -> None:
        pass

    def signal(self, signum: int) -> None:
        pass

    def wait_ready(self, timeout_s: float | None = None, fault: object = None) -> None:
        raise TritonError("tritonserver exited with code 1")

    def stop(self) -> int:
        FakeServer.stops += 1
        return 1


def test_serve_stops_the_server_exactly_once_when_it_never_gets_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch, "TritonServer", FakeServer)
    assert launch.serve(ServeOptions(tmp_path, front=False)) == 1
    assert FakeServer.stops == 1


class Recorded:
    """A fake process of a :class:`launch.Serving` that writes each call, named, into ``calls``."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def __getattr__(self, method: str) -> object:
        return lambda *args, **kwargs: self.calls.append(f"{self.name}.{method}")


def test_serving_starts_the_front_first_asks_it_to_quit_first_and_stops_it_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(launch, "TritonServer", lambda options: Recorded("triton", calls))
    monkeypatch.setattr(launch.Front, "before", lambda server: Recorded("front", calls))
    with launch.Serving(ServeOptions(tmp_path)) as serving:
        serving.wait_ready()
    assert calls == ["front.start", "triton.start", "triton.wait_ready", "front.wait_ready", "front.quit",
                     "triton.stop", "front.stop"]  # fmt: skip


class Exited:
    """A serving whose tritonserver has exited with ``code`` (negative: killed by that signal), unsupervised."""

    def __init__(self, code: int) -> None:
        self.server = self
        self.pid, self.code = None, code

    def poll(self) -> int:
        return self.code

    def front_fault(self) -> None:
        return None


def test_a_tritonserver_killed_by_a_signal_nobody_sent_is_a_fault() -> None:
    supervision = Supervision()
    assert launch._supervise(Exited(-signal.SIGABRT), supervision, []) == "tritonserver was killed by SIGABRT"  # type: ignore[arg-type]
    assert launch._supervise(Exited(-signal.SIGTERM), supervision, [signal.SIGTERM]) is None  # type: ignore[arg-type]
    assert launch._supervise(Exited(1), supervision, []) is None  # type: ignore[arg-type]
