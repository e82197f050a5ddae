"""The array namespaces the ops run on, for tests that check each: numpy (the cpu stubs) and torch (in process,
training, a GPU instance).

Tests build their inputs as torch tensors (seeded generators, exact values), hand them to the ops through
:func:`on`, and read results back with :func:`host`, whatever the namespace.

Example:
    >>> @pytest.mark.parametrize("namespace", NAMESPACES)
    ... def test_iou(namespace):
    ...     assert host(box_iou(on(namespace, a), on(namespace, b))).shape == (3, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from yolo_server.ops.arrays import to_numpy

NAMESPACES = ("numpy", "torch")


def on(namespace: str, tensor: torch.Tensor) -> Any:
    """``tensor`` as an array of ``namespace``: a numpy array (same dtype, shared memory) or the tensor itself."""
    if namespace == "numpy":
        return tensor.numpy()
    assert namespace == "torch", namespace
    return tensor


def host(array: Any) -> np.ndarray:
    """Any namespace's array as a host numpy array."""
    return to_numpy(array)
