"""The real Docker engine and the cpu images, once per session (tests/helpers/docker_engine.py).

The images are built as CI builds them on a fresh machine: the local Debian base when it is missing, then each
Dockerfile.cpu stage, with BuildKit's layer cache (a warm rebuild takes seconds). Their sizes and build times are
printed (``-s`` or the report's captured output).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.docker_engine import (
    Build,
    build_cpu_stage,
    cpu_images,
    docker_engine,
    ensure_base_image,
    stage_wheels,
)


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with docker_engine(tmp_path_factory.mktemp("dockerd") / "dockerd.log"):
        yield


@pytest.fixture(scope="session")
def images(engine: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Build]:
    """Each Dockerfile.cpu stage built: ``server``, ``builder``, ``loadtest``."""
    log = tmp_path_factory.mktemp("builds") / "build.log"
    base_s = ensure_base_image()
    stage_wheels()
    builds = {stage: build_cpu_stage(stage, image, log) for stage, image in cpu_images().items()}
    print(f"\nlocal base image: {base_s:.0f} s")
    for build in builds.values():
        print(f"{build.image:40} {build.size_bytes / 1e6:8.0f} MB  built in {build.seconds:6.1f} s")
    return builds
