"""What the ops need beyond the array API standard, written once for every namespace (numpy in the cpu stubs,
torch on the GPU, in process and in training), through ``array_api_compat``.

Example:
    >>> xp = array_namespace(logits)                  # array_api_compat.numpy or array_api_compat.torch
    >>> probs = sigmoid(logits)                        # same dtype and device as logits
    >>> to_numpy(probs)                                # a host numpy array, whatever the namespace

Nothing here imports torch: a torch tensor is recognised by ``array_api_compat`` through ``sys.modules``, so a
stub that only ever sees numpy arrays never loads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_numpy_array, to_device

# An array of the numpy or torch namespace: the standard has no static type for "an array of any library". The
# ops' docstrings call it ``Tensor[N, 4]`` and so on, for its shape.
Array = Any
Tensor = Array

# exp(-x) overflows float32 below -88.72: clamping there keeps numpy from warning about the overflow. Below it the
# logistic is under 2e-38 either way (and darknet's 1 / (1 + inf) gives 0), so no threshold in (0, 1) sees a change.
_SIGMOID_LOWER = -88.0

__all__ = ["Array", "Tensor", "array_namespace", "device", "sigmoid", "stop_gradient", "to_numpy"]


def sigmoid(x: Array) -> Array:
    """Darknet's ``logistic_activate``, ``1 / (1 + exp(-x))``, elementwise (the standard has no sigmoid).

    One formula for every namespace, so that the served numpy post-process and the in-process torch one compute
    the same expression (they may still differ in the last bit of ``exp``)."""
    xp = array_namespace(x)
    return 1.0 / (1.0 + xp.exp(-xp.maximum(x, _SIGMOID_LOWER)))


def stop_gradient(x: Array) -> Array:
    """``x`` as a constant of the gradient where the array tracks one (torch's ``detach``), else ``x`` itself."""
    detach = getattr(x, "detach", None)
    return x if detach is None else detach()


def to_numpy(x: Array) -> np.ndarray:
    """A host numpy array with ``x``'s values: ``x`` itself for numpy, a copy to the CPU for a device array."""
    if is_numpy_array(x):
        return np.asarray(x)
    return np.asarray(to_device(x, "cpu"))
