"""The processes of a running tritonserver and the memory they hold, read from /proc: its Python-backend stubs by
model, and the resident memory of the server, its stubs and its shared-memory pools.

What bench/bench_oversized.py and bench/bench_stub_memory.py measure, and tests/integration (through
tests/helpers/serving.py and test_oversized.py) check.

Example:
    >>> stub_models(triton_pid)              # {stub pid: model}
    >>> print(server_memory(triton_pid, "yolo_server_1234_"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolo_server.launcher.supervise import stub_processes


def stub_models(triton_pid: int) -> dict[int, str]:
    """Each Python-backend stub under tritonserver -> the model whose ``MODEL/VERSION/model.py`` it runs."""
    models = {}
    for pid in stub_processes(triton_pid):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        script = next((arg for arg in argv if arg.endswith(b"/model.py")), None)
        if script is not None:  # a zombie has no argv left
            models[pid] = Path(script.decode()).parent.parent.name
    return models


def resident_kib(pid: int) -> int:
    """A process's resident memory (``VmRSS``), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True)
class Memory:
    """Resident memory of tritonserver and its stubs (MiB), and the server's Python-backend pools in /dev/shm."""

    triton_mib: int
    stubs_mib: int
    shm_pools_mib: int

    @property
    def total_mib(self) -> int:
        """What the server holds: tritonserver plus its stubs (shared pages counted in each process that maps them)."""
        return self.triton_mib + self.stubs_mib

    def __str__(self) -> str:
        return f"{self.total_mib} MiB (tritonserver {self.triton_mib} + stubs {self.stubs_mib}; shm pools {self.shm_pools_mib})"


def server_memory(triton_pid: int, shm_prefix: str) -> Memory:
    """``shm_prefix``: how the server's shared-memory regions start (``yolo_server_<launcher pid>_``)."""
    stubs = sum(resident_kib(pid) // 1024 for pid in stub_processes(triton_pid))
    pools = sum(path.stat().st_size for path in Path("/dev/shm").glob(f"{shm_prefix}*"))
    return Memory(resident_kib(triton_pid) // 1024, stubs, pools >> 20)
