"""The CPU artifact: the detector as OpenVINO IR, written by the build.

Chosen by measurement (``bench/bench_runtimes.py``): OpenVINO's CPU plugin in INT8 (AVX2 and up) or
bf16 (AVX512-BF16, AMX) runs the network faster than torch eager, torch.compile and ONNX Runtime
while keeping accuracy, and unlike torch.compile its artifact is written once by the build rather
than compiled at every server start (docs/cpu-serving.md "OpenVINO, at the fastest precision the serving CPU runs").

The IR comes from the same ``torch.export`` program the tensorrt target compiles
(:mod:`yolo_server.export.program`), with the batch dimension dynamic and the weights in float32. INT8 is an
IR of its own, quantized from this one with calibration images (:mod:`yolo_server.export.quantize`). What
serves it, and resolves ``auto`` on the serving machine, is :mod:`yolo_server.triton.runtime`.

Example:
    >>> export_openvino(model, spec, "model.xml")              # writes model.xml + model.bin
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from yolo_server.darknet.cfg import DarknetSpec
from yolo_server.triton.runtime import import_openvino

WEIGHTS_SUFFIX = ".bin"


def artifact_files(path: str | Path) -> tuple[Path, Path]:
    """The two files of an IR: ``model.xml`` (graph) and ``model.bin`` (weights)."""
    path = Path(path)
    return path, path.with_suffix(WEIGHTS_SUFFIX)


def export_openvino(model: nn.Module, spec: DarknetSpec, path: str | Path) -> list[Path]:
    """Convert the detector to IR: float32 ``[B, 3, H, W]`` in, float32 heads out, ``B`` dynamic.

    Returns:
        The files written (the ``.xml`` at ``path`` and its ``.bin``).
    """
    from yolo_server.export.program import BatchRange, export_program

    openvino = import_openvino()
    program = export_program(model, spec, BatchRange(1, 2, 64))
    converted = openvino.convert_model(program)
    # a static spatial size lets the plugin plan every layer once; only the batch varies
    converted.reshape([-1, 3, spec.net.height, spec.net.width])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    openvino.save_model(converted, str(path), compress_to_fp16=False)
    return list(artifact_files(path))
