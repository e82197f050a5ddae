"""The GPU artifact: the exported detector compiled by Torch-TensorRT's dynamo frontend, saved as TorchScript.

The path is ``torch.export`` (:mod:`yolo_server.export.program`, dynamic batch)
-> ``torch_tensorrt.dynamo.compile`` (one optimization profile: min/opt/max batch)
-> ``torch_tensorrt.save(output_format="torchscript")``, which Triton's PyTorch
backend serves (``platform: "pytorch_libtorch"``; it links the Torch-TensorRT
runtime). TorchScript rather than a bare TensorRT plan because the dynamo
partitioner leaves any op without a converter in PyTorch between engines: every
cfg a user brings still compiles, and the result is one file either way. The
engines are built for one TensorRT version and GPU model, so build in the NGC
PyTorch image of the Triton image's release (docker/). ``torch_tensorrt`` is
imported only here.

Example:
    >>> export_tensorrt(model, spec, "model.pt", precision="fp16", batches=BatchRange(1, 16, 32))
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from yolo_server.darknet.cfg import DarknetSpec
from yolo_server.export.program import BatchRange, export_program
from yolo_server.export.wrapper import example_input
from yolo_server.repository.spec import check_precision

TARGET = "tensorrt"
ENABLED_PRECISIONS = {"fp16": (torch.float16, torch.float32), "fp32": (torch.float32,)}
# the prefix the dynamo partitioner gives the TensorRT submodules of the compiled GraphModule
ENGINE_PREFIX = "_run_on_acc"


class TensorRTUnavailable(RuntimeError):
    """The tensorrt target cannot run here; the message says what is missing."""


def tensorrt_available(device: str | torch.device = "cuda") -> str | None:
    """None when the tensorrt target can build on ``device`` here, else the reason it cannot."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
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
            f"torch_tensorrt is not importable ({exc}); install it with `pip install './server[tensorrt]'` "
            "matching your torch and CUDA, or build inside the NGC PyTorch image (docker/Dockerfile.builder)"
        ) from None
    return torch_tensorrt


def count_engines(compiled: nn.Module) -> int:
    """How many TensorRT engines the partitioner made (1 when the whole network converted)."""
    return sum(1 for name, _ in compiled.named_children() if name.startswith(ENGINE_PREFIX))


def export_tensorrt(
    model: nn.Module,
    spec: DarknetSpec,
    path: str | Path,
    precision: str = "fp16",
    batches: BatchRange = BatchRange(1, 16, 32),
    device: str | torch.device = "cuda",
) -> int:
    """Compile for TensorRT with a dynamic batch and save TorchScript with the engines embedded.

    Args:
        precision: ``fp16`` (TensorRT may pick fp16 kernels; fp32 in and out) or ``fp32``.
        batches: the profile: every batch in ``minimum..maximum`` runs, tuned for ``optimum``.
        device: the CUDA device to build on (the engines run on that GPU model only).
    Returns:
        The number of TensorRT engines in the artifact.
    """
    check_precision(TARGET, precision)
    reason = tensorrt_available(device)
    if reason:
        raise TensorRTUnavailable(reason)
    torch_tensorrt = _import_torch_tensorrt()
    program = export_program(model, spec, batches, device)
    shape = (3, spec.net.height, spec.net.width)
    inputs = [
        torch_tensorrt.Input(
            min_shape=(batches.minimum, *shape),
            opt_shape=(batches.optimum, *shape),
            max_shape=(batches.maximum, *shape),
            dtype=torch.float32,
        )
    ]
    compiled = torch_tensorrt.dynamo.compile(
        program,
        inputs=inputs,
        enabled_precisions=set(ENABLED_PRECISIONS[precision]),
        device=torch.device(device),
        truncate_double=True,
        # the C++ runtime: the only one TorchScript can carry into Triton's libtorch
        use_python_runtime=False,
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    example = example_input(spec, batch=batches.optimum, device=device)
    torch_tensorrt.save(compiled, str(path), output_format="torchscript", inputs=[example])
    _check_saved(path, spec, batches, device)
    return count_engines(compiled)


def _check_saved(path: str | Path, spec: DarknetSpec, batches: BatchRange, device: str | torch.device) -> None:
    """Fail the build, not Triton, when the saved file does not load or run at the profile's ends."""
    module = torch.jit.load(str(path), map_location=device).eval()
    with torch.no_grad():
        for batch in sorted({batches.minimum, batches.maximum}):
            heads = module(example_input(spec, batch=batch, device=device))
            if any(head.shape[0] != batch or head.dtype != torch.float32 for head in heads):
                raise RuntimeError(
                    f"{path}: the saved detector returns {[tuple(h.shape) for h in heads]} at batch {batch}"
                )
