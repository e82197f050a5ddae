"""Endpoint pool: round-robin, failover, re-admission after probes, probe schedule (fake clock)."""

from __future__ import annotations

import pytest

from tests.helpers.clients import KINDS, dead_url, idle, open_client
from tests.helpers.clock import FakeClock
from yolo_client.endpoints import EndpointPool, channel_args, check_headers, connection_kwargs, parse_urls
from yolo_client.errors import InvalidInputError
from yolo_client.types import ChannelOptions, EndpointHealth, HealthCheckOptions, RetryPolicy, TlsConfig

START = 50.0  # the fake clock's first reading


def test_round_robin_over_healthy_endpoints() -> None:
    pool = EndpointPool(["a", "b", "c"])
    assert [pool.pick() for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]


def test_a_down_endpoint_is_skipped_until_a_probe_puts_it_back() -> None:
    clock = FakeClock(START)
    pool = EndpointPool(["a", "b", "c"], HealthCheckOptions(interval=5, recheck_interval=1), clock)
    pool.mark_down("b")
    assert [pool.pick() for _ in range(4)] == ["a", "c", "a", "c"]
    pool.record_probe("b", ok=False)
    assert "b" not in [pool.pick() for _ in range(4)]
    pool.record_probe("b", ok=True)
    assert sorted(pool.pick() for _ in range(3)) == ["a", "b", "c"]


def test_failover_avoids_endpoints_already_tried_in_the_call() -> None:
    pool = EndpointPool(["a", "b", "c"])
    assert pool.pick(avoid={"a", "b"}) == "c"
    assert pool.pick(avoid={"a", "b", "c"}) in {"a", "b", "c"}  # all tried: still answers


def test_when_all_are_down_the_longest_down_is_tried() -> None:
    clock = FakeClock(START)
    pool = EndpointPool(["a", "b", "c"], clock=clock)
    for url in ("b", "c", "a"):
        pool.mark_down(url)
        clock.now += 1
    assert pool.pick() == "b"
    assert pool.pick(avoid={"b"}) == "c"


def test_probe_schedule() -> None:
    clock = FakeClock(START)
    pool = EndpointPool(["a", "b"], HealthCheckOptions(interval=5, recheck_interval=1), clock)
    assert pool.due_probes() == ["a", "b"]  # everything is probed at start
    pool.record_probe("a", ok=True)
    pool.record_probe("b", ok=False)
    assert pool.due_probes() == []
    assert pool.seconds_to_next_probe() == pytest.approx(1.0)
    clock.now += 1
    assert pool.due_probes() == ["b"]  # down: re-checked every recheck_interval
    pool.record_probe("b", ok=True)
    clock.now += 4
    assert pool.due_probes() == ["a"]  # up: every interval
    clock.now += 1
    assert pool.due_probes() == ["a", "b"]


def test_a_held_endpoint_stays_out_whatever_its_probes_say_until_the_hold_ends() -> None:
    clock = FakeClock(START)
    pool = EndpointPool(["a", "b"], HealthCheckOptions(interval=5.0, recheck_interval=1.0, fault_hold=30.0), clock)
    pool.mark_down("a", hold=True)
    assert "a" not in pool.due_probes()
    clock.now += 10.0
    pool.record_probe("a", ok=True)  # Triton says ready although a stub is dead there
    assert not pool.is_up("a") and [pool.pick() for _ in range(3)] == ["b"] * 3
    clock.now += 20.5
    assert "a" in pool.due_probes()
    pool.record_probe("a", ok=True)
    assert pool.is_up("a")
    pool.mark_down("b", hold=True)
    pool.mark_up("b")  # a call there succeeded: the hold is over
    pool.record_probe("b", ok=True)
    assert pool.is_up("b")


def test_mark_down_keeps_the_first_failure_time() -> None:
    clock = FakeClock(START)
    pool = EndpointPool(["a", "b"], clock=clock)
    pool.mark_down("a")
    clock.now += 5
    pool.mark_down("b")
    clock.now += 5
    pool.mark_down("a")  # a second failure does not make "a" look fresher than "b"
    assert pool.pick() == "a"


@pytest.mark.parametrize(
    "given, targets, tls",
    [
        ("localhost:8001", ("localhost:8001",), False),
        ("grpc://h:1", ("h:1",), False),
        ("grpcs://h:1/", ("h:1",), True),
        (["a:1", "b:2"], ("a:1", "b:2"), False),
    ],
)
def test_parse_urls(given, targets, tls) -> None:
    assert parse_urls(given) == (targets, tls)


@pytest.mark.parametrize("bad", [[], "", "http://h:8000", ["a:1", "a:1"], ["grpc://a:1", "grpcs://b:1"], "h:1/v2"])
def test_parse_urls_rejects(bad) -> None:
    with pytest.raises(InvalidInputError):
        parse_urls(bad)


def test_channel_args_are_all_explicit() -> None:
    args = dict(channel_args(ChannelOptions(max_send_message_bytes=123, keepalive_time_ms=7)))
    # tritonclient drops its own defaults once channel_args is given: sizes and keepalive must all be here
    for key in (
        "grpc.max_send_message_length",
        "grpc.max_receive_message_length",
        "grpc.keepalive_time_ms",
        "grpc.keepalive_timeout_ms",
        "grpc.keepalive_permit_without_calls",
        "grpc.http2.max_pings_without_data",
        "grpc.max_reconnect_backoff_ms",
    ):
        assert key in args
    assert args["grpc.max_send_message_length"] == 123 and args["grpc.keepalive_time_ms"] == 7
    named = dict(channel_args(ChannelOptions(), TlsConfig(server_name="triton.internal")))
    assert named["grpc.ssl_target_name_override"] == "triton.internal"


def test_tls_config_errors(tmp_path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read"):
        connection_kwargs(ChannelOptions(), TlsConfig(root_certificates=tmp_path / "missing.pem"))
    with pytest.raises(InvalidInputError, match="both"):
        connection_kwargs(ChannelOptions(), TlsConfig(private_key=b"k"))
    assert "creds" in connection_kwargs(ChannelOptions(), TlsConfig())
    assert "creds" not in connection_kwargs(ChannelOptions(), None)


def test_headers() -> None:
    assert check_headers({"Authorization": "Bearer x"}) == {"authorization": "Bearer x"}
    for bad in ({"bad name": "x"}, {"grpc-timeout": "1"}, {"a": "line\nbreak"}, {"a": 1}):
        with pytest.raises(InvalidInputError):
            check_headers(bad)


@pytest.mark.parametrize("kind", KINDS)
def test_health_reports_each_endpoint_and_takes_failing_ones_out(kind: str) -> None:
    urls = [dead_url(), dead_url()]
    slow = HealthCheckOptions(interval=60, recheck_interval=60)  # the background checker stays out of the way
    with open_client(kind, urls, "m", timeout=2, health_check=slow, retries=RetryPolicy.disabled()) as client:
        idle(client, 0.2)  # its first round (everything is probed at start)
        client.pool.mark_up(urls[0])
        client.pool.mark_up(urls[1])
        report = client.health()
        assert [h.url for h in report] == urls
        for health in report:
            assert isinstance(health, EndpointHealth)
            assert (health.live, health.ready, health.model_ready) == (False, False, False)
            assert health.error and "UNAVAILABLE" in health.error
        assert client.pool.up() == []


@pytest.mark.parametrize("kind", KINDS)
def test_the_health_checker_probes_every_endpoint_in_the_background(kind: str) -> None:
    urls = [dead_url(), dead_url()]
    fast = HealthCheckOptions(interval=0.05, recheck_interval=0.05, probe_timeout=0.5)
    with open_client(kind, urls, "m", timeout=2, health_check=fast) as client:
        for _ in range(50):
            idle(client, 0.1)
            if not client.pool.up():
                break
        assert client.pool.up() == []
