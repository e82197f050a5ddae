"""A real Docker engine for tests/docker: the daemon (started here when none answers), the local base image and the
cpu images, built from docker/Dockerfile.cpu as a user behind a mirror would build them.

Debian's ``docker.io`` (20.10, `make system-deps`) runs as ``dockerd --bridge=none --iptables=false``: containers
use the host's network, so every test's traffic stays on loopback. Builds go through its own CLI with BuildKit
(``/usr/bin/docker``): a newer CLI earlier on PATH refuses BuildKit builds without buildx. No registry serves a base
image here, so ``docker/debian-base.sh`` makes one (debootstrap + ``docker import``); pip in a build trusts the
host's CA bundle through the ``ca`` secret; the CPU build of torch that ``pip install torch==2.13.0`` takes here
(a local file) reaches the builder through ``docker/wheels/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import ROOT

DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
CPU_DOCKERFILE = ROOT / "docker" / "Dockerfile.cpu"
WHEELS = ROOT / "docker" / "wheels"
BASE_IMAGE = "yolo-debian-python:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TORCH = "torch==2.13.0"  # the Makefile's and Dockerfile.cpu's pin
# the compose service whose image each Dockerfile.cpu stage is
CPU_STAGES = {"server": "server-cpu", "builder": "builder-cpu", "loadtest": "locust-master"}
ENGINE_START_S = 60


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``docker ARGS`` with Debian's CLI, its output captured."""
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=check)


def engine_answers() -> bool:
    return docker("info", timeout=30, check=False).returncode == 0


@contextmanager
def docker_engine(log: Path) -> Iterator[None]:
    """A Docker engine: the running one, or ``dockerd`` started here and stopped (by its pid) on exit."""
    if not Path(DOCKER).exists() or not Path(DOCKERD).exists():
        pytest.fail(f"{DOCKER} or {DOCKERD} is missing: `make system-deps` installs Debian's docker.io")
    if engine_answers():
        yield
        return
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            [DOCKERD, "--bridge=none", "--iptables=false"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + ENGINE_START_S
        while not engine_answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start (exit {daemon.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield
    finally:
        daemon.terminate()  # dockerd stops its containers, then exits
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)


def ensure_base_image() -> float:
    """``docker/debian-base.sh``: the local Debian 12 + Python 3.11 base; seconds taken (0 when it existed)."""
    started = time.monotonic()
    subprocess.run(
        ["sh", str(ROOT / "docker" / "debian-base.sh"), BASE_IMAGE], env={**os.environ, "DOCKER": DOCKER},
        check=True, timeout=900, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.monotonic() - started


def stage_wheels() -> None:
    """The torch wheel ``pip install torch==2.13.0`` takes on this host, into docker/wheels/ (pip's own choice)."""
    if any(WHEELS.glob("torch-*.whl")):
        return
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", "-d", str(WHEELS), TORCH],
        check=True, timeout=900,
    )  # fmt: skip


def cpu_images() -> dict[str, str]:
    """Each Dockerfile.cpu stage's image name, as compose names it."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return {stage: services[service]["image"] for stage, service in CPU_STAGES.items()}


@dataclass(frozen=True)
class Build:
    image: str
    seconds: float
    size_bytes: int


def build_cpu_stage(stage: str, image: str, log: Path, timeout_s: float = 1500) -> Build:
    """``docker build --target STAGE`` of docker/Dockerfile.cpu on the local base, the CA as a secret."""
    args = [
        "build", "--network", "host", "--progress", "plain", "-f", str(CPU_DOCKERFILE), "--target", stage, "-t", image,
        "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", "TORCH_INDEX_URL=",
    ]  # fmt: skip
    if CA_BUNDLE.exists():
        args += ["--secret", f"id=ca,src={CA_BUNDLE}"]
    started = time.monotonic()
    with open(log, "ab") as out:
        done = subprocess.run(
            [DOCKER, *args, str(ROOT)], env={**os.environ, "DOCKER_BUILDKIT": "1"}, stdout=out,
            stderr=subprocess.STDOUT, timeout=timeout_s, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"building {stage} failed:\n{log.read_text()[-6000:]}")
    size = int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
    return Build(image, time.monotonic() - started, size)


def container_ids(project: str, service: str) -> list[str]:
    """The ids of a compose service's containers, running or not."""
    found = docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
        "--filter", f"label=com.docker.compose.service={service}",
    )  # fmt: skip
    return found.stdout.split()


def inspect(container: str, template: str) -> str:
    return docker("inspect", "--format", template, container).stdout.strip()


def wait_healthy(container: str, timeout_s: float, logs: Sequence[str] = ()) -> None:
    """Until Docker's healthcheck says healthy; fails with the container's log tail when it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while (status := inspect(container, "{{.State.Status}} {{.State.Health.Status}}")) != "running healthy":
        if status.startswith("exited") or time.monotonic() > deadline:
            tail = docker("logs", "--tail", "60", container, check=False)
            pytest.fail(f"{container} is {status}:\n{tail.stdout[-4000:]}{tail.stderr[-4000:]}{''.join(logs)}")
        time.sleep(2)
