"""How many CPUs ``serve`` may use, and the model instances and threads that rule gives each model role.

The CPUs are the smaller of the affinity mask and the cgroup CPU quota, so a container limited to 4 CPUs on a
64-core host is sized for 4: Linux shows it all 64 cores, and 64 one-thread instances would be throttled to 4
CPUs' worth of time, each batch 16 times slower. The quota is v2's ``cpu.max`` or v1's ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us`` of this process' cgroup and of every cgroup above it (a parent's limit binds too).

Example:
    >>> budget = cpu_budget()                       # this process: affinity and cgroup quota
    >>> budget.cpus, budget.describe()
    (4, '4 CPUs (affinity 64, cgroup quota 4)')
    >>> sized_settings("images", python=True, cpus=4)
    {'instances': 5, 'lone_threads': 4, 'batch_threads': 1}
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yolo_server.triton.settings import BATCH_THREADS, INSTANCES, LONE_THREADS


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs this process may use: ``affinity`` cores in its mask, ``quota`` CPUs of cgroup time (None: none).

    ``cpus`` is their minimum, a fractional quota rounded down (at least 1): a 2.5-CPU quota runs two one-thread
    instances at full speed, where a third would make all three wait for the throttle.
    """

    affinity: int
    quota: float | None = None

    def __post_init__(self) -> None:
        if self.affinity < 1 or (self.quota is not None and self.quota <= 0):
            raise ValueError(f"affinity {self.affinity} and quota {self.quota} must be positive")

    @property
    def cpus(self) -> int:
        if self.quota is None:
            return self.affinity
        return max(1, min(self.affinity, math.floor(self.quota)))

    def describe(self) -> str:
        quota = "none" if self.quota is None else f"{self.quota:g}"
        return f"{self.cpus} CPU{'s' if self.cpus != 1 else ''} (affinity {self.affinity}, cgroup quota {quota})"


def cpu_budget(root: Path = Path("/"), affinity: Callable[[], set[int]] = lambda: os.sched_getaffinity(0)) -> CpuBudget:
    """This process' :class:`CpuBudget`; ``root`` is where ``/proc`` and ``/sys`` are found (tests pass a tree)."""
    return CpuBudget(len(affinity()), cgroup_quota(root))


def cgroup_quota(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota, in CPUs, on this process' cgroup and its ancestors (v2, else v1); None: no quota."""
    try:
        membership = (root / "proc/self/cgroup").read_text()
    except OSError:
        return None
    quotas: list[float] = []
    for line in membership.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2's unified hierarchy: "0::/path"
            quotas += _quotas(root / "sys/fs/cgroup", path, _v2_quota)
        elif "cpu" in controllers.split(","):
            quotas += _quotas(_v1_mount(root), path, _v1_quota)
    return min(quotas, default=None)


def _quotas(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quota of each cgroup from ``path`` up to the mount's root.

    Inside a container's cgroup namespace the path is "/" and the mount is the container's own cgroup; where the
    path does not exist under the mount (a host path seen from a container without one), the mount root is read.
    """
    directory = mount / path.strip("/")
    if not directory.is_dir():
        directory = mount
    found = []
    while True:
        quota = read(directory)
        if quota is not None:
            found.append(quota)
        if directory == mount or mount not in directory.parents:
            return found
        directory = directory.parent


def _v2_quota(directory: Path) -> float | None:
    """``cpu.max``: "QUOTA PERIOD" in microseconds, or "max PERIOD" for none."""
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_mount(root: Path) -> Path:
    base = root / "sys/fs/cgroup"
    for name in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
        if (base / name).is_dir():
            return base / name
    return base / "cpu"


def _v1_quota(directory: Path) -> float | None:
    """``cpu.cfs_quota_us`` (-1: none) over ``cpu.cfs_period_us``."""
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


# One fused instance per CPU and one more: an instance leaves its CPU idle while Triton gathers its next batch and
# takes its responses, and the spare one fills those gaps (demo, concurrency 16, perf_analyzer: on 1 CPU 1, 2, 3
# instances gave 29, 50, 46 images/s; on 2 CPUs 2, 3, 4 gave 80, 86, 82). The number of CPUs as threads where one
# instance runs alone, and a quarter of the CPUs for the postprocess: it took 1.6 ms of CPU an image against the
# preprocess' 5 with NMS on the CPU, less with NMS on the GPU (docs/cpu-serving.md "Sized to the machine").
def sized_settings(role: str, python: bool, cpus: int) -> dict[str, int]:
    """The sizing rule: each knob of a model of ``role`` (a contract role; ``python``: a Python-backend model)
    on ``cpus`` CPUs.

    - the fused cpu model (the ``images`` role in Python): one instance per CPU and one more, each batch on one
      thread, a lone image on every CPU (an idle server gives one request all the cores);
    - the preprocess: one instance per CPU (it decodes one image at a time);
    - the cpu detector (``--no-fused``): one instance running every batch on every CPU;
    - the postprocess: a quarter of the CPUs, at least one.

    The tensorrt detector runs on the GPU: nothing of it is sized to the CPUs.
    """
    if role == "images" and python:
        return {INSTANCES: cpus + 1, LONE_THREADS: cpus, BATCH_THREADS: 1}
    if role == "preprocess":
        return {INSTANCES: cpus}
    if role == "detector" and python:
        return {INSTANCES: 1, LONE_THREADS: cpus, BATCH_THREADS: cpus}
    if role == "postprocess":
        return {INSTANCES: max(1, math.ceil(cpus / 4))}
    return {}
