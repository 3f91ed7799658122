"""Failed logins counted per user name as well as per address: a user under attack from
many addresses, each under its own bound, is delayed and then locked; on a fake clock, and
against a ``--workers 2`` server whose workers share the record through the master."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from test_events_metrics import USER, metered, total  # type: ignore[import-not-found]
from test_service_workers import SPECS, wait_for  # type: ignore[import-not-found]
from test_workers_limits import children, serving_pid  # type: ignore[import-not-found]
from twisted.internet.task import Clock

from bench.harness import HOST, RawClient, quote
from mailserv.auth.throttle import LoginThrottle


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_user_is_locked_by_failures_from_many_addresses(clock: Clock) -> None:
    throttle = LoginThrottle(clock, max_failures=10, user_max_failures=5)
    delays = []
    for n in range(5):
        address = f"192.0.2.{n}"
        throttle.record_failure(address, user="ann")
        delays.append(throttle.user_delay("ann"))
        assert not throttle.blocked(address)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert throttle.user_blocked("ann")
    assert not throttle.user_blocked("bob") and throttle.user_delay("bob") == 0.0
    throttle.record_success("192.0.2.0")  # clears the address, not the user
    assert throttle.failures("192.0.2.0") == 0 and throttle.user_blocked("ann")
    clock.advance(throttle.window)
    assert not throttle.user_blocked("ann") and throttle.user_delay("ann") == 0.0


def test_failures_without_a_name_or_with_users_off(clock: Clock) -> None:
    throttle = LoginThrottle(clock, user_max_failures=1)
    throttle.record_failure("192.0.2.1")  # a SASL exchange that failed before a name
    assert throttle.failures("192.0.2.1") == 1 and len(throttle.users) == 0
    off = LoginThrottle(clock, user_max_failures=0)
    for n in range(30):
        off.record_failure(f"192.0.2.{n}", user="ann")
    assert not off.user_blocked("ann") and off.user_delay("ann") == 0.0


def client_from(port: int, source: str) -> RawClient:
    sock = socket.create_connection((HOST, port), timeout=20, source_address=(source, 0))
    client = RawClient(sock, 20.0)
    client.greeting = client.read_response()
    return client


def test_user_locked_in_every_worker(tmp_path: Path) -> None:
    """Four failures from four addresses lock the user (``user_max_auth_failures=4``) in
    both workers: the right password is refused from a fifth address, with the answer
    delays and the lockout in the log and the metrics; another user is not locked."""
    found, server = metered(
        tmp_path, SPECS["maildir"], "--workers", "2", "--limit", "user_max_auth_failures=4"
    )
    other = "other"
    (server.data_dir / "passwd").open("a").write(f"{other}:{{PLAIN}}pw2::::::\n")
    server.start()
    failing: list[RawClient] = []
    try:
        port = server.imap_port
        failing += [client_from(port, f"127.0.6.{n}") for n in range(1, 5)]
        for client in failing:  # sent at once: the answers wait for their delays
            client.send(f"f LOGIN {quote(USER.name)} wrong\r\n")
        for client in failing:  # a NO comes once every worker holds that failure
            assert client.read_until_tagged("f").status == "NO"
        pids = children(server.pid)
        served = set()
        tries = 0
        deadline = time.monotonic() + 60  # a busy machine may starve a worker a while
        while len(served) < 2 and time.monotonic() < deadline:  # until both refused it
            tries += 1
            client = client_from(port, f"127.0.7.{tries % 250 + 1}")
            served.add(serving_pid(client, pids))
            reply = client.command(f"LOGIN {quote(USER.name)} {quote(USER.password)}")
            assert reply.line.endswith(b"NO [UNAVAILABLE] Too many failed logins for this user\r\n")
            client.close()
        assert len(served) == 2, (tries, pids, served)
        client = client_from(port, "127.0.6.1")  # the addresses themselves are not blocked
        assert client.command(f"LOGIN {other} pw2").ok
        client.close()
        events = found.events()
        held = [e["delay"] for e in events if e.get("result") == "failed"]
        # An address's first failure is held 1 s; the user's own record doubles it (at
        # least two of the four were checked by one worker, one after the other).
        assert len(held) == 4 and max(held) >= 2.0, held
        locks = [e for e in events if e.get("event") == "lockout"]
        assert [(e["scope"], e["user"]) for e in locks] == [("user", USER.name)]
        blocked = [e for e in events if e.get("result") == "blocked"]
        assert len(blocked) == tries
        assert total(found.scrape(), "mailserv_login_lockouts_total", scope="user") == tries
    finally:
        for client in failing:
            client.close()
        server.stop()


def test_restarted_worker_gets_the_user_records(tmp_path: Path) -> None:
    """A worker started after the failures (one killed here, restarted by the master) gets
    the master's per-user record as it starts: the locked user is refused there too."""
    _, server = metered(
        tmp_path, SPECS["maildir"], "--workers", "2", "--limit", "user_max_auth_failures=2"
    )
    server.start()
    try:
        port = server.imap_port
        failing = [client_from(port, f"127.0.8.{n}") for n in (1, 2)]
        for client in failing:
            client.send(f"f LOGIN {quote(USER.name)} wrong\r\n")
        for client in failing:
            assert client.read_until_tagged("f").status == "NO"
            client.close()
        before = children(server.pid)
        os.kill(min(before), signal.SIGKILL)
        wait_for(lambda: len(children(server.pid) - before) == 1, timeout=60)
        [restarted] = children(server.pid) - before
        deadline = time.monotonic() + 60  # until the new worker serves one of ours
        tries = 0
        while True:
            tries += 1
            client = client_from(port, f"127.0.9.{tries % 250 + 1}")
            pids = children(server.pid)
            served = serving_pid(client, pids)
            reply = client.command(f"LOGIN {quote(USER.name)} {quote(USER.password)}")
            client.close()
            assert reply.line.endswith(b"NO [UNAVAILABLE] Too many failed logins for this user\r\n")
            if served == restarted:
                break
            assert time.monotonic() < deadline, (tries, restarted, pids)
    finally:
        server.stop()


def test_exactly_one_failure_locks_and_the_records_travel(clock: Clock) -> None:
    throttle = LoginThrottle(clock, user_max_failures=3)
    locked = []
    for n in range(5):
        throttle.login_failed(f"192.0.2.{n}", user="ann").addCallback(locked.append)
    assert locked == [False, False, True, False, False]
    clock.advance(10)
    throttle.record_failure("192.0.2.9", user="bob")
    assert throttle.users.records() == [("ann", [0.0, 0.0, 0.0]), ("bob", [10.0])]
    copy = LoginThrottle(clock, user_max_failures=3)  # a worker started now
    for user, times in throttle.users.records():
        copy.users.merge(user, times)
    assert copy.user_blocked("ann") and not copy.user_blocked("bob")
    clock.advance(throttle.window - 5)
    assert throttle.users.records() == [("bob", [10.0])]
