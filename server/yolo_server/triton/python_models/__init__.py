"""Sources of the ``model.py`` files that ``yolo-server build`` copies into a model repository.

They run only inside Triton's Python backend (they import ``triton_python_backend_utils``)
and stay thin: config parsing and request plumbing; the work is in ``yolo_server.triton``.
"""

from __future__ import annotations

from importlib import resources

ADAPTERS = ("preprocess", "detector", "postprocess", "fused")


def adapter_source(kind: str) -> str:
    """The ``model.py`` text for ``kind`` (one of :data:`ADAPTERS`)."""
    if kind not in ADAPTERS:
        raise ValueError(f"no Python model for {kind!r}; known: {', '.join(ADAPTERS)}")
    return resources.files(__name__).joinpath(f"{kind}.py").read_text()
