"""Load shapes as pure schedules: elapsed seconds -> (users, spawn rate), or None when the run is over.

``steady``: every user at once (at the spawn rate) for the whole run: the sustained-throughput test.
``ramp``: ``steps`` equal stages, stage ``i`` (1-based) holding ``ceil(users * i / steps)`` users: where the
served FPS stops growing with users is the server's capacity, and the latency at the last stage shows the cost of
overload.

Example:
    >>> schedule("ramp", 10.0, users=8, spawn_rate=4, run_time=40, steps=4)
    (4, 4)
"""

from __future__ import annotations

import math

SHAPES = ("steady", "ramp")


def schedule(
    shape: str, elapsed: float, *, users: int, spawn_rate: float, run_time: float | None, steps: int = 4
) -> tuple[int, float] | None:
    """What the run should look like ``elapsed`` seconds in (``run_time`` None: run until stopped)."""
    if shape not in SHAPES:
        raise ValueError(f"load shape {shape!r}: one of {', '.join(SHAPES)}")
    if users < 1 or spawn_rate <= 0 or steps < 1:
        raise ValueError("users >= 1, spawn_rate > 0 and steps >= 1")
    if run_time is not None and elapsed >= run_time:
        return None
    if shape == "steady":
        return users, spawn_rate
    if run_time is None:
        raise ValueError("the ramp shape needs a run time (--run-time)")
    stage = min(steps, int(elapsed // (run_time / steps)) + 1)
    return max(1, math.ceil(users * stage / steps)), spawn_rate
