"""Retry policy: backoff bounds, full jitter, the retry budget and one call's plan (fake clock)."""

from __future__ import annotations

import random
import time

import pytest

from tests.helpers.clients import KINDS, dead_url, open_client
from tests.helpers.clock import FakeClock
from yolo_client import ClientMetrics
from yolo_client.endpoints import EndpointPool
from yolo_client.errors import (
    DeadlineExceededError,
    ServerError,
    ServerRejectedError,
    UnavailableError,
    from_exception,
)
from yolo_client.retry import CallPlan, RetryBudget, backoff_cap, backoff_delay
from yolo_client.types import HealthCheckOptions, RetryPolicy

START = 1000.0  # the fake clock's first reading


def test_backoff_cap_grows_exponentially_to_the_maximum() -> None:
    policy = RetryPolicy(initial_backoff=0.1, multiplier=2.0, max_backoff=1.0)
    assert [backoff_cap(policy, n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff_cap(policy, 10_000) == 1.0  # no overflow
    with pytest.raises(ValueError):
        backoff_cap(policy, 0)


def test_full_jitter_stays_in_bounds_and_spreads() -> None:
    policy = RetryPolicy(initial_backoff=0.1, multiplier=2.0, max_backoff=1.0)
    rng = random.Random(0)
    for retry in range(1, 8):
        delays = [backoff_delay(policy, retry, rng) for _ in range(2000)]
        cap = backoff_cap(policy, retry)
        assert 0.0 <= min(delays) and max(delays) <= cap
        # full jitter: uniform over [0, cap], so the mean is near cap / 2 and small delays occur
        assert sum(delays) / len(delays) == pytest.approx(cap / 2, rel=0.08)
        assert min(delays) < cap * 0.01


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(multiplier=0.5)
    assert RetryPolicy.disabled().max_attempts == 1


def test_budget_caps_retries_and_refills_over_its_window() -> None:
    clock = FakeClock(START)
    budget = RetryBudget(RetryPolicy(budget_reserve=5, budget_ratio=0.5, budget_window=10), clock)
    assert sum(budget.try_spend() for _ in range(20)) == 5  # the reserve, then nothing
    for _ in range(4):
        budget.record_call()  # 4 calls x 0.5 = 2 tokens
    assert sum(budget.try_spend() for _ in range(20)) == 2
    clock.now += 4.0  # 5 tokens / 10 s -> 2 tokens
    assert sum(budget.try_spend() for _ in range(20)) == 2
    clock.now += 1000.0  # never above the reserve
    assert budget.tokens == pytest.approx(5.0)


def _plan(urls=("a", "b"), clock=None, **policy) -> CallPlan:
    clock = clock or FakeClock(START)
    pool = EndpointPool(urls, HealthCheckOptions(), clock)
    p = RetryPolicy(**policy)
    return CallPlan(p, RetryBudget(p, clock), pool, timeout=10.0, clock=clock, rng=random.Random(1))


def test_unavailable_fails_over_at_once_to_another_endpoint() -> None:
    plan = _plan()
    first = plan.next_endpoint()
    assert plan.on_failure(first, UnavailableError("down", status="UNAVAILABLE")) == 0.0
    assert not plan.pool.is_up(first)
    second = plan.next_endpoint()
    assert second != first


def test_resource_exhausted_backs_off_without_taking_the_endpoint_out() -> None:
    plan = _plan(("a",), initial_backoff=0.2, max_backoff=5)
    url = plan.next_endpoint()
    delay = plan.on_failure(url, UnavailableError("busy", status="RESOURCE_EXHAUSTED"))
    assert delay is not None and 0.0 <= delay <= 0.2
    assert plan.pool.is_up(url)


@pytest.mark.parametrize("message", ["Exceeds maximum queue size", "Request timeout expired"])
def test_a_shed_request_backs_off_and_keeps_a_busy_endpoint_in_rotation(message: str) -> None:
    plan = _plan(initial_backoff=0.2, max_backoff=5)
    first = plan.next_endpoint()
    delay = plan.on_failure(first, UnavailableError(message, status="UNAVAILABLE"))
    assert delay is not None and 0.0 <= delay <= 0.2 and plan.pool.is_up(first)
    plan.next_endpoint()
    other = plan.pool.urls[1]
    delay = plan.on_failure(other, UnavailableError("Server is stopping", status="UNAVAILABLE"))
    assert not plan.pool.is_up(other)  # a stopping server is a fault, not a busy one


def test_a_dead_stub_fails_over_although_internal_is_not_retried_otherwise() -> None:
    plan = _plan()
    first = plan.next_endpoint()
    dead = ServerError("Failed to process the request(s) for model 'm_detector_0_0', message: Stub process "
                       "'m_detector_0_0' is not healthy.", status="INTERNAL")  # fmt: skip
    assert plan.on_failure(first, dead) == 0.0 and not plan.pool.is_up(first)
    assert plan.next_endpoint() != first and dead.attempts == 1
    other = ServerError("CUDA error: out of memory", status="INTERNAL")
    assert plan.on_failure(plan.tried[-1], other) is None and plan.pool.is_up(plan.tried[-1])


def test_a_model_unloading_on_a_stopping_replica_fails_over_an_unknown_model_does_not() -> None:
    """While a replica drains, Triton unloads its models and answers NOT_FOUND "... has no available versions"."""
    plan = _plan()
    first = plan.next_endpoint()
    unloaded = ServerRejectedError("Request for unknown model: 'yolov4_tiny' has no available versions",
                                   status="NOT_FOUND")  # fmt: skip
    assert plan.on_failure(first, unloaded) == 0.0 and not plan.pool.is_up(first)
    assert plan.next_endpoint() != first
    typo = ServerRejectedError("Request for unknown model: 'yolov4_tiyn' is not found", status="NOT_FOUND")
    assert plan.on_failure(plan.tried[-1], typo) is None and plan.pool.is_up(plan.tried[-1])


@pytest.mark.parametrize(
    "message",
    [
        "request larger than the 64 MiB cap of this load balancer",
        "request larger than the 65 MiB cap of this server",  # yolo_server.launcher.front
        "Sent message larger than max (70000000 vs. 67108864)",
    ],
)
def test_a_message_over_a_size_cap_is_not_sent_again(message: str) -> None:
    plan = _plan()
    url = plan.next_endpoint()
    assert plan.on_failure(url, UnavailableError(message, status="RESOURCE_EXHAUSTED")) is None
    assert plan.pool.is_up(url)


def test_an_admin_api_without_its_key_is_refused_once_and_keeps_the_endpoint() -> None:
    """Triton answers UNAVAILABLE to a restricted protocol without its key; the endpoint is fine."""

    class Refused(Exception):  # tritonclient's InferenceServerException, duck-typed as errors.from_exception reads it
        def status(self) -> str:
            return "StatusCode.UNAVAILABLE"

        def message(self) -> str:
            return "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'"

    error = from_exception(Refused(), "a")
    assert isinstance(error, ServerRejectedError) and "admin key" in str(error)
    plan = _plan()
    url = plan.next_endpoint()
    assert plan.on_failure(url, error) is None
    assert plan.pool.is_up(url) and error.attempts == 1


def test_non_retryable_statuses_give_up_at_once() -> None:
    plan = _plan()
    url = plan.next_endpoint()
    err = ServerRejectedError("bad image", status="INVALID_ARGUMENT")
    assert plan.on_failure(url, err) is None
    assert plan.pool.is_up(url) and err.attempts == 1


def test_attempts_are_bounded() -> None:
    plan = _plan(("a",), max_attempts=3, initial_backoff=0.01)
    outcomes = []
    for _ in range(5):
        url = plan.next_endpoint()
        err = UnavailableError("down", status="UNAVAILABLE")
        outcomes.append(plan.on_failure(url, err))
        if outcomes[-1] is None:
            break
    assert len(outcomes) == 3 and outcomes[-1] is None and err.attempts == 3


def test_no_retry_whose_sleep_would_pass_the_deadline() -> None:
    clock = FakeClock(START)
    plan = _plan(("a",), clock=clock, initial_backoff=5.0, max_backoff=5.0, multiplier=1.0)
    url = plan.next_endpoint()
    clock.now += 9.999  # 1 ms left: any positive backoff overshoots unless the jitter draws ~0
    assert plan.on_failure(url, UnavailableError("busy", status="RESOURCE_EXHAUSTED")) is None


def test_attempt_timeout_is_what_is_left_of_the_deadline() -> None:
    clock = FakeClock(START)
    plan = _plan(clock=clock)
    plan.next_endpoint()
    clock.now += 4.0
    assert plan.attempt_timeout() == pytest.approx(6.0)
    clock.now += 6.0
    with pytest.raises(DeadlineExceededError):
        plan.attempt_timeout()


def test_an_empty_budget_stops_retries() -> None:
    plan = _plan(("a",), budget_reserve=0.0, budget_ratio=0.0)
    url = plan.next_endpoint()
    err = UnavailableError("busy", status="RESOURCE_EXHAUSTED")
    assert plan.on_failure(url, err) is None
    assert "budget" in err.message


@pytest.mark.parametrize("kind", KINDS)
def test_both_clients_fail_over_then_stop_at_the_attempt_limit(kind: str) -> None:
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    urls = [dead_url(), dead_url()]
    policy = RetryPolicy(max_attempts=3, initial_backoff=0)
    with open_client(kind, urls, "m", timeout=5, retries=policy, metrics=ClientMetrics.shared(registry)) as client:
        with pytest.raises(UnavailableError) as caught:
            client.models()
    assert any(url in str(caught.value) for url in urls)
    assert registry.get_sample_value("yolo_client_retries_total", {"model": "m", "status": "UNAVAILABLE"}) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_both_clients_never_sleep_past_the_deadline(kind: str) -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff=5, max_backoff=5)
    with open_client(kind, [dead_url()], "m", timeout=1, retries=policy) as client:
        start = time.perf_counter()
        with pytest.raises(UnavailableError):
            client.model_info()
        assert time.perf_counter() - start < 1  # gave up instead of sleeping past the deadline
