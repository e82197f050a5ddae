"""The GPU artifact: the detector compiled with Torch-TensorRT, saved as TorchScript with embedded engines.

That is the format the NGC Triton container serves with ``platform: "pytorch_libtorch"``
(the documented Torch-TensorRT -> Triton path): the engines are built for one
TensorRT version, so build in the NGC PyTorch image of the same release as the
Triton image (see docker/). ``torch_tensorrt`` is imported only here.

Example:
    >>> export_tensorrt(model, spec, "model.pt", precision="fp16", min_batch=1, opt_batch=8, max_batch=16)
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Iterable

import torch
from torch import nn

from yolo_server.darknet.cfg import DarknetSpec
from yolo_server.export.torchscript import InferenceWrapper, example_input

TENSORRT_PRECISIONS = ("fp16", "fp32", "int8")


class TensorRTUnavailable(RuntimeError):
    """The tensorrt target cannot run here; the message says what to install."""


def tensorrt_available() -> str | None:
    """None when the tensorrt target can run here, else the reason it cannot."""
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch (the tensorrt target needs an NVIDIA GPU and a CUDA build of torch)"
    try:
        _import_torch_tensorrt()
    except TensorRTUnavailable as exc:
        return str(exc)
    return None


def _import_torch_tensorrt() -> ModuleType:
    try:
        import torch_tensorrt
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"torch_tensorrt is not importable ({exc}); install it with `pip install 'yolo-server[tensorrt]'` "
            "matching your torch and CUDA, or build inside the NGC PyTorch image (docker/Dockerfile.builder)"
        ) from None
    return torch_tensorrt


def export_tensorrt(
    model: nn.Module,
    spec: DarknetSpec,
    path: str | Path,
    precision: str = "fp16",
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 16,
    calibration: Iterable[torch.Tensor] | None = None,
) -> None:
    """Compile for the GPU with a dynamic batch dimension and save TorchScript with embedded engines.

    Args:
        precision: ``fp16`` (default), ``fp32``, or ``int8`` (needs ``calibration`` batches, float32 [B, 3, H, W]).
    """
    if precision not in TENSORRT_PRECISIONS:
        raise ValueError(f"tensorrt precision must be one of {', '.join(TENSORRT_PRECISIONS)}; got {precision!r}")
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, {opt_batch}, {max_batch}")
    reason = tensorrt_available()
    if reason:
        raise TensorRTUnavailable(reason)
    torch_tensorrt = _import_torch_tensorrt()
    device = torch.device("cuda")
    # fp32 in and out at the Triton boundary; TensorRT picks fp16 kernels inside when enabled
    wrapper = InferenceWrapper(model.eval(), torch.float32, channels_last=False).to(device).eval()
    shape = (3, spec.net.height, spec.net.width)
    inputs = [
        torch_tensorrt.Input(
            min_shape=(min_batch, *shape), opt_shape=(opt_batch, *shape), max_shape=(max_batch, *shape), dtype=torch.float32
        )
    ]
    enabled = {torch.float32}
    if precision == "fp16":
        enabled.add(torch.float16)
    options: dict[str, object] = {}
    if precision == "int8":
        if calibration is None:
            raise ValueError("int8 needs calibration batches (representative float32 [B, 3, H, W] inputs)")
        enabled |= {torch.float16, torch.int8}
        options["calibrator"] = _int8_calibrator(torch_tensorrt, calibration, device)
    with torch.no_grad():
        compiled = torch_tensorrt.compile(
            wrapper, ir="torchscript", inputs=inputs, enabled_precisions=enabled, truncate_long_and_double=True, **options
        )
        example = example_input(spec, batch=min_batch, device=device)
        compiled(example)  # fail here, not in Triton, if the engine does not run
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(compiled, str(path))


def _int8_calibrator(torch_tensorrt: ModuleType, batches: Iterable[torch.Tensor], device: torch.device) -> object:
    """A TensorRT entropy calibrator over in-memory batches (TorchScript-path PTQ API)."""
    dataset = torch.utils.data.TensorDataset(torch.cat([batch.float() for batch in batches]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=8)
    return torch_tensorrt.ptq.DataLoaderCalibrator(
        loader, use_cache=False, algo_type=torch_tensorrt.ptq.CalibrationAlgo.ENTROPY_CALIBRATION_2, device=device
    )
