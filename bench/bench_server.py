"""End-to-end serving benchmark: JPEG in, detections out, through Triton vs the in-process Detector.

Prints, for the shipped demo detector on generated shape scenes (``--model demo``, the default: real
detections, as in production) or yolov4-tiny on calibrated random weights and synthetic frames
(``--model yolov4-tiny``: far more NMS candidates than a trained model gives):
  * in-process ``Detector`` on the served artifact (the repository's OpenVINO IR at its precision):
    images/s and p50 latency of decode + detect, one image at a time,
  * server images/s and latency at concurrency 1, 8, 16 (one image per gRPC request), as a ratio to
    in-process, for both cpu layouts side by side: the fused image model (the default) and the
    preprocess -> detector -> postprocess ensemble (``--no-fused``),
  * the dynamic-batching gain: the same load against a fused repository built with ``--max-batch-size 1``
    (every execution holds exactly one image: batching off), at the highest concurrency,
  * where the ensemble's time goes (preprocess / detector / postprocess compute, from Triton's statistics),
    and the mean batch of each layout's detector,
  * the best images/s against the 65 FPS target,
  * the CPU's ISA flags and the precision the server chose on them. Repositories are built as ``make build``
    builds the demo: with an INT8 IR calibrated on training-distribution scenes (``--precision`` picks another;
    ``--no-int8`` builds none). ``--isa avx2`` serves as an AVX2-only machine would (bench/isa.py).

Usage:
    python bench/bench_server.py                      # ~4 minutes on a small CPU box
    python bench/bench_server.py --isa avx2 --precision fp32 --no-int8   # an AVX2 machine before INT8
    python bench/bench_server.py --model yolov4-tiny --seconds 20 --size 416 --concurrency 1 8 16 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from yolo_client.benchmark import sample_images
from yolo_client.contract import STAGES, TARGET_FPS, model_name
from yolo_server.precision import DEFAULT_PRECISION, PRECISIONS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from isa import ISA_CAPS, cap_isa, isa_line

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ROOT / "models" / "shapes"


@dataclass(frozen=True)
class BenchModel:
    cfg: Path
    weights: Path | None
    names: Path
    label: str

    @property
    def name(self) -> str:
        from yolo_server.repository.spec import model_base_name

        return model_base_name(self.cfg)


MODELS = {
    "demo": BenchModel(
        SHAPES / "yolov4-tiny-shapes.cfg",
        SHAPES / "yolov4-tiny-shapes.weights",
        SHAPES / "shapes.names",
        "the demo detector (yolov4-tiny layout, half width, trained), generated scenes",
    ),
    "yolov4-tiny": BenchModel(
        ROOT / "models" / "darknet" / "yolov4-tiny.cfg",
        None,
        ROOT / "models" / "darknet" / "coco.names",
        "yolov4-tiny, random calibrated weights, synthetic 640x480 frames",
    ),
}


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    images_per_s: float
    p50_ms: float
    p95_ms: float


def scene_jpegs(count: int, seed: int = 99) -> list[bytes]:
    """Held-out demo scenes (any size 240-1000 px a side), as the demo detector sees them."""
    from yolo_client.scenes import encode_jpeg, generate_scene

    return [encode_jpeg(generate_scene(seed, index)) for index in range(count)]


def build(model: BenchModel, output: Path, size: int, max_batch_size: int, extra: list[str]) -> None:
    from yolo_server.cli import build_options, build_parser
    from yolo_server.repository.build import build_repository

    argv = ["build", "--cfg", str(model.cfg), "--names", str(model.names), "--size", str(size), "--target", "cpu",
            "--max-batch-size", str(max_batch_size), "--output", str(output)]  # fmt: skip
    if model.weights is not None:
        argv += ["--weights", str(model.weights)]
    argv += extra
    build_repository(build_options(build_parser().parse_args(argv)), log=lambda line: None)


def in_process_rate(
    model: BenchModel, repository: Path, images: list[bytes], size: int, seconds: float
) -> tuple[float, float]:
    """Images/s and p50 ms of decode + ``Detector.detect`` one image at a time, on the repository's artifact."""
    from yolo_server import Detector
    from yolo_server.triton.imaging import DecodeLimits, decode_image
    from yolo_server.triton.runtime import OpenVINORunner

    path, precision = served(repository, model)
    detector = Detector(model.cfg, model.weights, model.names, input_size=size, network=OpenVINORunner(path, precision))

    def one(data: bytes) -> None:  # the server's decode and checks, then the same detector
        detector.detect([decode_image(data, DecodeLimits()).rgb])

    for data in images[:3]:
        one(data)
    latencies, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        one(images[len(latencies) % len(images)])
        latencies.append(time.perf_counter() - began)
    return len(latencies) / (time.perf_counter() - start), 1e3 * statistics.median(latencies)


def served(repository: Path, model: BenchModel) -> tuple[Path, str]:
    """The IR and precision the server's detector picks on this CPU, from the repository's own parameters."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    from yolo_server.triton.runtime import served_ir
    from yolo_server.triton.settings import DetectorSettings

    directory = repository / model_name(model.name, "detector")
    config = text_format.Parse((directory / "config.pbtxt").read_text(), pb.ModelConfig())
    settings = DetectorSettings.from_parameters({key: value.string_value for key, value in config.parameters.items()})
    return served_ir(directory / "1" / settings.artifact, settings.precision, settings.int8_artifact)


def load(url: str, model: str, images: list[bytes], concurrency: int, seconds: float) -> LoadResult:
    """``concurrency`` closed-loop clients, one JPEG per request, for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    stop_at = time.perf_counter() + seconds
    barrier = threading.Barrier(concurrency + 1)

    def client_loop(index: int) -> None:
        with grpcclient.InferenceServerClient(url) as client:
            barrier.wait()
            i = index
            while time.perf_counter() < stop_at:
                tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[images[i % len(images)]]], dtype=object))
                started = time.perf_counter()
                client.infer(model, [tensor])
                latencies[index].append(time.perf_counter() - started)
                i += concurrency

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    flat = sorted(x for per_client in latencies for x in per_client)
    p95 = flat[min(len(flat) - 1, int(0.95 * len(flat)))] if flat else float("nan")
    return LoadResult(concurrency, len(flat) / elapsed, 1e3 * statistics.median(flat), 1e3 * p95)


def compute_ns(url: str, model: str) -> dict[str, int]:
    """Cumulative compute time (input + infer + output, ns) per step model of an ensemble, and the counts of
    the model that runs the network (the ensemble's detector, or the fused model itself)."""
    with grpcclient.InferenceServerClient(url) as client:
        fused = client.get_model_config(model, as_json=True)["config"].get("platform") != "ensemble"
        totals = {}
        for step in () if fused else STAGES:
            stats = client.get_inference_statistics(f"{model}_{step}", as_json=True)["model_stats"][0]
            inference = stats["inference_stats"]
            totals[step] = sum(
                int(inference.get(k, {}).get("ns", 0)) for k in ("compute_input", "compute_infer", "compute_output")
            )
        stats = client.get_inference_statistics(model if fused else model_name(model, "detector"), as_json=True)
        totals["images"] = int(stats["model_stats"][0].get("inference_count", 0))
        totals["executions"] = int(stats["model_stats"][0].get("execution_count", 0))
    return totals


def serve_and_measure(
    repository: Path, model: str, images: list[bytes], concurrencies: list[int], seconds: float
) -> tuple[list[LoadResult], dict[str, int]]:
    from yolo_server.launcher.launch import loopback_server

    # tritonserver behind its nginx front, as `yolo-server serve` runs it
    with loopback_server(repository, exit_timeout_s=5, ready_timeout_s=300) as server:
        url = server.endpoints.grpc
        load(url, model, images, max(concurrencies), 3.0)  # warm every instance
        before = compute_ns(url, model)
        results = [load(url, model, images, c, seconds) for c in concurrencies]
        after = compute_ns(url, model)
        return results, {key: after[key] - before[key] for key in after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="demo")
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--seconds", type=float, default=12.0, help="per measured load level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--instances", action="append", default=[], metavar="KIND=N")
    parser.add_argument("--max-queue-delay-us", type=int, help="default: the cpu target's")
    parser.add_argument("--detector-threads", type=int, help="default: the cpu target's")
    parser.add_argument("--precision", choices=PRECISIONS["cpu"], default=DEFAULT_PRECISION["cpu"])
    parser.add_argument("--no-int8", action="store_true", help="build no INT8 IR (the repositories before INT8)")
    parser.add_argument("--isa", choices=ISA_CAPS, default="native", help="avx2: serve as an AVX2-only CPU would")
    args = parser.parse_args()
    cap_isa(args.isa)
    extra = [arg for item in args.instances for arg in ("--instances", item)]
    extra += ["--precision", args.precision]
    for flag in ("max_queue_delay_us", "detector_threads"):
        if getattr(args, flag) is not None:
            extra += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]

    model = MODELS[args.model]
    images = scene_jpegs(16) if args.model == "demo" else sample_images(16)
    layouts = {"fused": ["--fused"], "ensemble": ["--no-fused"]}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        if not args.no_int8:
            from yolo_server.training.scenes import write_dataset

            # as `make build` calibrates the demo: training-distribution scenes, never the held-out seed 99
            extra += ["--calibration-images", str(write_dataset(Path(tmp) / "calibration", 300, 0, False).parent)]
        for layout, flags in layouts.items():
            build(model, Path(tmp) / layout, args.size, args.max_batch_size, extra + flags)
        build(model, Path(tmp) / "unbatched", args.size, 1, extra)
        local, local_p50 = in_process_rate(model, Path(tmp) / "fused", images, args.size, args.seconds)
        _, precision = served(Path(tmp) / "fused", model)
        measured = {
            layout: serve_and_measure(Path(tmp) / layout, model.name, images, args.concurrency, args.seconds)
            for layout in layouts
        }
        [baseline], _ = serve_and_measure(
            Path(tmp) / "unbatched", model.name, images, [max(args.concurrency)], args.seconds
        )
    report(model, args.size, precision, local, local_p50, measured, baseline)


def report(
    model: BenchModel,
    size: int,
    precision: str,
    local: float,
    local_p50: float,
    measured: dict[str, tuple[list[LoadResult], dict[str, int]]],
    baseline: LoadResult,
) -> None:
    print(f"\n{model.label} @{size}, cpu target (OpenVINO {precision} served), JPEGs, one image per request")
    print(isa_line())
    print(
        f"in-process Detector on the served artifact (decode + detect, batch 1): {local:7.1f} images/s, p50 {local_p50:.1f} ms"
    )
    print(
        f"{'layout':>8} {'concurrency':>11} {'images/s':>9} {'x in-process':>12} {'p50 ms':>8} {'p95 ms':>8} {'p50 - in-process':>17}"
    )
    for layout, (results, _) in measured.items():
        for r in results:
            print(f"{layout:>8} {r.concurrency:>11} {r.images_per_s:>9.1f} {r.images_per_s / local:>12.2f} {r.p50_ms:>8.1f} "
                  f"{r.p95_ms:>8.1f} {r.p50_ms - local_p50:>+14.1f} ms")  # fmt: skip
    (fused, fused_spent), (ensemble, spent) = measured["fused"], measured["ensemble"]
    for f, e in zip(fused, ensemble, strict=True):
        print(f"fused / ensemble at concurrency {f.concurrency}: images/s x{f.images_per_s / e.images_per_s:.2f}, "
              f"p50 {f.p50_ms - e.p50_ms:+.1f} ms")  # fmt: skip
    top = fused[-1]
    print(
        f"dynamic batching gain at concurrency {top.concurrency}: {top.images_per_s:.1f} vs {baseline.images_per_s:.1f} "
        f"images/s with --max-batch-size 1 = x{top.images_per_s / baseline.images_per_s:.2f}"
    )
    total = sum(spent[step] for step in STAGES) or 1
    shares = ", ".join(f"{step} {100 * spent[step] / total:.0f}%" for step in STAGES)
    print(f"ensemble compute time share: {shares}")
    print(", ".join(f"mean {layout} network batch {c['images'] / max(c['executions'], 1):.2f}"
                    for layout, c in (("fused", fused_spent), ("ensemble", spent))))  # fmt: skip
    best = max(r.images_per_s for r in fused)
    print(f"best (fused): {best:.1f} images/s = {100 * best / TARGET_FPS:.0f}% of the {TARGET_FPS:.0f} FPS target")


if __name__ == "__main__":
    main()
