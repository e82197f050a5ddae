"""CPU runtimes side by side: same weights, frames and threads, one run; speed beside accuracy.

    .venv/bin/python bench/bench_runtimes.py [--seconds 3] [--models demo,yolov4-tiny,yolov4] [--no-compile]
        [--isa avx2]    (compute and choose as an AVX2-only machine would: bench/isa.py)
    (ONNX Runtime rows need `pip install './server[bench]'`; they are left out, saying so, without it)

Runtimes: torch eager fp32 and bf16 (the module cast to bf16, channels-last), torch.compile
(inductor, freezing, bf16), ONNX Runtime fp32, OpenVINO fp32, bf16 and INT8 (the IRs that
``yolo-server build`` writes, INT8 calibrated as ``make build`` calibrates the demo: 300
training-distribution scenes; the one the cpu target's ``auto`` picks on this CPU is marked
``served``), and OpenCV DNN as the outside reference. Workloads: ``network`` (the forward pass on a prepared batch) and ``pipeline``
(frames -> detections: letterbox, forward, decode, NMS, mapping back; OpenCV with its own
blobFromImages + NMSBoxesBatched). Every figure is the median of ``--rounds`` turns taken in rotation
across the runtimes, because these machines drift. Models: the trained demo detector, yolov4-tiny and yolov4 at
416 (calibrated random weights), at batch 1 and 8.

Accuracy (demo model, the only trained one): the share of fp32-eager boxes each runtime finds
again at IoU >= 0.5 and >= 0.9 on 50 scenes, and mAP@0.5 and mAP@[.5:.95] on 200 held-out
scenes (score threshold 0.005). A runtime keeps accuracy as the INT8 gate judges it
(yolo_server.evaluation.gate): mAP@0.5 within 0.005 and mAP@[.5:.95] within 0.01 of fp32
eager, and >= 97% of its boxes found again at IoU >= 0.5. Goals printed as ratios: served / the fastest runtime measured
(>= 0.95) and served pipeline / OpenCV DNN at batch 8 (>= 3).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inprocess import SIZE, THREADS, OpenCVDetector, Workload, rate, workload
from isa import ISA_CAPS, cap_isa, isa_line

from yolo_server.darknet import DarknetSpec, load_darknet
from yolo_server.evaluation import CocoDataset, coco_evaluate, detect_inprocess
from yolo_server.evaluation.agreement import matched_share
from yolo_server.evaluation.coco import MAP_SCORE_THRESHOLD
from yolo_server.evaluation.gate import AGREEMENT_IOU, MAX_MAP50_DROP, MAX_MAP_DROP, MIN_AGREEMENT
from yolo_server.export.calibration import calibration_files, calibration_inputs
from yolo_server.export.openvino import export_openvino
from yolo_server.export.program import BatchRange, export_program
from yolo_server.export.quantize import quantize_ir
from yolo_server.export.wrapper import InferenceWrapper
from yolo_server.ops.config import postprocess_config_for
from yolo_server.pipeline import Detector
from yolo_server.precision import CPU_PRECISIONS, cpu_has_native_bf16, resolve_cpu_precision
from yolo_server.triton.runtime import OpenVINORunner

Network = Callable[[np.ndarray], Sequence[np.ndarray]]
MATCH_SCENES, MATCH_SEED = 50, 99
MAP_SCENES, MAP_SEED = 200, 1000
CALIBRATION_SEED, CALIBRATION_COUNT = 0, 300  # as `make build` calibrates the demo


def served_label() -> str:
    """The row of what the cpu target serves here (every precision is built in this benchmark)."""
    return f"openvino {resolve_cpu_precision('auto', CPU_PRECISIONS)} (served)"


class TorchNetwork:
    """A torch module as a numpy runner (what the Detector's own forward does, without its Detector)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return [head.numpy() for head in self.module(torch.from_numpy(batch))]


class OnnxRuntimeNetwork:
    def __init__(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input: batch})


def torch_compiled(model: torch.nn.Module) -> TorchNetwork:
    """Inductor with freezing, bf16 where native (else fp32); it compiles at the first call of each batch size."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    dtype = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return TorchNetwork(torch.compile(InferenceWrapper(model, dtype).eval(), dynamic=False))


def onnx_file(model: torch.nn.Module, spec: DarknetSpec, directory: Path) -> Path:
    """ONNX from the same torch.export program as the IR (dynamic batch)."""
    program = export_program(model, spec, BatchRange(1, 2, 64))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.onnx"
    torch.onnx.export(program, f=str(path), dynamo=True, external_data=False, verbose=False)
    return path


def interleaved(runs: dict[str, Callable[[], object]], batch: int, seconds: float, rounds: int) -> dict[str, float]:
    """Images/s of each run: the median of ``rounds`` turns taken in rotation, so that drift hits all alike."""
    per_run: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            per_run[name].append(rate(run, batch, seconds / rounds))
    return {name: float(np.median(values)) for name, values in per_run.items()}


@dataclass
class Row:
    name: str
    network: Network
    setup_s: float = 0.0


def contenders(name: str, work: Workload, tmp: Path, compile_too: bool) -> list[Row]:
    from yolo_server.repository.spec import Decoding
    from yolo_server.training.scenes import write_dataset
    from yolo_server.triton.settings import PreprocessSettings

    model, spec = load_darknet(work.cfg, work.weights, SIZE)
    started = time.perf_counter()
    ir = export_openvino(model, spec, tmp / f"{name}.xml")[0]
    ir_s = time.perf_counter() - started
    scenes = tmp / "calibration"
    if not scenes.is_dir():
        write_dataset(scenes, CALIBRATION_COUNT, CALIBRATION_SEED, progress=False)
    decoding = Decoding()  # the server's defaults
    settings = PreprocessSettings(
        SIZE, SIZE, spec.net.letter_box, decoding.max_pixels, decoding.max_bytes, True, decoding.jpeg_decode
    )
    started = time.perf_counter()
    int8 = tmp / f"{name}-int8.xml"
    quantize_ir(
        ir, [item.tensor for item in calibration_inputs(calibration_files(scenes), settings, progress=False)], int8
    )
    int8_s = time.perf_counter() - started
    rows = [
        Row("torch eager fp32", TorchNetwork(InferenceWrapper(model, torch.float32).eval())),
        Row("torch bf16", TorchNetwork(InferenceWrapper(model, torch.bfloat16).eval())),
    ]
    for precision in CPU_PRECISIONS:
        label = served_label() if served_label() == f"openvino {precision} (served)" else f"openvino {precision}"
        path, setup_s = (int8, ir_s + int8_s) if precision == "int8" else (ir, ir_s)
        rows.append(Row(label, OpenVINORunner(path, precision, THREADS), setup_s))
    try:
        started = time.perf_counter()
        onnx = onnx_file(model, spec, tmp / name)
        rows.insert(2, Row("onnxruntime fp32", OnnxRuntimeNetwork(onnx), time.perf_counter() - started))
    except ImportError as exc:
        print(f"  (no ONNX Runtime row: {exc}; pip install './server[bench]')")
    if compile_too:
        compiled = torch_compiled(model)
        started = time.perf_counter()
        compiled(np.zeros((1, 3, SIZE, SIZE), np.float32))
        rows.insert(3, Row("torch.compile", compiled, time.perf_counter() - started))
    return rows


def accuracy(rows: list[Row], work: Workload, tmp: Path) -> dict[str, tuple[float, float, float, float]]:
    """Per runtime: shares of fp32-eager boxes matched at IoU >= 0.5 and 0.9, mAP@0.5 and @[.5:.95] (demo)."""
    from yolo_client.scenes import generate_scene
    from yolo_server.training.scenes import write_dataset

    frames = [generate_scene(MATCH_SEED, index).image for index in range(MATCH_SCENES)]
    dataset = CocoDataset.load(write_dataset(tmp / "heldout", MAP_SCENES, MAP_SEED, progress=False))
    results, reference = {}, None
    for row in rows:
        detector = Detector(work.cfg, work.weights, input_size=SIZE, network=row.network)
        found = [f for start in range(0, len(frames), 8) for f in detector.detect(frames[start : start + 8])]
        reference = found if reference is None else reference
        detector.config = postprocess_config_for(detector.spec, score_threshold=MAP_SCORE_THRESHOLD)
        rows_found = detect_inprocess(detector, dataset, progress=False)
        mapped = coco_evaluate(dataset, rows_found)
        agreed = (matched_share(reference, found, AGREEMENT_IOU), matched_share(reference, found, 0.9))
        results[row.name] = (*agreed, mapped.map50, mapped.map50_95)
    return results


def print_accuracy(name: str, scores: dict[str, tuple[float, float, float, float]]) -> None:
    """Each runtime's agreement with torch eager fp32 and its mAPs, and whether it keeps accuracy as the gate judges."""
    _, _, base50, base = scores["torch eager fp32"]
    print(f"\n{name} accuracy against torch eager fp32: boxes found again at IoU>=0.5 / 0.9 on "
          f"{MATCH_SCENES} scenes; mAP@0.5, mAP@[.5:.95] on {MAP_SCENES} held-out")  # fmt: skip
    for runtime, (at50, at90, map50, map50_95) in scores.items():
        keeps = at50 >= MIN_AGREEMENT and base50 - map50 <= MAX_MAP50_DROP and base - map50_95 <= MAX_MAP_DROP
        print(f"  {runtime:24} {at50:7.1%} {at90:7.1%}  mAP@0.5 {map50:.4f} ({map50 - base50:+.4f})  "
              f"mAP@[.5:.95] {map50_95:.4f} ({map50_95 - base:+.4f})  "
              f"{'keeps accuracy' if keeps else 'LOSES accuracy'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per runtime and workload, split over the rounds")
    parser.add_argument("--rounds", type=int, default=3, help="turns in rotation; the median is printed")
    parser.add_argument("--models", default="demo,yolov4-tiny,yolov4")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (its compile takes minutes)")
    parser.add_argument("--isa", choices=ISA_CAPS, default="native", help="avx2: as an AVX2-only CPU would")
    args = parser.parse_args()
    cap_isa(args.isa)
    served = served_label()
    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"threads={THREADS} torch={torch.__version__} opencv={cv2.__version__}; {isa_line()}")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        for name in args.models.split(","):
            work = workload(name, tmp)
            rows = contenders(name, work, tmp, not args.no_compile)
            opencv = OpenCVDetector(work.cfg, work.weights)
            detectors = {
                row.name: Detector(work.cfg, work.weights, input_size=SIZE, network=row.network) for row in rows
            }
            for batch in batches:
                chunk = (work.frames * 8)[:batch]
                tensor = np.stack([detectors[served].preprocess(frame)[0] for frame in chunk])
                blob = cv2.dnn.blobFromImages(chunk, 1 / 255.0, (SIZE, SIZE), swapRB=False, crop=False)
                contenders_at_batch = {
                    # partial binds this batch's inputs now (a lambda would read the loop's variables when called)
                    "network": {"opencv dnn": partial(opencv.forward, blob),
                                **{row.name: partial(row.network, tensor) for row in rows}},
                    "pipeline": {"opencv dnn": partial(opencv.detect, chunk),
                                 **{name: partial(d.detect, chunk) for name, d in detectors.items()}},
                }  # fmt: skip
                speed = {
                    what: interleaved(runs, batch, args.seconds, args.rounds)
                    for what, runs in contenders_at_batch.items()
                }
                for what, rates in speed.items():
                    base = rates["torch eager fp32"]
                    print(f"\n{name}@{SIZE} batch={batch} {what} (images/s, x torch eager fp32, x opencv dnn)")
                    for runtime, value in rates.items():
                        print(f"  {runtime:24} {value:8.1f}  {value / base:5.2f}x  {value / rates['opencv dnn']:5.2f}x")
                network, pipeline = speed["network"], speed["pipeline"]
                fastest = max((r for r in network if r != "opencv dnn"), key=network.__getitem__)
                print(
                    f"  goal: served / fastest network ({fastest}) = {network[served] / network[fastest]:.2f} (>= 0.95)"
                )
                if batch == 8:
                    print(
                        f"  goal: served pipeline / opencv dnn = {pipeline[served] / pipeline['opencv dnn']:.2f} (>= 3)"
                    )
            if name == "demo":
                print_accuracy(name, accuracy(rows, work, tmp))
            setup = ", ".join(f"{row.name} {row.setup_s:.1f}s" for row in rows if row.setup_s)
            print(f"\n{name} conversion / first compile: {setup}")


if __name__ == "__main__":
    main()
