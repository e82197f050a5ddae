"""The detector as every export sees it: float32 NCHW in, a tuple of float32 heads out, any compute dtype.

Example:
    >>> model, spec = load_darknet(cfg, weights)
    >>> network = InferenceWrapper(model, torch.bfloat16).eval()
    >>> heads = network(example_input(spec, batch=2))   # tuple of float32 [2, A*(5+C), h, w]
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from yolo_server.darknet.cfg import DarknetSpec

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class InferenceWrapper(nn.Module):
    """Float32 NCHW in, float32 heads out (a tuple, as Triton's libtorch backend wants); computes in ``dtype``."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, channels_last: bool = True) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).to(dtype)  # leave the caller's module as it was
        if channels_last:
            # Module.to takes memory_format (torch's _parse_to), but torch's overloads of it leave it out
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
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


def torch_dtype(precision: str) -> torch.dtype:
    """The compute dtype of a precision name (one of :data:`TORCH_DTYPES`)."""
    return TORCH_DTYPES[precision]
