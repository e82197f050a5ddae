"""Precision choice for the CPU path: float32 always, bfloat16 where the CPU has native bf16 math."""

from __future__ import annotations

import torch

CPU_PRECISIONS = ("fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 convolutions beat fp32."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_cpu_precision(precision: str) -> str:
    """``auto`` -> bf16 where native, else fp32; explicit choices pass through."""
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision not in CPU_PRECISIONS:
        raise ValueError(f"CPU precision must be one of auto, {', '.join(CPU_PRECISIONS)}; got {precision!r}")
    return precision


def torch_dtype(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
