"""The README's command lines, run as a newcomer runs them, against `yolo-server serve` with its defaults.

Every line of the README's ```bash blocks that starts with ``yolo-client``, ``yolo-eval`` or ``yolo-train scenes``
runs in order, in a scratch folder, through ``sh`` with the venv's scripts first on PATH and ``YOLO_CLIENT_URL``
naming the server (no admin key anywhere). Two edits keep the run bounded and on loopback: the test server's
address replaces the README's ``127.0.0.1:8001``, and ``--duration N`` becomes :data:`BENCH_SECONDS`.

The server is the default model built as ``make build`` builds it (its cfg, weights and names, an INT8 IR from
training-distribution scenes of the training seed; fewer of them here), served with every ``serve`` default but
the ports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest

from tests.helpers.deploy import makefile_var
from tests.helpers.paths import ROOT
from tests.helpers.serving import serving
from yolo_client.cli import ADMIN_KEY_VARIABLE, KEY_NOTE
from yolo_client.contract import IMAGE
from yolo_server.repository.spec import model_base_name

pytestmark = pytest.mark.integration

README = ROOT / "README.md"
README_URL = "127.0.0.1:8001"  # the address the README's lines use: `make serve`'s
COMMAND = re.compile(r"^(yolo-client |yolo-eval |yolo-train scenes )")
BENCH_SECONDS = 3
CALIBRATION_COUNT = 64  # the least a build takes (make build: 300)
LINE_TIMEOUT_S = 180


@dataclass(frozen=True)
class DefaultServer:
    grpc_url: str
    model: str
    class_names: tuple[str, ...]


def readme_lines() -> list[str]:
    """The runnable lines of the README's bash blocks, in order, without their trailing comments."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    lines = [line.split(" # ")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if COMMAND.match(line)]


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DefaultServer]:
    from yolo_server.cli import main as cli_main
    from yolo_server.training.scenes import write_dataset

    workdir = tmp_path_factory.mktemp("readme")
    cfg, weights, names = (ROOT / makefile_var(name) for name in ("DEFAULT_CFG", "DEFAULT_WEIGHTS", "DEFAULT_NAMES"))
    calibration = write_dataset(
        workdir / "calibration", CALIBRATION_COUNT, int(makefile_var("TRAIN_SEED")), progress=False
    ).parent
    repository = workdir / "model_repository"
    built = cli_main(
        ["build", "--cfg", str(cfg), "--weights", str(weights), "--names", str(names),
         "--size", makefile_var("SIZE"), "--target", makefile_var("TARGET"), "--output", str(repository),
         "--calibration-images", str(calibration)]
    )  # fmt: skip
    assert built == 0, "yolo-server build failed"
    class_names = tuple(line.strip() for line in names.read_text().splitlines() if line.strip())
    with serving(repository, workdir) as grpc_url:
        yield DefaultServer(grpc_url, model_base_name(cfg), class_names)


def test_the_readme_shows_each_command_a_newcomer_needs() -> None:
    lines = readme_lines()
    kinds = {
        "detect --json": lambda line: line.startswith("yolo-client detect") and "--json" in line,
        "detect --draw": lambda line: line.startswith("yolo-client detect") and "--draw" in line,
        "detect a video": lambda line: line.startswith("yolo-client detect") and line.split()[2].endswith(".mp4"),
        "health": lambda line: line.startswith("yolo-client health"),
        "models": lambda line: line.startswith("yolo-client models"),
        "bench": lambda line: line.startswith("yolo-client bench") and "--duration" in line,
        "yolo-eval --server": lambda line: line.startswith("yolo-eval") and f"--server {README_URL}" in line,
    }
    missing = [kind for kind, shown in kinds.items() if not any(shown(line) for line in lines)]
    assert not missing, f"README.md's bash blocks lack {missing}: {lines}"


def test_every_readme_command_works_against_the_default_server(default_server: DefaultServer, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "YOLO_CLIENT_URL": default_server.grpc_url}  # fmt: skip
    env.pop(ADMIN_KEY_VARIABLE, None)
    env.pop("YOLO_CLIENT_MODEL", None)
    for readme_line in readme_lines():
        line = readme_line.replace(README_URL, default_server.grpc_url)
        line = re.sub(r"--duration \d+(\.\d+)?", f"--duration {BENCH_SECONDS}", line)
        result = subprocess.run(
            ["sh", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LINE_TIMEOUT_S
        )
        assert result.returncode == 0, f"{readme_line!r} exited {result.returncode}:\n{result.stderr[-3000:]}"
        check_output(readme_line, result.stdout, tmp_path, default_server)


def check_output(line: str, out: str, cwd: Path, server: DefaultServer) -> None:
    """What each command must print (or write) to be of use, beyond exiting 0."""
    words = line.split()
    if line.startswith("yolo-train scenes"):
        annotations = json.loads((cwd / words[2] / "annotations.json").read_text())
        assert annotations["images"] and annotations["annotations"], line
        if "--video" in words:  # and the same scenes as the frames of a video
            capture = cv2.VideoCapture(str(cwd / words[words.index("--video") + 1]))
            assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == int(words[words.index("--count") + 1]), line
            capture.release()
    elif line.startswith("yolo-client health"):
        assert out.strip().endswith("(live=True ready=True model_ready=True)") and ": OK" in out, out
    elif line.startswith("yolo-client models"):
        assert out.startswith(f"{server.model}: ") and KEY_NOTE in out, out
        assert f"classes ({len(server.class_names)}): {', '.join(server.class_names)}" in out, out
        assert re.search(r"score threshold [\d.]+, NMS threshold [\d.]+", out) and "max batch " in out, out
        assert f"inputs {IMAGE} STRING [1]" in out, out
    elif line.startswith("yolo-client detect") and words[2].endswith(".mp4"):  # a video: a JSON line a frame
        frames = [json.loads(row) for row in out.splitlines()]
        assert [frame["index"] for frame in frames] == list(range(len(frames))) and len(frames) > 1, out[:2000]
        assert any(frame["detections"] for frame in frames), out[:2000]
        if "--track" in words:  # the first frame's detections start tracks at once
            assert any("track_id" in detection for detection in frames[0]["detections"]), out[:2000]
        if "--draw" in words:
            source, drawn = (cv2.VideoCapture(str(cwd / name)) for name in (words[2], words[words.index("--draw") + 1]))
            assert drawn.get(cv2.CAP_PROP_FRAME_COUNT) == source.get(cv2.CAP_PROP_FRAME_COUNT) == len(frames), line
            source.release()
            drawn.release()
    elif line.startswith("yolo-client detect") and "--json" in words:
        [report] = json.loads(out)
        labels = {detection["label"] for detection in report["detections"]}
        assert labels and labels <= set(server.class_names), report  # the trained demo finds its shapes
    elif line.startswith("yolo-client detect") and "--draw" in words:
        image, drawn = cv2.imread(str(cwd / words[2])), cv2.imread(str(cwd / words[words.index("--draw") + 1]))
        assert drawn is not None and drawn.shape == image.shape and (drawn != image).any(), line
        assert re.search(r": [1-9]\d* detections?", out), out
    elif line.startswith("yolo-client bench"):
        match = re.search(r"^images/s\s+([\d.]+)", out, flags=re.MULTILINE)
        assert match and float(match.group(1)) > 0 and re.search(r"^errors\s+none$", out, flags=re.MULTILINE), out
    elif line.startswith("yolo-eval"):
        match = re.search(r"^mAP\s+([\d.]+)\s+([\d.]+)$", out, flags=re.MULTILINE)
        assert match and float(match.group(1)) > 0.5, out  # the demo scores 0.95 at darknet's 0.005 threshold
    else:
        pytest.fail(f"no check for the README line {line!r}: add one here")


def test_the_check_refuses_a_command_that_printed_nothing_of_use(tmp_path: Path) -> None:
    server = DefaultServer("127.0.0.1:1", "demo", ("circle",))
    with pytest.raises(AssertionError):
        check_output("yolo-client models", "demo: cpu target\n", tmp_path, server)
    with pytest.raises(AssertionError):
        check_output("yolo-client health", "127.0.0.1:1: NOT READY (refused)\n", tmp_path, server)
