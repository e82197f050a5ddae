"""The precisions each target builds, and which one the cpu target serves: the fastest built that this CPU runs natively.

No torch and no openvino here: the cpu detector's stub resolves ``auto`` with this module when it loads.

The order was measured, not assumed (docs/benchmarks.md, "INT8, network images/s"): on the demo network, OpenVINO's INT8 IR ran 1.8x its fp32 at batch 8 on AVX2 (no AVX-512, no
bf16), and 1.5x bf16 on AVX512-BF16; bf16 runs 2x fp32 where the CPU has bf16 math and no faster where
it does not. So:

    =====================  =====================================
    the CPU has            fastest first (of the precisions built)
    =====================  =====================================
    AVX512-BF16 or AMX     int8, bf16, fp32
    AVX2                   int8, fp32
    neither                fp32
    =====================  =====================================

``ONEDNN_MAX_CPU_ISA`` (oneDNN's own cap, which OpenVINO's CPU plugin obeys) caps the features read here too,
so a machine told to compute as an AVX2 one also chooses as one.

Example:
    >>> cpu = CpuFeatures(frozenset({"avx2", "fma"}))
    >>> resolve_cpu_precision("auto", built=("fp32", "bf16", "int8"), cpu=cpu)
    'int8'
    >>> resolve_cpu_precision("auto", cpu=cpu)     # no INT8 IR in the repository
    'fp32'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

AUTO = "auto"
CPU_PRECISIONS = ("fp32", "bf16", "int8")
# one fp32 IR serves both (the plugin's precision hint); INT8 is an IR of its own, built with calibration images
IR_PRECISIONS = ("fp32", "bf16")
TENSORRT_PRECISIONS = ("fp16", "fp32")
# what `yolo-server build --precision` takes per target. cpu "auto": the fastest built on the serving CPU; the
# detector decides at load. int8 needs calibration images, and is written only where it passes its accuracy gate
PRECISIONS = {"cpu": (AUTO, *CPU_PRECISIONS), "tensorrt": TENSORRT_PRECISIONS}
DEFAULT_PRECISION = {"cpu": AUTO, "tensorrt": "fp16"}
# asked for by name, refused with the reason (the CLI offers them so that the user reads it)
UNSUPPORTED_PRECISIONS = {
    "tensorrt": {
        "int8": "not built: Torch-TensorRT's dynamo frontend has no INT8 calibrator (the TorchScript frontend's "
        "torch_tensorrt.ptq cannot compile this cfg-driven model); its INT8 path is quantize-aware export through "
        "NVIDIA ModelOpt, which this project does not do. Use fp16."
    }
}
# the in-process Detector's torch network (yolo_server.pipeline): the IR's precisions, or the fastest of them here
EAGER_PRECISIONS = (AUTO, *IR_PRECISIONS)
# every name the CLI offers, served or refused, each once
ALL_PRECISIONS = tuple(
    dict.fromkeys(p for table in (*PRECISIONS.values(), *UNSUPPORTED_PRECISIONS.values()) for p in table)
)
ISA_CAP_VARIABLE = "ONEDNN_MAX_CPU_ISA"
# flag prefixes a cap leaves out, from the widest cap down (the first whose name starts the cap's value)
_CAPPED_FLAGS = (
    ("AVX512", ("amx",)),
    ("AVX2_VNNI", ("avx512", "amx")),
    ("AVX2", ("avx512", "amx", "avx_vnni")),
    ("AVX", ("avx2", "avx512", "amx", "avx_vnni")),
)
_ALL_VECTOR_FLAGS = ("avx", "amx")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU flags that decide the served precision (``/proc/cpuinfo``'s, lower case)."""

    flags: frozenset[str]

    @classmethod
    def of_this_machine(cls, cpuinfo: str = "/proc/cpuinfo", environ: Mapping[str, str] = os.environ) -> CpuFeatures:
        """This machine's flags, less those ``ONEDNN_MAX_CPU_ISA`` caps away; none where cpuinfo is unreadable."""
        try:
            with open(cpuinfo) as handle:
                lines = [line for line in handle if line.startswith("flags")]
        except OSError:
            lines = []
        flags = frozenset(lines[0].partition(":")[2].split()) if lines else frozenset()
        return cls(flags).capped(environ.get(ISA_CAP_VARIABLE, ""))

    def capped(self, cap: str) -> CpuFeatures:
        """These features under a oneDNN ISA cap (``AVX2``, ``AVX512_CORE``, ``SSE41``...; empty: no cap)."""
        cap = cap.strip().upper()
        if not cap or cap == "ALL":
            return self
        dropped = next((prefixes for name, prefixes in _CAPPED_FLAGS if cap.startswith(name)), _ALL_VECTOR_FLAGS)
        return CpuFeatures(frozenset(flag for flag in self.flags if not flag.startswith(dropped)))

    @property
    def native_bf16(self) -> bool:
        """AVX512-BF16 or AMX: bf16 convolutions at twice fp32's speed."""
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def fast_int8(self) -> bool:
        """AVX2 or wider: OpenVINO's INT8 convolutions beat fp32 (measured from AVX2 up, VNNI or not)."""
        return "avx2" in self.flags

    def fastest_first(self) -> tuple[str, ...]:
        """The precisions this CPU serves well, fastest first (the module's table)."""
        return (*(("int8",) if self.fast_int8 else ()), *(("bf16",) if self.native_bf16 else ()), "fp32")

    def isa(self) -> str:
        """The flags that matter here, for benchmark and log lines."""
        shown = sorted(flag for flag in self.flags if flag.startswith(("avx", "amx", "fma")))
        return " ".join(shown) or "no AVX"


def cpu_has_native_bf16() -> bool:
    return CpuFeatures.of_this_machine().native_bf16


def resolve_cpu_precision(precision: str, built: Sequence[str] = IR_PRECISIONS, cpu: CpuFeatures | None = None) -> str:
    """``auto`` -> the fastest of ``built`` on ``cpu`` (default: this machine's); explicit choices must be built."""
    if precision == AUTO:
        cpu = cpu or CpuFeatures.of_this_machine()
        return next((choice for choice in cpu.fastest_first() if choice in built), "fp32")
    if precision not in CPU_PRECISIONS:
        raise ValueError(f"CPU precision must be one of auto, {', '.join(CPU_PRECISIONS)}; got {precision!r}")
    if precision not in built:
        raise ValueError(f"precision {precision!r} was not built into this repository (built: {', '.join(built)})")
    return precision


def check_precision(target: str, precision: str) -> None:
    """Refuse a precision that ``target`` does not build, saying why."""
    refused = UNSUPPORTED_PRECISIONS.get(target, {})
    if precision in refused:
        raise ValueError(f"{target} precision {precision!r}: {refused[precision]}")
    if precision not in PRECISIONS[target]:
        raise ValueError(
            f"precision {precision!r} is not available on {target} (choose from {', '.join(PRECISIONS[target])})"
        )
