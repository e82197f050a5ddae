"""The GPU artifact: the exported detector compiled by Torch-TensorRT's dynamo frontend, saved as TorchScript.

The path is ``torch.export`` (:mod:`yolo_server.export.program`, dynamic batch)
-> :func:`compile_detector` (``torch_tensorrt.dynamo.compile``, one optimization profile)
-> :func:`save_detector` (``torch_tensorrt.save(output_format="torchscript")``), which Triton's PyTorch
backend serves (``platform: "pytorch_libtorch"``; it links the Torch-TensorRT
runtime). TorchScript rather than a bare TensorRT plan because the dynamo
partitioner leaves any op without a converter in PyTorch between engines: every
cfg a user brings still compiles, and the result is one file either way. The
engines are built for one TensorRT version and GPU model, so build in the NGC
PyTorch image of the Triton image's release (docker/). ``torch_tensorrt`` is
imported only here.

The profile: min and max come from the export's dynamic batch range, and the optimum from the export's example
batch (:attr:`BatchRange.example`); Torch-TensorRT ignores an ``opt_shape`` handed beside an exported program.
tests/tensorrt_dryrun/ runs :func:`compile_detector` through the real library on every ``make test``.

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

TARGET = "tensorrt"
# the dtypes TensorRT may pick kernels in, for each of the target's precisions (test_tensorrt_build: the same names)
ENABLED_PRECISIONS = {"fp16": (torch.float16, torch.float32), "fp32": (torch.float32,)}
# the prefix the dynamo partitioner gives the TensorRT submodules of the compiled GraphModule
ENGINE_PREFIX = "_run_on_acc"
NO_GPU = (
    "no CUDA GPU is visible to torch (the tensorrt target needs an NVIDIA GPU and a CUDA build of torch; "
    "in a container: `docker run --gpus all`, or compose's deploy.resources.devices)"
)


class TensorRTUnavailable(RuntimeError):
    """The tensorrt target cannot run here; the message says what is missing."""


def tensorrt_available(device: str | torch.device = "cuda") -> str | None:
    """None when the tensorrt target can build on ``device`` here, else the reason it cannot."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        return NO_GPU
    try:
        _import_torch_tensorrt()
    except TensorRTUnavailable as exc:
        return str(exc)
    return None


def _import_torch_tensorrt() -> ModuleType:
    try:
        import torch_tensorrt
    except Exception as exc:  # 2.9 also raises at import when it finds no CUDA device or no TensorRT library
        raise TensorRTUnavailable(
            f"torch_tensorrt is not importable ({type(exc).__name__}: {exc}); install it with "
            "`pip install './server[tensorrt]'` matching your torch and CUDA, or build inside the NGC PyTorch image "
            "(docker/Dockerfile.builder)"
        ) from None
    return torch_tensorrt


def cuda_device(device: str | torch.device = "cuda") -> torch.device:
    """``device`` with an explicit index: ``cuda`` -> ``cuda:<current>``.

    Torch-TensorRT turns an index-less ``cuda`` into ``Device(gpu_id=None)`` and then fails on
    ``torch.device(None)`` before it builds anything.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"TensorRT engines are built on a CUDA device, got {device}")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def check_profile(batches: BatchRange) -> None:
    """Refuse a profile the export cannot give: the engines are tuned for :attr:`BatchRange.example`."""
    if batches.example != batches.optimum:
        raise ValueError(
            f"opt_batch_size={batches.optimum} cannot be the TensorRT optimum with max_batch_size={batches.maximum}: "
            "the engines are tuned for the export's example batch, and torch.export cannot trace a dynamic batch "
            "at 1; choose --opt-batch-size 2 or more (or --max-batch-size 1)"
        )


def count_engines(compiled: nn.Module) -> int:
    """How many TensorRT engines the partitioner made (1 when the whole network converted)."""
    return sum(1 for name, _ in compiled.named_children() if name.startswith(ENGINE_PREFIX))


def engine_precisions(compiled: nn.Module) -> set[torch.dtype]:
    """The precisions every engine was built to allow, as Torch-TensorRT recorded them in each engine's settings.

    Empty when an engine records none: Torch-TensorRT 2.13+ dropped ``enabled_precisions`` (it lands in
    ``**kwargs``, silently ignored) and builds FP32 engines.
    """
    allowed: list[set[torch.dtype]] = []
    for name, engine in compiled.named_children():
        if name.startswith(ENGINE_PREFIX):
            recorded = getattr(getattr(engine, "settings", None), "enabled_precisions", None) or ()
            allowed.append({dtype.to(torch.dtype) if hasattr(dtype, "to") else dtype for dtype in recorded})
    return set.intersection(*allowed) if allowed else set()


def check_engine_precisions(compiled: nn.Module, precision: str) -> None:
    """Fail the build when the engines were not built for ``precision`` (a Torch-TensorRT that ignores the ask)."""
    allowed, asked = engine_precisions(compiled), set(ENABLED_PRECISIONS[precision])
    if allowed != asked:
        names = sorted(str(dtype).removeprefix("torch.") for dtype in allowed) or "none recorded"
        raise RuntimeError(
            f"the TensorRT engines allow {names}, not the {precision} asked for: this torch_tensorrt does not take "
            "enabled_precisions (2.13+ builds FP32); build with Torch-TensorRT 2.9, NGC 25.10's (docker/Dockerfile.builder)"
        )


def compile_detector(
    program: torch.export.ExportedProgram,
    spec: DarknetSpec,
    precision: str,
    batches: BatchRange,
    device: str | torch.device = "cuda",
    *,
    dryrun: bool = False,
) -> nn.Module:
    """The build's one ``torch_tensorrt.dynamo.compile`` call: a GraphModule with ``_run_on_acc_*`` engines.

    Args:
        program: from :func:`export_program` with the same ``spec`` and ``batches``.
        precision: ``fp16`` (TensorRT may pick fp16 kernels; fp32 in and out) or ``fp32``: one of
            :data:`ENABLED_PRECISIONS`, as the build's ``RepositorySpec`` checked it (not checked again here).
        device: the CUDA device the engines are built for (they run on that GPU model only).
        dryrun: lower, check converters and partition, but build no engine (the engine submodules stay fx
            GraphModules): what tests/tensorrt_dryrun/ runs without a GPU.
    """
    check_profile(batches)
    torch_tensorrt = _import_torch_tensorrt()
    shape = (3, spec.net.height, spec.net.width)
    profile = torch_tensorrt.Input(
        min_shape=(batches.minimum, *shape),
        opt_shape=(batches.optimum, *shape),
        max_shape=(batches.maximum, *shape),
        dtype=torch.float32,
    )
    compiled: nn.Module = torch_tensorrt.dynamo.compile(
        program,
        arg_inputs=[profile],
        enabled_precisions=set(ENABLED_PRECISIONS[precision]),
        device=cuda_device(device),
        # the C++ runtime: the only one TorchScript can carry into Triton's libtorch
        use_python_runtime=False,
        dryrun=dryrun,
    )
    return compiled


def save_detector(
    compiled: nn.Module, spec: DarknetSpec, path: str | Path, batches: BatchRange, device: str | torch.device
) -> None:
    """Save TorchScript (traced at the optimum on ``device``), then load it and run it at the profile's ends."""
    torch_tensorrt = _import_torch_tensorrt()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    example = example_input(spec, batch=batches.optimum, device=device)
    torch_tensorrt.save(compiled, str(path), output_format="torchscript", arg_inputs=[example])
    _check_saved(path, spec, batches, device)


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
        precision: ``fp16`` or ``fp32`` (:func:`compile_detector`; checked once, by the build's ``RepositorySpec``).
        batches: the profile: every batch in ``minimum..maximum`` runs, tuned for ``optimum``.
        device: the CUDA device to build on; ``cuda`` is the current one.
    Returns:
        The number of TensorRT engines in the artifact.
    """
    check_profile(batches)
    reason = tensorrt_available(device)
    if reason:
        raise TensorRTUnavailable(reason)
    device = cuda_device(device)
    program = export_program(model, spec, batches, device)
    compiled = compile_detector(program, spec, precision, batches, device)
    check_engine_precisions(compiled, precision)
    save_detector(compiled, spec, path, batches, device)
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
