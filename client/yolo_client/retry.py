"""Retry decisions shared by the sync and async clients: backoff math, the retry budget, one call's plan.

The clients only run the loop, written once for both in :meth:`yolo_client._base.ClientBase._call` (the sync
client sleeps with ``time.sleep``, the async one with ``asyncio.sleep``); every decision lives here.

Example (that loop, less its retry metric)::

    plan = CallPlan(policy, budget, pool, timeout=10.0)
    while True:
        url = plan.next_endpoint()
        try:
            result = call(url, plan.attempt_timeout())
        except Exception as exc:
            err = from_exception(exc, url)
            delay = plan.on_failure(url, err)
            if delay is None:
                raise err from None
            time.sleep(delay)
        else:
            plan.on_success(url)
            return result
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from .endpoints import EndpointPool
from .errors import (
    DeadlineExceededError,
    YoloClientError,
    is_dead_model,
    is_endpoint_fault,
    is_restricted,
    is_too_large,
)
from .types import RetryPolicy

Clock = Callable[[], float]


def backoff_cap(policy: RetryPolicy, retry: int) -> float:
    """Upper bound of the sleep before retry number ``retry`` (1 = the first retry)."""
    if retry < 1:
        raise ValueError("retry numbers start at 1")
    # min() before the power would overflow for large retry numbers
    exponent = min(retry - 1, 64)
    return min(policy.max_backoff, policy.initial_backoff * policy.multiplier**exponent)


def backoff_delay(policy: RetryPolicy, retry: int, rng: random.Random | None = None) -> float:
    """Full-jitter backoff: ``uniform(0, backoff_cap(policy, retry))``."""
    return (rng or random).uniform(0.0, backoff_cap(policy, retry))


class RetryBudget:
    """Client-wide cap on retries, shared by all calls (thread-safe).

    Each call deposits ``policy.budget_ratio`` tokens and each retry spends one; on top, a reserve of
    ``policy.budget_reserve`` tokens refills at ``budget_reserve / budget_window`` per second. Tokens never
    exceed ``budget_reserve``. When the bucket is empty, failures are returned to the caller instead of retried.
    """

    def __init__(self, policy: RetryPolicy, clock: Clock = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._tokens = policy.budget_reserve
        self._stamp = clock()
        self._lock = threading.Lock()

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens

    def record_call(self) -> None:
        """Deposit for a first attempt."""
        with self._lock:
            self._refill()
            self._tokens = min(self._policy.budget_reserve, self._tokens + self._policy.budget_ratio)

    def try_spend(self) -> bool:
        """Take one token for a retry; False when there is none."""
        with self._lock:
            self._refill()
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def _refill(self) -> None:
        now = self._clock()
        rate = self._policy.budget_reserve / self._policy.budget_window
        self._tokens = min(self._policy.budget_reserve, self._tokens + (now - self._stamp) * rate)
        self._stamp = now


class CallPlan:
    """One call across its attempts: the deadline, which endpoint next, and whether (and when) to retry.

    Args:
        policy: the retry policy.
        budget: the client-wide retry budget.
        pool: the endpoints to pick from.
        timeout: seconds for the whole call, retries and sleeps included.
        clock: monotonic clock (a fake one in tests).
        rng: source of the jitter.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        budget: RetryBudget,
        pool: EndpointPool,
        timeout: float,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.budget = budget
        self.pool = pool
        self.timeout = timeout
        self.deadline = clock() + timeout
        self.attempts = 0
        self.tried: list[str] = []
        self._clock = clock
        self._rng = rng
        budget.record_call()

    def remaining(self) -> float:
        return self.deadline - self._clock()

    def next_endpoint(self) -> str:
        """The endpoint for the next attempt: a healthy one not tried yet in this call when there is one."""
        url = self.pool.pick(avoid=self.tried)
        self.attempts += 1
        self.tried.append(url)
        return url

    def attempt_timeout(self) -> float:
        """Seconds left for this attempt (the gRPC deadline); raises when none are left."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceededError(f"deadline of {self.timeout:g} s passed before attempt {self.attempts}")
        return left

    def on_success(self, url: str) -> None:
        self.pool.mark_up(url)

    def on_failure(self, url: str, error: YoloClientError) -> float | None:
        """Record a failed attempt; return the seconds to sleep before the next one, or None to give up.

        An endpoint fault (unreachable, stopping, or INTERNAL "Stub process ... is not healthy": a model
        there is dead) takes the endpoint out of rotation, and the retry goes at once when another endpoint is
        up; that INTERNAL is retried although INTERNAL is not in ``policy.retry_on``, since another replica
        can serve it. A shed request (queue full, queue timeout) keeps its endpoint in rotation: the server is
        busy, not broken, and the retry sleeps the full-jitter backoff. The call gives up on a status not in
        ``policy.retry_on``, on a message over a size cap (RESOURCE_EXHAUSTED "... larger than ..."), on an admin
        API without its key, after ``max_attempts``, when the budget is empty, or when the sleep would run past
        the deadline. ``error.attempts`` is set to the number of attempts made.
        """
        error.attempts = self.attempts
        fault = is_endpoint_fault(error)
        if fault:
            self.pool.mark_down(url, hold=is_dead_model(error))
        retryable = fault or (
            error.status in self.policy.retry_on and not is_too_large(error) and not is_restricted(error)
        )
        if not retryable or self.attempts >= self.policy.max_attempts:
            return None
        if fault and any(u not in self.tried for u in self.pool.up()):
            delay = 0.0
        else:
            delay = backoff_delay(self.policy, self.attempts, self._rng)
        if delay >= self.remaining():
            return None
        if not self.budget.try_spend():
            error.message += " (retry budget exhausted)"
            return None
        return delay
