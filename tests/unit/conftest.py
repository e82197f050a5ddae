"""Fixtures shared by unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.small_repository import LAYOUTS, build_small_repository


@pytest.fixture(scope="session")
def small_repositories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo detector at 128x128 built in each cpu layout: ``fused`` and ``ensemble``."""
    return {
        layout: build_small_repository(tmp_path_factory.mktemp(f"repository-{layout}"), layout) for layout in LAYOUTS
    }
