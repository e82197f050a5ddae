"""INT8 for the cpu target: NNCF post-training quantization of the fp32 OpenVINO IR.

NNCF inserts FakeQuantize nodes with ranges fitted to the calibration images
(:mod:`yolo_server.export.calibration`); OpenVINO's CPU plugin runs the convolutions between them in INT8.
The ``MIXED`` preset quantizes activations asymmetrically: darknet's leaky and mish activations are mostly
positive, and a symmetric range would spend half its codes on values that never occur. Whether the result
keeps accuracy is not assumed: :mod:`yolo_server.evaluation.gate` measures it before the build keeps the IR.
``nncf`` is imported only here.

Example:
    >>> quantize_ir(Path("model.xml"), [item.tensor for item in inputs], Path("model-int8.xml"))
    [PosixPath('model-int8.xml'), PosixPath('model-int8.bin')]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from yolo_server.export.openvino import artifact_files
from yolo_server.extras import import_extra
from yolo_server.triton.runtime import import_openvino


def import_nncf() -> ModuleType:
    return import_extra("nncf", "int8", "INT8 builds (--calibration-images) quantize with NNCF")


def quantize_ir(ir: Path, calibration: Sequence[np.ndarray], output: Path) -> list[Path]:
    """Write an INT8 IR at ``output`` from the fp32 IR ``ir``, ranges fitted on ``calibration``.

    Args:
        calibration: float32 ``[1, 3, H, W]`` network inputs, preprocessed as the server does.

    Returns:
        The files written (``output`` and its ``.bin``).
    """
    nncf = import_nncf()
    openvino = import_openvino()
    model = openvino.Core().read_model(str(ir))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(list(calibration)),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration),
    )
    openvino.save_model(quantized, str(output), compress_to_fp16=False)
    return list(artifact_files(output))
