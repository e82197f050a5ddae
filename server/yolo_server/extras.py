"""The server's optional dependencies, imported when first needed, with an error that names the extra to install.

Example:
    >>> openvino = import_extra("openvino", "openvino", "the cpu target runs the detector on OpenVINO")
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(RuntimeError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or :class:`MissingExtra` saying ``purpose`` and ``pip install './server[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{module} is not importable ({exc}): {purpose}; install it with `pip install './server[{extra}]'` "
            "(`make install` does)"
        ) from None
