"""The served cpu precision: chosen from the CPU's features (injected here) among the IRs a repository holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolo_server.precision import CpuFeatures, resolve_cpu_precision
from yolo_server.repository.spec import INT8_ARTIFACT
from yolo_server.triton.runtime import served_ir

ALL_BUILT = ("fp32", "bf16", "int8")
ZEN3 = frozenset({"sse4_2", "avx", "avx2", "fma"})  # AVX2, no AVX-512, no bf16
SAPPHIRE_RAPIDS = ZEN3 | {"avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
ZEN4 = ZEN3 | {"avx512f", "avx512_vnni", "avx512_bf16"}
OLD_ATOM = frozenset({"sse4_2"})


@pytest.mark.parametrize(
    ("flags", "built", "served"),
    [
        (ZEN3, ALL_BUILT, "int8"),
        (ZEN3, ("fp32", "bf16"), "fp32"),  # emulated bf16 is no faster than fp32
        (ZEN4, ALL_BUILT, "int8"),
        (ZEN4, ("fp32", "bf16"), "bf16"),
        (SAPPHIRE_RAPIDS, ("fp32", "bf16"), "bf16"),
        (OLD_ATOM, ALL_BUILT, "fp32"),  # INT8 kernels below AVX2 are not measured faster
        (frozenset(), ALL_BUILT, "fp32"),  # cpuinfo unreadable
    ],
    ids=["avx2", "avx2-no-int8", "avx512-bf16", "avx512-bf16-no-int8", "amx-no-int8", "sse", "unknown"],
)
def test_auto_serves_the_fastest_precision_built(flags: frozenset[str], built: tuple[str, ...], served: str) -> None:
    assert resolve_cpu_precision("auto", built, CpuFeatures(flags)) == served


def test_explicit_precisions_must_have_been_built() -> None:
    assert resolve_cpu_precision("bf16", cpu=CpuFeatures(ZEN3)) == "bf16"  # asked for: served, even emulated
    assert resolve_cpu_precision("int8", ALL_BUILT, CpuFeatures(OLD_ATOM)) == "int8"
    with pytest.raises(ValueError, match="'int8' was not built into this repository"):
        resolve_cpu_precision("int8")
    with pytest.raises(ValueError, match="CPU precision must be one of auto, fp32, bf16, int8"):
        resolve_cpu_precision("fp16")


def cpuinfo(tmp_path: Path, flags: frozenset[str]) -> str:
    path = tmp_path / "cpuinfo"
    line = f"flags\t\t: {' '.join(sorted(flags))}\n"
    path.write_text(f"processor\t: 0\n{line}\nprocessor\t: 1\n{line}")
    return str(path)


@pytest.mark.parametrize(
    ("cap", "native_bf16", "fast_int8"),
    [("", True, True), ("ALL", True, True), ("AVX512_CORE_BF16", True, True), ("avx2", False, True),
     ("AVX2_VNNI", False, True), ("AVX", False, False), ("SSE41", False, False)],
)  # fmt: skip
def test_onednn_isa_cap_caps_the_features_read(tmp_path: Path, cap: str, native_bf16: bool, fast_int8: bool) -> None:
    """A machine told to compute as an AVX2 one (oneDNN's ONEDNN_MAX_CPU_ISA) also chooses as one."""
    cpu = CpuFeatures.of_this_machine(cpuinfo(tmp_path, SAPPHIRE_RAPIDS), {"ONEDNN_MAX_CPU_ISA": cap})
    assert (cpu.native_bf16, cpu.fast_int8) == (native_bf16, fast_int8)
    assert "amx_bf16" not in cpu.flags or cap in ("", "ALL")
    assert ("avx_vnni" in cpu.flags) == (cap not in ("avx2", "AVX", "SSE41"))  # AVX2 alone: Zen 3, no VNNI


def test_unreadable_cpuinfo_serves_fp32(tmp_path: Path) -> None:
    cpu = CpuFeatures.of_this_machine(str(tmp_path / "missing"), {})
    assert cpu.flags == frozenset() and cpu.fastest_first() == ("fp32",) and cpu.isa() == "no AVX"


def test_served_ir_is_the_int8_file_only_where_int8_wins(tmp_path: Path) -> None:
    artifact = tmp_path / "1" / "model.xml"
    assert served_ir(artifact, "auto", INT8_ARTIFACT, CpuFeatures(ZEN3)) == (artifact.with_name(INT8_ARTIFACT), "int8")
    assert served_ir(artifact, "auto", INT8_ARTIFACT, CpuFeatures(OLD_ATOM)) == (artifact, "fp32")
    assert served_ir(artifact, "auto", "", CpuFeatures(ZEN4)) == (artifact, "bf16")  # the gate refused INT8
    assert served_ir(artifact, "fp32", INT8_ARTIFACT, CpuFeatures(ZEN4)) == (artifact, "fp32")
