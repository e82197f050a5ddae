"""Client SDK for the YOLOv4 Triton server (no torch, no server code)."""

from __future__ import annotations

__version__ = "0.1.0"
