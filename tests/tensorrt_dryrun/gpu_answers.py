"""The CUDA queries Torch-TensorRT 2.9 makes, answered as an H100 would; import this before ``torch_tensorrt``.

Torch-TensorRT asks at import which device is current and what it can do (``_defaults.default_device``,
``utils.is_tegra_platform``/``is_thor``), and ``dynamo.compile`` asks again for free memory. Without a GPU
torch raises on each. Only these questions are answered: nothing here makes a tensor on a GPU, and any CUDA
allocation or kernel still fails (``torch.cuda.is_available()`` stays False), so the dry run cannot pass by
running something on a device that is not there. Upstream knows the import-time queries: pytorch/TensorRT
PR #4504, "Fix CPU-only import".
"""

from __future__ import annotations

import types

import torch

H100 = types.SimpleNamespace(
    name="NVIDIA H100 80GB HBM3", major=9, minor=0, total_memory=80 * 2**30, multi_processor_count=132
)
DEVICE_INDEX = 0


def answer_cuda_queries() -> None:
    torch.cuda.current_device = lambda: DEVICE_INDEX
    torch.cuda.device_count = lambda: 1
    torch.cuda.get_device_capability = lambda device=None: (H100.major, H100.minor)
    torch.cuda.get_device_properties = lambda device=None: H100
    torch.cuda.get_device_name = lambda device=None: H100.name
    torch.cuda.mem_get_info = lambda device=None: (H100.total_memory, H100.total_memory)
