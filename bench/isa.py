"""Benchmarks on a narrower CPU than this one: ``--isa avx2`` computes and chooses as an AVX2-only machine would.

oneDNN's ``ONEDNN_MAX_CPU_ISA`` caps the kernels OpenVINO's CPU plugin runs; the plugin's ``OV_CPU_MAX_ISA``
caps what it reports (no BF16 below AVX512-BF16), and :class:`yolo_server.precision.CpuFeatures` reads
the first. Both are set before OpenVINO loads, and tritonserver's stubs inherit them. Measured on an
AVX512-BF16 EPYC: fp32 at batch 8 fell from 185 to 123 images/s under the cap, and bf16 fell back to fp32.
A capped machine is not a slower clock: compare ratios between precisions, not images/s across machines.

Example:
    >>> cap_isa("avx2")        # first thing in main()
    >>> isa_line()
    'cpu: avx avx2 fma (capped at AVX2; the machine has avx512_bf16 ...)'
"""

from __future__ import annotations

import os
import sys

ISA_CAPS = ("native", "avx2")


def cap_isa(isa: str) -> None:
    if isa == "native":
        return
    if "openvino" in sys.modules:
        raise RuntimeError("cap the ISA before OpenVINO is imported")
    from yolo_server.precision import ISA_CAP_VARIABLE

    os.environ[ISA_CAP_VARIABLE] = os.environ["OV_CPU_MAX_ISA"] = isa.upper()


def isa_line() -> str:
    """The features the served precision is chosen from, and the machine's own where a cap hides some."""
    from yolo_server.precision import ISA_CAP_VARIABLE, CpuFeatures

    seen, machine = CpuFeatures.of_this_machine(), CpuFeatures.of_this_machine(environ={})
    capped = os.environ.get(ISA_CAP_VARIABLE)
    suffix = f" (capped at {capped}; the machine has {machine.isa()})" if capped else ""
    return f"cpu: {seen.isa()}{suffix}; native bf16 {seen.native_bf16}, fast int8 {seen.fast_int8}"
