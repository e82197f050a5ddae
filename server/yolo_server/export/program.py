"""The detector as a ``torch.export`` program with a dynamic batch: the input of Torch-TensorRT's dynamo frontend.

Everything before the TensorRT call happens here, on any device, so CPU machines
build and test exactly what a GPU build hands to ``torch_tensorrt.dynamo.compile``.

Example:
    >>> model, spec = load_darknet("models/darknet/yolov4.cfg")
    >>> program = export_program(model, spec, BatchRange(1, 8, 32), device="cpu")
    >>> heads = program.module()(torch.rand(3, 3, 608, 608))   # any batch in 1..32
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from yolo_server.darknet.cfg import DarknetSpec
from yolo_server.export.wrapper import InferenceWrapper, example_input

BATCH_DIM = "batch"


@dataclass(frozen=True)
class BatchRange:
    """The batch sizes one compiled artifact accepts: ``minimum <= optimum <= maximum`` (a TensorRT profile)."""

    minimum: int
    optimum: int
    maximum: int

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.optimum <= self.maximum:
            raise ValueError(
                f"need 1 <= min_batch <= opt_batch <= max_batch, got {self.minimum}, {self.optimum}, {self.maximum}"
            )

    @property
    def example(self) -> int:
        """The batch to trace with: the optimum, raised to 2 where the range allows.

        Torch-TensorRT tunes each engine's profile for the export's example batch (the ``opt_shape`` it is handed
        is ignored for an exported program), so the optimum is traced. ``torch.export`` specializes a traced 1,
        which a dynamic range cannot take.
        """
        return min(max(2, self.optimum), self.maximum)


def dynamic_batch_shapes(batches: BatchRange) -> tuple[dict[int, torch.export.Dim], ...] | None:
    """``dynamic_shapes`` of the one input: dim 0 in ``minimum..maximum``; None when the range is one size."""
    if batches.minimum == batches.maximum:
        return None
    return ({0: torch.export.Dim(BATCH_DIM, min=batches.minimum, max=batches.maximum)},)


def export_program(
    model: nn.Module,
    spec: DarknetSpec,
    batches: BatchRange,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.export.ExportedProgram:
    """Export the detector: float32 ``[B, 3, H, W]`` in, float32 heads ``[B, A*(5+C), h, w]`` out, ``B`` dynamic.

    Args:
        device: where the program's weights live (``cuda`` for the TensorRT build, ``cpu`` to test it).
        dtype: what the layers compute in; the boundary stays float32 either way.
    """
    wrapper = InferenceWrapper(model.eval(), dtype, channels_last=False).to(device).eval()
    example = example_input(spec, batch=batches.example, device=device)
    with torch.no_grad():
        return torch.export.export(wrapper, (example,), dynamic_shapes=dynamic_batch_shapes(batches), strict=False)
