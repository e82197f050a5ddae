"""The build's TensorRT compile step through the real ``torch_tensorrt`` in dry-run mode, on the CPU.

Run by tests/unit/test_tensorrt_dryrun.py with the python of tests/tensorrt_dryrun/venv.sh (torch 2.9.0 and
torch-tensorrt 2.9.0, NGC 25.10's pair), this checkout's server/ and client/ on ``PYTHONPATH`` and the
``tensorrt`` stand-in (standin/) in front. For each model it calls what ``yolo-server build --target tensorrt``
calls, with the repository's batch settings and default precision: :func:`export_program`, then
:func:`compile_detector` with ``dryrun=True``. Everything past the stand-in is the real library: its argument
validation, lowering, decompositions, converter capability checks, partitioning and each engine's
optimization profile. On the demo model the dry-run module also goes through :func:`save_detector` (the real
``torch_tensorrt.save`` to TorchScript) and is compared with eager.

What it cannot show: engine building, FP16 numerics and Triton's load of the file (tests/gpu/check.sh on a GPU).

    python tests/tensorrt_dryrun/dryrun.py REPORT.json [MODEL ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpu_answers import answer_cuda_queries

answer_cuda_queries()  # before torch_tensorrt: it asks CUDA at import

import torch
import torch_tensorrt
from torch_tensorrt.dynamo import _compiler
from torch_tensorrt.dynamo.partitioning import construct_submodule_inputs
from torch_tensorrt.dynamo.utils import to_torch_device, to_torch_tensorrt_device

from yolo_server.darknet import load_darknet
from yolo_server.export.program import BatchRange, export_program
from yolo_server.export.tensorrt import (
    ENGINE_PREFIX,
    TARGET,
    compile_detector,
    count_engines,
    engine_precisions,
    save_detector,
)
from yolo_server.precision import DEFAULT_PRECISION
from yolo_server.repository.spec import TARGET_BATCHING

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "shapes"
DARKNET = ROOT / "models" / "darknet"
MODELS = {  # name: cfg, weights (None: calibrated random), input size (None: the cfg's)
    "demo": (DEMO / "yolov4-tiny-shapes.cfg", DEMO / "yolov4-tiny-shapes.weights", None),
    "yolov4-tiny@416": (DARKNET / "yolov4-tiny.cfg", None, 416),
    "yolov4@608": (DARKNET / "yolov4.cfg", None, 608),
    "yolov4-csp@512": (DARKNET / "yolov4-csp.cfg", None, 512),
    "yolov4x-mish@640": (DARKNET / "yolov4x-mish.cfg", None, 640),
}
CALLS = ("call_function", "call_method", "call_module")


@contextmanager
def dryrun_results() -> Iterator[list[Any]]:
    """The library's own dry-run tracker of each compile (what it prints), recorded as it goes by."""
    trackers: list[Any] = []
    display = _compiler.dryrun_stats_display

    def record(tracker: Any, dryrun_enabled: Any) -> None:
        trackers.append(tracker)
        display(tracker, dryrun_enabled)

    _compiler.dryrun_stats_display = record
    try:
        yield trackers
    finally:
        _compiler.dryrun_stats_display = display


def engine_report(compiled: torch.nn.Module) -> list[dict[str, Any]]:
    """Each engine's op count and optimization profile, as the library would hand them to TensorRT."""
    engines = []
    for name, submodule in compiled.named_children():
        if name.startswith(ENGINE_PREFIX):
            profiles = [dict(item.shape) for item in construct_submodule_inputs(submodule)]
            ops = sum(1 for node in submodule.graph.nodes if node.op in CALLS)
            engines.append({"name": name, "ops": ops, "profiles": profiles})
    return engines


def check_saved_equals_eager(
    compiled: torch.nn.Module, model: torch.nn.Module, spec: Any, batches: BatchRange
) -> float:
    """``save_detector`` through the real ``torch_tensorrt.save`` (on the CPU: no engines); max |saved - eager|."""
    with tempfile.TemporaryDirectory(prefix="tensorrt-dryrun-") as work:
        path = Path(work) / "model.pt"
        save_detector(compiled, spec, path, batches, "cpu")
        loaded = torch.jit.load(str(path))
        x = torch.rand(3, 3, spec.net.height, spec.net.width, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            pairs = zip(loaded(x), model.eval()(x), strict=True)
            return max(float((saved - eager).abs().max()) for saved, eager in pairs)


def recorded_by_an_engine(settings: Any) -> torch.nn.Module:
    """A compiled module whose one engine carries ``settings``, as a built engine module does (``.settings``)."""
    compiled, engine = torch.nn.Module(), torch.nn.Module()
    engine.settings = settings
    compiled.add_module(f"{ENGINE_PREFIX}_0", engine)
    return compiled


def engine_device(device: Any) -> str:
    """The device as the engine builder takes it: ``dynamo.compile``'s conversion, then ``_TRTInterpreter``'s and
    ``_pack_engine_info``'s (steps the dry run stops before). The error's first line where the library refuses."""
    try:
        return str(to_torch_device(to_torch_tensorrt_device(device)))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def dry_run(name: str) -> dict[str, Any]:
    cfg, weights, size = MODELS[name]
    model, spec = load_darknet(cfg, weights, size)
    batching = TARGET_BATCHING[TARGET]
    batches = BatchRange(*batching.profile)  # as repository.build.export_detector
    precision = DEFAULT_PRECISION[TARGET]
    started = time.perf_counter()
    program = export_program(model, spec, batches, "cpu")  # no GPU: the weights stay here, the engines are for cuda
    with dryrun_results() as trackers:
        compiled = compile_detector(program, spec, precision, batches, "cuda", dryrun=True)
    [tracker] = trackers
    settings = tracker.compilation_settings
    report = {
        "input": f"{spec.net.width}x{spec.net.height}",
        "batching": {"min": batches.minimum, "opt": batches.optimum, "max": batches.maximum},
        "precision": precision,
        "engine_count": count_engines(compiled),
        "engines": engine_report(compiled),
        "ops_in_graph": tracker.total_ops_in_graph,
        "ops_supported": tracker.supported_ops_in_graph,
        "unsupported_ops": {str(op): count for op, count in tracker.unsupported_ops.items()},
        "run_in_pytorch": list(tracker.to_run_in_torch),
        "settings": {
            "device": engine_device(settings.device),
            # read as the build reads a built engine's (check_engine_precisions), from the library's own settings
            "enabled_precisions": sorted(str(dtype) for dtype in engine_precisions(recorded_by_an_engine(settings))),
            "use_python_runtime": settings.use_python_runtime,
            "truncate_double": settings.truncate_double,
            "dryrun": settings.dryrun,
        },
    }
    if name == "demo":
        report["saved_max_abs_diff_vs_eager"] = check_saved_equals_eager(compiled, model, spec, batches)
        report["other_devices"] = {device: engine_device(torch.device(device)) for device in ("cuda", "cpu")}
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("models", nargs="*", help=f"any of {', '.join(MODELS)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}")
    found: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_tensorrt": torch_tensorrt.__version__,
        "features": str(torch_tensorrt.ENABLED_FEATURES),
        "models": {},
    }
    for name in args.models or MODELS:
        found["models"][name] = dry_run(name)
        print(f"tensorrt dry run: {name}: {json.dumps(found['models'][name])}", flush=True)
    args.report.write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
