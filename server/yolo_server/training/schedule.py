"""Learning-rate schedule: linear warm-up, then cosine decay (YOLOv4's ``policy=sgdr``-like cosine, no restarts).

Example:
    >>> [round(cosine_lr(i, total=100, warmup=10, peak=1.0, final=0.1), 3) for i in (0, 10, 55, 100)]
    [0.0, 1.0, 0.55, 0.1]
"""

from __future__ import annotations

import math


def cosine_lr(iteration: int, total: int, warmup: int, peak: float, final: float) -> float:
    """Learning rate at ``iteration`` (0-based) of ``total``: 0 -> ``peak`` over ``warmup``, cosine to ``final``."""
    if iteration < warmup:
        return peak * iteration / max(warmup, 1)
    progress = min(1.0, (iteration - warmup) / max(total - warmup, 1))
    return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress))
