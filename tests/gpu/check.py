"""The GPU check: what a GPU host shows of the tensorrt path, written to one JSON report (tests/gpu/check.sh runs it).

Two modes, chosen by what is installed (the report says which ran):
- ``tensorrt``: ``torch_tensorrt`` imports, and is the shipped 2.9 (others are refused). Each model is built with
  :func:`export_tensorrt` (dynamo, FP16, batch 1..32; it fails when an engine's recorded settings do not allow
  FP16, so a silently FP32 build cannot pass), reloaded in a fresh process that loads only ``libtorchtrt_runtime.so`` (tests/gpu/runtime_probe.py), and
  compared with eager fp32; engines are counted and engine images/s measured at batch 1, 8 and 32.
- ``torch``: no TensorRT. The exported program (:func:`export_program`, the input TensorRT would get) runs on the
  device in FP16 against eager fp32 with the same criteria; its images/s are the floor TensorRT should beat.

Both: heads within :data:`HEAD_TOLERANCE`; on the demo model, >= :data:`MIN_BOX_MATCH` of eager's boxes on generated
scenes found again at IoU >= 0.9; the postprocess on the device against the CPU; CPU milliseconds per image of
preprocess (JPEG decode + letterbox) and postprocess. Exit 0 when every criterion holds.

    tests/gpu/check.sh                                   # the builder image or a pinned venv, then this
    python tests/gpu/check.py --report build/gpu-check/report.json [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "server"), str(ROOT / "client"), str(Path(__file__).parent)]

from runtime_probe import probe

from yolo_client.geometry import letterbox
from yolo_client.scenes import encode_jpeg, generate_scene
from yolo_server.darknet import DarknetSpec, load_darknet
from yolo_server.evaluation.agreement import matched_share
from yolo_server.export.program import BatchRange, export_program
from yolo_server.export.wrapper import TORCH_DTYPES, InferenceWrapper, torch_dtype
from yolo_server.ops.config import postprocess_config_for
from yolo_server.triton.imaging import DecodeLimits, decode_image
from yolo_server.triton.postprocess import Postprocessor

# the Torch-TensorRT the project ships (docker/Dockerfile.builder, NGC 25.10); tests/gpu/check.sh installs it
SHIPPED_TORCH_TENSORRT = "2.9"
HEAD_TOLERANCE = 5e-2  # FP16 against fp32: max |diff| over max(1, max |eager|), per head
MIN_BOX_MATCH = 0.99
SCENE_SEED = 2024
DEMO = ROOT / "models" / "shapes"
MODELS = {  # name: cfg, weights (None: calibrated random), input size
    "demo": (DEMO / "yolov4-tiny-shapes.cfg", DEMO / "yolov4-tiny-shapes.weights", None),
    "yolov4@608": (ROOT / "models" / "darknet" / "yolov4.cfg", None, 608),
}
FULL = {"max_batch": 32, "batches": (1, 3, 32), "throughput": (1, 8, 32), "scenes": 50, "seconds": 2.0}
QUICK = {"max_batch": 4, "batches": (1, 3, 4), "throughput": (1, 4), "scenes": 50, "seconds": 0.3}


def prepared_scenes(count: int, width: int, height: int, letterboxed: bool) -> tuple[torch.Tensor, list, float]:
    """Generated JPEG scenes through the server's preprocess: float32 [N, 3, H, W], placements, CPU ms per image."""
    encoded = [encode_jpeg(generate_scene(SCENE_SEED, index)) for index in range(count)]
    started = time.perf_counter()
    prepared = [letterbox(decode_image(data, DecodeLimits()).rgb, width, height, letterboxed) for data in encoded]
    milliseconds = (time.perf_counter() - started) * 1000 / count
    return torch.from_numpy(np.stack([tensor for tensor, _ in prepared])), [p for _, p in prepared], milliseconds


def relative_head_error(heads: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    return max(
        float((h - r).abs().max()) / max(1.0, float(r.abs().max())) for h, r in zip(heads, reference, strict=True)
    )


def run_tensorrt(
    model: torch.nn.Module,
    spec: DarknetSpec,
    batches: BatchRange,
    inputs: dict,
    device: torch.device,
    work: Path,
    seconds: float,
) -> tuple[dict, dict]:
    """Build with Torch-TensorRT, then run the artifact in a fresh process with only the runtime library."""
    import torch_tensorrt

    from yolo_server.export.tensorrt import export_tensorrt

    artifact, inputs_file, output_file = work / "model.pt", work / "inputs.pt", work / "output.pt"
    started = time.perf_counter()
    engines = export_tensorrt(model, spec, artifact, "fp16", batches, device)
    build_seconds = time.perf_counter() - started
    torch.save(inputs, inputs_file)
    runtime = Path(torch_tensorrt.__file__).parent / "lib" / "libtorchtrt_runtime.so"
    if not runtime.is_file():
        raise FileNotFoundError(f"{runtime}: the Torch-TensorRT runtime library Triton loads is not in this install")
    command = [
        sys.executable,
        str(Path(__file__).parent / "runtime_probe.py"),
        str(artifact),
        str(inputs_file),
        str(output_file),
        "--device",
        str(device),
        "--runtime-library",
        str(runtime),
        "--seconds",
        str(seconds),
    ]
    subprocess.run(command, check=True, timeout=600)
    return torch.load(output_file), {"engines": engines, "build_seconds": round(build_seconds, 1)}


def run_exported(
    model: torch.nn.Module,
    spec: DarknetSpec,
    batches: BatchRange,
    inputs: dict,
    device: torch.device,
    dtype: torch.dtype,
    seconds: float,
) -> tuple[dict, dict]:
    program = export_program(model, spec, batches, device, dtype)
    result = probe(program.module(), inputs["images"], inputs["batches"], inputs["throughput_batches"], device, seconds)
    return result, {"dtype": str(dtype).removeprefix("torch.")}


def check_model(name: str, mode: str, device: torch.device, dtype: torch.dtype, plan: dict, work: Path) -> dict:
    cfg, weights, size = MODELS[name]
    model, spec = load_darknet(cfg, weights, size)
    width, height = spec.net.width, spec.net.height
    batches = BatchRange(1, plan["max_batch"] // 2, plan["max_batch"])
    if name == "demo":
        images, placements, preprocess_ms = prepared_scenes(plan["scenes"], width, height, spec.net.letter_box)
    else:
        images, placements, preprocess_ms = torch.rand(plan["max_batch"], 3, height, width), [], None
    inputs = {"images": images, "batches": list(plan["batches"]), "throughput_batches": list(plan["throughput"])}
    eager = InferenceWrapper(model, torch.float32, channels_last=False).to(device).eval()
    reference = probe(eager, images, inputs["batches"], [], device)
    if mode == "tensorrt":
        result, extra = run_tensorrt(
            model, spec, batches, inputs, device, work / name.replace("@", "_"), plan["seconds"]
        )
    else:
        result, extra = run_exported(model, spec, batches, inputs, device, dtype, plan["seconds"])
    errors = {"all": relative_head_error(result["heads"], reference["heads"])}
    for batch, heads in result["by_batch"].items():
        errors[f"batch_{batch}"] = relative_head_error(heads, [r[:batch] for r in reference["heads"]])
    report = {**extra, "input": f"{width}x{height}", "head_relative_error": errors,
              "heads_within_tolerance": max(errors.values()) <= HEAD_TOLERANCE,
              "images_per_second": {str(b): round(v, 1) for b, v in result["images_per_second"].items()}}  # fmt: skip
    if name == "demo":
        post = Postprocessor(tuple(spec.yolo_layers), width, height, postprocess_config_for(spec), str(device))
        eager_found = post.run([h.numpy() for h in reference["heads"]], placements)
        found = post.run([h.numpy() for h in result["heads"]], placements)
        share = matched_share(eager_found, found)
        report.update(preprocess_cpu_ms_per_image=round(preprocess_ms, 3), scenes=len(placements),
                      eager_boxes=sum(len(d) for d in eager_found), boxes_matched_at_iou_0_9=round(share, 4),
                      boxes_match=share >= MIN_BOX_MATCH)  # fmt: skip
        report["postprocess"] = check_postprocess(post, reference["heads"], placements)
    return report


def check_postprocess(on_device: Postprocessor, heads: list[torch.Tensor], placements: list) -> dict:
    """The postprocess on the device against the CPU: the same detections; CPU ms per image of each.

    On a CPU-only run both sides are the CPU, so this only shows the report's shape there.
    """
    on_cpu = Postprocessor(on_device.heads, on_device.net_width, on_device.net_height, on_device.config)
    arrays = [h.numpy() for h in heads]
    timings, results = {}, {}
    for label, post in (("cpu", on_cpu), (str(on_device.device), on_device)):
        post.run(arrays, placements)  # warm-up (CUDA context, kernels)
        started = time.perf_counter()
        results[label] = post.run(arrays, placements)
        timings[label] = round((time.perf_counter() - started) * 1000 / len(placements), 3)
    cpu, device = results["cpu"], results[str(on_device.device)]
    same = all(
        len(a) == len(b) and np.array_equal(a.class_ids, b.class_ids) and np.allclose(a.boxes, b.boxes, atol=1e-3)
        for a, b in zip(cpu, device, strict=True)
    )
    return {"device": str(on_device.device), "same_detections_as_cpu": same, "ms_per_image": timings}


def unshipped_stack(version: str) -> str | None:
    """None for the shipped Torch-TensorRT, else why the check would test something else."""
    if version == SHIPPED_TORCH_TENSORRT or version.startswith(f"{SHIPPED_TORCH_TENSORRT}."):
        return None
    return (
        f"torch_tensorrt {version} is not the shipped {SHIPPED_TORCH_TENSORRT} (NGC 25.10, docker/Dockerfile.builder):"
        " its engines would not be the ones users get (2.13+ ignores enabled_precisions and builds FP32); run the "
        "check in the builder image or with tests/gpu/check.sh's pinned venv"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=ROOT / "build" / "gpu-check" / "report.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="the demo model only, small batches: a smoke run")
    parser.add_argument(
        "--dtype",
        choices=tuple(TORCH_DTYPES),
        default="fp16",
        help="what the exported program computes in (torch mode; TensorRT builds FP16)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu check: no CUDA device is visible to torch", file=sys.stderr)
        return 2
    has_trt = importlib.util.find_spec("torch_tensorrt") is not None
    mode = "tensorrt" if has_trt and device.type == "cuda" else "torch"
    dtype = torch_dtype(args.dtype)
    plan = QUICK if args.quick else FULL
    names = ["demo"] if args.quick else list(MODELS)
    report: dict = {
        "mode": mode, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "python": platform.python_version(), "plan": plan, "models": {},
    }  # fmt: skip
    if has_trt:
        import torch_tensorrt

        report["torch_tensorrt"] = torch_tensorrt.__version__
        refusal = unshipped_stack(torch_tensorrt.__version__)
        if refusal:
            print(f"gpu check: {refusal}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        for name in names:
            report["models"][name] = check_model(name, mode, device, dtype, plan, Path(work))
            print(f"gpu check: {name}: {json.dumps(report['models'][name])}", flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    demo = report["models"]["demo"]
    report["passed"] = bool(
        all(model["heads_within_tolerance"] for model in report["models"].values())
        and demo["boxes_match"] and demo["postprocess"]["same_detections_as_cpu"]
    )  # fmt: skip
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"gpu check ({mode} mode): {'PASSED' if report['passed'] else 'FAILED'}; report: {args.report}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
