"""Login throttling per source network, on a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from mailserv.auth.throttle import LoginThrottle, network_key


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_network_keys() -> None:
    assert network_key("192.0.2.7") == "192.0.2.7"
    assert network_key("192.0.2.7:12345") == "192.0.2.7"
    assert network_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert network_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert network_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert network_key("[2001:db8:1:2::5]:993") == "2001:db8:1:2::/64"
    assert network_key("fe80::1%eth0") == "fe80::/64"
    assert network_key("unknown") == "unknown"
    assert len(network_key("/" * 1000)) == 128


def test_delay_grows_exponentially_and_caps(clock: Clock) -> None:
    throttle = LoginThrottle(clock, max_failures=100, base_delay=1.0, max_delay=30.0)
    assert throttle.delay_for("192.0.2.1") == 0.0
    delays = []
    for _ in range(7):
        throttle.record_failure("192.0.2.1")
        delays.append(throttle.delay_for("192.0.2.1"))
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert throttle.delay_for("192.0.2.2") == 0.0


def test_blocked_after_max_failures_in_window(clock: Clock) -> None:
    throttle = LoginThrottle(clock, max_failures=3, window=60.0)
    for _ in range(2):
        throttle.record_failure("198.51.100.9")
        clock.advance(1)
    assert not throttle.blocked("198.51.100.9")
    throttle.record_failure("198.51.100.9")
    assert throttle.blocked("198.51.100.9")
    assert throttle.failures("198.51.100.9") == 3
    assert not throttle.blocked("198.51.100.10")


def test_sliding_window(clock: Clock) -> None:
    throttle = LoginThrottle(clock, max_failures=3, window=60.0)
    throttle.record_failure("203.0.113.5")  # t=0
    clock.advance(30)
    throttle.record_failure("203.0.113.5")  # t=30
    clock.advance(29)
    throttle.record_failure("203.0.113.5")  # t=59
    assert throttle.blocked("203.0.113.5")
    clock.advance(1)  # t=60: the first failure leaves the window
    assert not throttle.blocked("203.0.113.5")
    assert throttle.failures("203.0.113.5") == 2
    assert throttle.delay_for("203.0.113.5") == 2.0
    clock.advance(60)
    assert throttle.failures("203.0.113.5") == 0
    assert len(throttle) == 0  # expired entries are dropped


def test_success_clears(clock: Clock) -> None:
    throttle = LoginThrottle(clock, max_failures=2)
    throttle.record_failure("192.0.2.1")
    throttle.record_failure("192.0.2.1")
    assert throttle.blocked("192.0.2.1")
    throttle.record_success("192.0.2.1")
    assert not throttle.blocked("192.0.2.1")
    assert throttle.delay_for("192.0.2.1") == 0.0
    throttle.record_success("192.0.2.99")  # unknown: no error


def test_ipv6_slash64_shares_a_counter(clock: Clock) -> None:
    throttle = LoginThrottle(clock, max_failures=3)
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"):
        throttle.record_failure(host)
    assert throttle.blocked("2001:db8::abcd")
    assert not throttle.blocked("2001:db8:0:1::1")


def test_ipv4_addresses_are_separate(clock: Clock) -> None:
    throttle = LoginThrottle(clock, max_failures=2)
    throttle.record_failure("192.0.2.1")
    throttle.record_failure("192.0.2.2")
    assert not throttle.blocked("192.0.2.1")
    assert not throttle.blocked("192.0.2.2")


def test_memory_is_bounded(clock: Clock) -> None:
    throttle = LoginThrottle(clock, max_failures=5, max_tracked=100)
    throttle.record_failure("10.0.0.0")
    throttle.record_failure("10.0.0.0")
    for i in range(1, 1000):
        clock.advance(0.01)
        throttle.record_failure(f"10.0.{i // 256}.{i % 256}")
        assert len(throttle) <= 100
    assert throttle.failures("10.0.0.0") == 0  # the oldest was evicted
    assert throttle.failures("10.0.3.231") == 1  # the newest is kept


def test_per_network_history_is_bounded(clock: Clock) -> None:
    throttle = LoginThrottle(clock, max_failures=4)
    for _ in range(10_000):
        throttle.record_failure("192.0.2.1")
    assert throttle.failures("192.0.2.1") == 4
    assert throttle.blocked("192.0.2.1")


def test_instances_do_not_share_state(clock: Clock) -> None:
    first = LoginThrottle(clock, max_failures=1)
    second = LoginThrottle(clock, max_failures=1)
    first.record_failure("192.0.2.1")
    assert first.blocked("192.0.2.1")
    assert not second.blocked("192.0.2.1")


def test_invalid_parameters(clock: Clock) -> None:
    with pytest.raises(ValueError):
        LoginThrottle(clock, max_failures=0)
    with pytest.raises(ValueError):
        LoginThrottle(clock, window=0)
