"""The shipped demo detector (models/shapes) through a real server: COCO mAP and `make demo`'s picture.

One server for this module, built from the shipped cfg/weights/names at 416 with
darknet's mAP score threshold (0.005), on free loopback ports. Held-out scenes use
seeds the training never saw (training uses seed 0).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.paths import ROOT
from tests.helpers.serving import start_serve, stop_process, wait_ready

pytestmark = pytest.mark.integration

CFG = ROOT / "models" / "shapes" / "yolov4-tiny-shapes.cfg"
WEIGHTS = ROOT / "models" / "shapes" / "yolov4-tiny-shapes.weights"
NAMES = ROOT / "models" / "shapes" / "shapes.names"
MODEL = "yolov4_tiny_shapes"
SIZE = 416
EVAL_SEED, EVAL_COUNT = 2027, 40
DEMO_SEED = 4267
MIN_MAP50 = 0.85


@dataclass(frozen=True)
class DemoServer:
    grpc_url: str
    host: str
    grpc_port: int


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    from yolo_server.cli import main as cli_main

    workdir = tmp_path_factory.mktemp("demo")
    repository = workdir / "model_repository"
    built = cli_main(
        ["build", "--cfg", str(CFG), "--weights", str(WEIGHTS), "--names", str(NAMES), "--size", str(SIZE),
         "--target", "cpu", "--score-threshold", "0.005", "--max-batch-size", "8", "--output", str(repository)]
    )  # fmt: skip
    assert built == 0, "yolo-server build failed"
    log = workdir / "serve.log"
    process, (_, grpc_port, _) = start_serve(repository, log)
    try:
        grpc_url = f"127.0.0.1:{grpc_port}"
        wait_ready(grpc_url, process, log, 240.0)
        yield DemoServer(grpc_url, "127.0.0.1", grpc_port)
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from yolo_server.training.scenes import write_dataset

    return write_dataset(tmp_path_factory.mktemp("heldout"), EVAL_COUNT, EVAL_SEED, progress=False)


def test_shipped_model_map_through_the_server_matches_in_process(demo_server: DemoServer, held_out: Path) -> None:
    from yolo_client import YoloClient
    from yolo_server.evaluation import CocoDataset, coco_evaluate, detect_inprocess, detect_server
    from yolo_server.ops.config import postprocess_config_for
    from yolo_server.pipeline import Detector

    dataset = CocoDataset.load(held_out)
    with YoloClient(demo_server.grpc_url, model=MODEL) as client:
        assert client.model_info().score_threshold == pytest.approx(0.005)
        served = coco_evaluate(dataset, detect_server(client, dataset, progress=False))
    assert served.map50 > MIN_MAP50, served
    detector = Detector(CFG, WEIGHTS, NAMES, input_size=SIZE)
    detector.config = postprocess_config_for(detector.spec, score_threshold=0.005)
    local = coco_evaluate(dataset, detect_inprocess(detector, dataset, progress=False))
    assert abs(local.map50 - served.map50) < 0.005 and abs(local.map50_95 - served.map50_95) < 0.005


def _changed(rendered: np.ndarray, original: np.ndarray) -> np.ndarray:
    return np.abs(rendered.astype(np.int16) - original.astype(np.int16)).max(-1) > 40


def _side_drawn(changed: np.ndarray, box: np.ndarray, tolerance: int = 4) -> list[float]:
    """Per side of a ground-truth box: the fraction of its length with a drawn pixel within ``tolerance``."""
    height, width = changed.shape
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    fractions = []
    for horizontal, at, lo, hi in ((True, y1, x1, x2), (True, y2, x1, x2), (False, x1, y1, y2), (False, x2, y1, y2)):
        if horizontal:
            band = changed[max(at - tolerance, 0) : min(at + tolerance + 1, height), max(lo, 0) : min(hi, width)]
            fractions.append(float(band.any(0).mean()))
        else:
            band = changed[max(lo, 0) : min(hi, height), max(at - tolerance, 0) : min(at + tolerance + 1, width)]
            fractions.append(float(band.any(1).mean()))
    return fractions


def test_make_demo_draws_boxes_on_the_generated_shapes(demo_server: DemoServer, tmp_path: Path) -> None:
    from yolo_server.training.scenes import decode_jpeg, generate_scene

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        ["make", "-s", "demo", f"BIN={bin_dir}", f"HOST={demo_server.host}", f"GRPC_PORT={demo_server.grpc_port}",
         f"MODEL={MODEL}", f"DEMO_DIR={tmp_path}", f"DEMO_SEED={DEMO_SEED}"],
        cwd=ROOT, env=env, check=True, timeout=120,
    )  # fmt: skip
    picture = tmp_path / "demo.png"
    assert picture.is_file()
    rendered = cv2.cvtColor(cv2.imread(str(picture)), cv2.COLOR_BGR2RGB)
    original = decode_jpeg((tmp_path / "images" / f"{DEMO_SEED}_000000.jpg").read_bytes())
    scene = generate_scene(DEMO_SEED, 0)
    assert rendered.shape == original.shape == scene.image.shape
    changed = _changed(rendered, original)
    assert changed.any(), "nothing was drawn"
    for box in scene.boxes:
        sides = _side_drawn(changed, box)
        assert min(sides) > 0.6, f"no box drawn on the shape at {box.tolist()}: {sides}"
