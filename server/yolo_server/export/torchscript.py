"""The CPU artifact: a frozen TorchScript of the detector, and the runner that serves it.

Example:
    >>> model, spec = load_darknet(cfg, weights)
    >>> export_torchscript(model, spec, "model.pt", precision="fp32")
    >>> runner = TorchScriptRunner("model.pt", num_threads=2)
    >>> heads = runner(batch)            # float32 [B, 3, H, W] -> list of float32 [B, A*(5+C), h, w]
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from yolo_server.darknet.cfg import DarknetSpec
from yolo_server.export.precision import resolve_cpu_precision, torch_dtype


class InferenceWrapper(nn.Module):
    """Float32 NCHW in, float32 heads out (a tuple, as Triton's libtorch backend wants); computes in ``dtype``."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, channels_last: bool = True) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).to(dtype)  # leave the caller's module as it was
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return tuple(head.float().contiguous() for head in self.model(x))


def example_input(spec: DarknetSpec, batch: int = 2, device: str | torch.device = "cpu") -> torch.Tensor:
    """A float32 [batch, 3, H, W] tensor at the network size, for tracing and compiling."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, spec.net.height, spec.net.width, generator=generator).to(device)


def export_torchscript(model: nn.Module, spec: DarknetSpec, path: str | Path, precision: str = "fp32") -> str:
    """Trace, freeze and save the detector for CPU inference. Returns the resolved precision."""
    precision = resolve_cpu_precision(precision)
    wrapper = InferenceWrapper(model.eval(), torch_dtype(precision)).eval()
    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(wrapper, example_input(spec), check_trace=False)
        frozen = torch.jit.freeze(traced)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(frozen, str(path))
    return precision


class TorchScriptRunner:
    """Runs a saved detector on numpy batches; one instance per Triton model instance."""

    def __init__(self, path: str | Path, num_threads: int | None = None) -> None:
        if num_threads:
            torch.set_num_threads(num_threads)
        self.module = torch.jit.load(str(path), map_location="cpu").eval()

    def __call__(self, batch: np.ndarray | torch.Tensor) -> list[np.ndarray]:
        """float32 [B, 3, H, W] -> list of float32 [B, A*(5+C), h, w], one per [yolo] head."""
        tensor = torch.as_tensor(batch, dtype=torch.float32)
        with torch.inference_mode():
            heads: Sequence[torch.Tensor] = self.module(tensor)
        return [head.numpy() for head in heads]
