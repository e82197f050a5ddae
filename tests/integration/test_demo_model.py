"""The shipped demo detector (models/shapes) through a real server: COCO mAP, INT8, and `make demo`'s picture.

One server for this module, built from the shipped cfg/weights/names at 416 with
darknet's mAP score threshold (0.005), with an INT8 IR calibrated on training-distribution
scenes (seed 0) and gated by agreement with fp32, on free loopback ports. Held-out scenes
use seeds the training and calibration never saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.darknet_files import DEMO_CFG, DEMO_NAMES, DEMO_WEIGHTS
from tests.helpers.paths import ROOT
from tests.helpers.serving import serving
from yolo_client.contract import DEFAULT_MODEL

pytestmark = pytest.mark.integration

CFG, WEIGHTS, NAMES = DEMO_CFG, DEMO_WEIGHTS, DEMO_NAMES
MODEL = DEFAULT_MODEL
SIZE = 416
EVAL_SEED, EVAL_COUNT = 2027, 40
DEMO_SEED = 4267
MIN_MAP50 = 0.85
CALIBRATION_SEED, CALIBRATION_COUNT = 0, 64
# the INT8 gate's limits against fp32 (yolo_server.evaluation.gate), here on 40 scenes
MAX_MAP50_DROP, MAX_MAP_DROP = 0.005, 0.01
# camera frames: held-out scenes seen at 3x their resolution (720 to 3000 pixels a side), which the server decodes at
# 1/2, 1/4 or 1/8 scale
HIGH_RESOLUTION_SEED, HIGH_RESOLUTION_COUNT, HIGH_RESOLUTION_SCALE = 2028, 24, 3.0
# a camera panning over one scene (PAN_SCENE, width x height) through a PAN_VIEW window, PAN_STEP pixels a frame
PAN_SCENE, PAN_VIEW, PAN_STEP, PAN_FRAMES = (720, 540), (560, 400), (4, 3), 24
PAN_MIN_SIDE = 40  # the shapes followed: smaller ones are the detector's misses, not the tracker's


@dataclass(frozen=True)
class DemoServer:
    grpc_url: str
    host: str
    grpc_port: int
    repository: Path


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    from yolo_server.cli import main as cli_main
    from yolo_server.training.scenes import write_dataset

    workdir = tmp_path_factory.mktemp("demo")
    repository = workdir / "model_repository"
    calibration = write_dataset(workdir / "calibration", CALIBRATION_COUNT, CALIBRATION_SEED, progress=False).parent
    built = cli_main(
        ["build", "--cfg", str(CFG), "--weights", str(WEIGHTS), "--names", str(NAMES), "--size", str(SIZE),
         "--target", "cpu", "--score-threshold", "0.005", "--max-batch-size", "8", "--output", str(repository),
         "--calibration-images", str(calibration), "--int8-gate-failure", "stop"]
    )  # fmt: skip
    assert built == 0, "yolo-server build failed"
    with serving(repository, workdir) as grpc_url:
        yield DemoServer(grpc_url, "127.0.0.1", int(grpc_url.rsplit(":", 1)[1]), repository)


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
    detector = Detector(CFG, WEIGHTS, NAMES, input_size=SIZE)  # torch fp32
    detector.config = postprocess_config_for(detector.spec, score_threshold=0.005)
    local = coco_evaluate(dataset, detect_inprocess(detector, dataset, progress=False))
    assert local.map50 - served.map50 <= MAX_MAP50_DROP and local.map50_95 - served.map50_95 <= MAX_MAP_DROP


def test_high_resolution_frames_keep_the_served_map(demo_server: DemoServer, tmp_path: Path) -> None:
    """Served (INT8, JPEGs decoded at a reduced scale) against the fp32 oracle decoding every pixel."""
    from yolo_client import YoloClient
    from yolo_server.evaluation import CocoDataset, coco_evaluate, detect_inprocess, detect_server
    from yolo_server.ops.config import postprocess_config_for
    from yolo_server.pipeline import Detector
    from yolo_server.training.scenes import write_dataset

    annotations = write_dataset(
        tmp_path, HIGH_RESOLUTION_COUNT, HIGH_RESOLUTION_SEED, progress=False, scale=HIGH_RESOLUTION_SCALE
    )
    dataset = CocoDataset.load(annotations)
    reduced = [item for item in dataset.images if max(item.width, item.height) >= 2 * SIZE]  # decoded at 1/2 or less
    assert len(reduced) >= len(dataset.images) * 3 // 4
    with YoloClient(demo_server.grpc_url, model=MODEL) as client:
        served = coco_evaluate(dataset, detect_server(client, dataset, progress=False))
    detector = Detector(CFG, WEIGHTS, NAMES, input_size=SIZE)
    detector.config = postprocess_config_for(detector.spec, score_threshold=0.005)
    local = coco_evaluate(dataset, detect_inprocess(detector, dataset, progress=False))
    print(
        f"{len(dataset.images)} high-resolution scenes: mAP@0.5 served {served.map50:.4f}, fp32 full decode "
        f"{local.map50:.4f}; mAP@[.5:.95] served {served.map50_95:.4f}, fp32 full decode {local.map50_95:.4f}"
    )
    assert served.map50 > MIN_MAP50, served
    assert local.map50 - served.map50 <= MAX_MAP50_DROP and local.map50_95 - served.map50_95 <= MAX_MAP_DROP


def test_served_int8_detections_are_the_detectors_on_the_same_ir(demo_server: DemoServer, held_out: Path) -> None:
    """The server picks the IR this CPU runs fastest (INT8 wherever AVX2 is), and serves exactly what a Detector
    running that IR finds."""
    import tritonclient.grpc as grpcclient

    from tests.helpers.triton_requests import assert_same_detections, bytes_inputs, split_result
    from yolo_client import YoloClient
    from yolo_server.evaluation import CocoDataset
    from yolo_server.ops.config import PostprocessConfig
    from yolo_server.pipeline import Detector
    from yolo_server.precision import CpuFeatures
    from yolo_server.repository.spec import INT8_ARTIFACT
    from yolo_server.triton.runtime import OpenVINORunner, served_ir

    artifact, precision = served_ir(demo_server.repository / MODEL / "1" / "model.xml", "auto", INT8_ARTIFACT)
    assert precision == ("int8" if CpuFeatures.of_this_machine().fast_int8 else "fp32")
    with YoloClient(demo_server.grpc_url, model=MODEL) as client:
        info = client.model_info()
    config = PostprocessConfig.from_model_info(info)
    detector = Detector(CFG, WEIGHTS, NAMES, SIZE, config=config, network=OpenVINORunner(artifact, precision))
    with grpcclient.InferenceServerClient(demo_server.grpc_url) as raw:
        for item in CocoDataset.load(held_out).images[:8]:
            data = item.path.read_bytes()
            [found] = split_result(raw.infer(MODEL, bytes_inputs([data])))
            [expected] = detector.detect_encoded([data])
            assert len(expected) > 0
            assert_same_detections(found, expected, max_detections=info.max_detections)


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
    from yolo_client.scenes import decode_jpeg, generate_scene

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


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    return float(inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter))


def test_video_tracks_follow_each_shape_of_a_panning_camera(
    demo_server: DemoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``detect_video(track=True)`` through the server: every shape in view all along keeps one track id, its own,
    and ``yolo-client detect --track --json`` writes the ids."""
    from yolo_client import YoloClient
    from yolo_client.cli import main as client_main
    from yolo_client.scenes import draw_scene

    (view_w, view_h), (step_x, step_y) = PAN_VIEW, PAN_STEP
    last_x, last_y = step_x * (PAN_FRAMES - 1), step_y * (PAN_FRAMES - 1)
    always_seen = np.array([last_x, last_y, view_w, view_h])  # in scene pixels: inside every window

    def in_view(boxes: np.ndarray) -> np.ndarray:  # and at least PAN_MIN_SIDE a side
        inside = (boxes[:, :2] >= always_seen[:2]).all(1) & (boxes[:, 2:] <= always_seen[2:]).all(1)
        return boxes[inside & (boxes[:, 2:] - boxes[:, :2] >= PAN_MIN_SIDE).all(1)]

    scenes = (draw_scene(np.random.default_rng(seed), *PAN_SCENE) for seed in range(100))
    scene = next(s for s in scenes if len(in_view(s.boxes)) >= 3)
    shapes = in_view(scene.boxes)
    offsets = [np.array([step_x * f, step_y * f] * 2) for f in range(PAN_FRAMES)]
    clip = tmp_path / "pan.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, PAN_VIEW)
    for f in range(PAN_FRAMES):
        x, y = offsets[f][:2]
        writer.write(np.ascontiguousarray(scene.image[y : y + view_h, x : x + view_w, ::-1]))
    writer.release()

    with YoloClient(demo_server.grpc_url, model=MODEL) as client:
        with client.detect_video(clip, track=True, score_threshold=0.5, max_in_flight=4) as stream:
            results = list(stream)
    assert [r.index for r in results] == list(range(PAN_FRAMES))
    track_of_shape = []
    for shape in shapes:
        ids = []
        for result, offset in zip(results, offsets, strict=True):
            seen = [(_iou(np.array(d.box), shape - offset), d.track_id) for d in result.detections]
            overlap, track_id = max(seen, default=(0.0, None), key=lambda pair: pair[0])
            if overlap >= 0.5:
                ids.append(track_id)
        assert len(ids) >= PAN_FRAMES - 2, f"the shape at {shape.tolist()} was found in {len(ids)} frames"
        assert None not in ids[1:] and len(set(ids) - {None}) == 1, f"the shape at {shape.tolist()}: tracks {ids}"
        track_of_shape.append(ids[-1])
    assert len(set(track_of_shape)) == len(shapes)

    url = demo_server.grpc_url
    capsys.readouterr()
    assert client_main(["detect", str(clip), "--track", "--json", "--score-threshold", "0.5", "--url", url]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["index"] for line in lines] == list(range(PAN_FRAMES))
    assert sum("track_id" in d for d in lines[-1]["detections"]) >= len(shapes)
