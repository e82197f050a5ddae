"""Where the repository's files are, for tests (the checkout's root)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
