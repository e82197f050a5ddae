"""A clock that stands still until the test moves it: ``clock.now += seconds``."""

from __future__ import annotations


class FakeClock:
    """A ``time.monotonic`` stand-in (call it for the time) that starts at ``now``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
