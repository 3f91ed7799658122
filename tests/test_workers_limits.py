"""With ``--workers N`` the connection limits and the failed-login throttle hold for the
server, not for each worker: the master counts for all of them.  And ``--workers`` left out
means a worker per core where the backend allows several."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapserver import new_user  # type: ignore[import-not-found]  # tests/, on sys.path
from test_service_workers import (  # type: ignore[import-not-found]
    SPECS,
    children,
    run_workers,
    serving_pid,
    wait_for,
)
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from bench.harness import BackendSpec, RawClient, ServerProcess, quote
from mailserv.auth.throttle import ILoginThrottle, LoginThrottle
from mailserv.imap.admission import MAX_EARLY_BYTES, ConnectionCounter, IConnectionLimits
from mailserv.imap.settings import ServerSettings
from mailserv.workers.limits import (
    MasterLink,
    SharedConnectionLimits,
    SharedLimits,
    SharedLoginThrottle,
)

PER_ADDRESS = 3


def server_of(
    tmp_path: Path, spec: BackendSpec, args: list[str], **limits: object
) -> ServerProcess:
    return ServerProcess(tmp_path / "data", spec, limits=limits, extra_args=args)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    limits = {"max_connections_per_address": PER_ADDRESS, "auth_failure_delay": 0.05}
    yield from run_workers(server_of(tmp_path, SPECS["maildir"], ["--workers", "2"], **limits))


def greeted(server: ServerProcess) -> RawClient:
    return RawClient.connect(server.imap_port, timeout=20)


def admitted(server: ServerProcess) -> RawClient:
    """A greeted connection, retrying while the close of an earlier one is not counted."""
    for _ in range(100):
        client = greeted(server)
        if client.greeting.startswith(b"* OK"):
            return client
        client.close()
        time.sleep(0.05)
    raise AssertionError("no connection admitted")


def refusals(server: ServerProcess) -> set[int]:
    """The pids of the workers that logged refusing a connection."""
    found = re.findall(r"worker \d \[(\d+)\] .*Refused a connection", server.log_text())
    return {int(pid) for pid in found}


def spread(server: ServerProcess, count: int) -> list[RawClient]:
    """``count`` open connections, served by both workers (closing and retrying until so)."""
    pids = children(server.pid)
    open_: list[RawClient] = []
    for _ in range(80):
        while len(open_) < count:
            open_.append(admitted(server))
        if len({serving_pid(c, pids) for c in open_}) == 2:
            return open_
        open_.pop(0).close()
    raise AssertionError("every connection went to the same worker")


def test_the_per_address_bound_holds_across_workers(server: ServerProcess) -> None:
    kept = spread(server, PER_ADDRESS)
    workers = children(server.pid)
    for _ in range(60):  # until each worker has refused one
        extra = greeted(server)
        assert extra.greeting == b"* BYE Too many connections from your address\r\n"
        extra.close()
        if refusals(server) == workers:
            break
    assert refusals(server) == workers
    kept.pop().close()
    admitted(server)


def blocked_in_every_worker(server: ServerProcess) -> None:
    """Wait until each worker refuses a sign-in from here: a new connection served by it
    answers ``AUTHENTICATE PLAIN`` with the block rather than a challenge (which is
    cancelled: nothing is recorded).  The log line of a failure comes before the other
    worker holds it (its NO waits for that, and for the delay)."""
    pids = children(server.pid)
    blocked: set[int] = set()
    deadline = time.monotonic() + 20
    while blocked != set(pids):
        assert time.monotonic() < deadline, f"blocked in {blocked} of {pids}"
        client = admitted(server)
        pid = serving_pid(client, pids)
        client.send(b"a AUTHENTICATE PLAIN\r\n")
        if client.read_response().startswith(b"+"):
            client.send(b"*\r\n")
            assert client.read_until_tagged("a").status == "BAD"
        else:
            blocked.add(pid)
        client.close()


def test_failed_logins_in_one_worker_block_the_others(server: ServerProcess) -> None:
    """10 failures in the window (``LoginThrottle.max_failures``) block the address in every
    worker, including sessions opened before the failures."""
    user = new_user()
    server.add_user(user.name, user.password)
    probes = spread(server, 2)  # one session in each worker, opened first
    failing: list[RawClient] = []
    for _ in range(10):
        client = admitted(server)
        client.send(f"f LOGIN {quote(user.name)} wrong\r\n")
        wait_for(lambda: server.log_text().count("Failed login for") > len(failing))
        client.close()  # the answer waits for the delay: not for us to wait for
        failing.append(client)
    blocked_in_every_worker(server)
    for probe in probes:
        reply = probe.command(f"LOGIN {quote(user.name)} {quote(user.password)}")
        assert not reply.ok
        assert b"Too many failed logins" in reply.all_text()


def test_a_dead_workers_connections_are_freed(server: ServerProcess) -> None:
    kept = spread(server, PER_ADDRESS)
    pids = children(server.pid)
    victim = serving_pid(kept[0], pids)
    freed = [c for c in kept if serving_pid(c, pids) == victim]
    os.kill(victim, signal.SIGKILL)
    for client in freed:
        client.settimeout(10)
        with pytest.raises(EOFError):  # the connection died with its worker
            client.read_line()
    wait_for(lambda: "Released" in server.log_text())
    new = [greeted(server) for _ in freed]
    assert all(c.greeting.startswith(b"* OK") for c in new), [c.greeting for c in new]
    extra = greeted(server)
    assert extra.greeting == b"* BYE Too many connections from your address\r\n"


def test_one_worker_per_core_by_default(tmp_path: Path) -> None:
    cores = min(os.cpu_count() or 1, 64)
    running = run_workers(server_of(tmp_path, SPECS["maildir"], []), cores)
    proc = next(running)
    try:
        assert len(children(proc.pid)) == cores
        assert f"{cores} workers ({os.cpu_count()} cores)" in proc.log_text()
    finally:
        running.close()  # stops it


def test_one_worker_for_a_store_kept_in_one_process(tmp_path: Path) -> None:
    proc = server_of(tmp_path, BackendSpec("memory"), [])
    proc.start()
    try:
        client = greeted(proc)
        assert client.greeting.startswith(b"* OK")
        assert children(proc.pid) == set()
        text = proc.log_text()
        assert "One worker: the memory backend keeps its state inside one process" in text
    finally:
        proc.stop()


def test_both_kinds_of_limits_provide_the_interfaces() -> None:
    clock = Clock()
    link = MasterLink(LoginThrottle(clock))
    assert verifyObject(IConnectionLimits, ConnectionCounter(ServerSettings()))
    assert verifyObject(IConnectionLimits, SharedConnectionLimits(link))
    assert verifyObject(ILoginThrottle, LoginThrottle(clock))
    assert verifyObject(ILoginThrottle, SharedLoginThrottle(link))


def test_a_record_taken_in_twice_counts_each_failure_once() -> None:
    clock = Clock()
    clock.advance(1000)
    mine, master = LoginThrottle(clock), LoginThrottle(clock)
    mine.record_failure("192.0.2.1")
    mine.record_failure("192.0.2.1")  # two failures in the same instant
    for at in mine.history("192.0.2.1"):
        master.record_failure("192.0.2.1", at)
    master.record_failure("192.0.2.1", 999.5)  # another worker's
    mine.merge("192.0.2.1", master.history("192.0.2.1"))
    assert mine.history("192.0.2.1") == [999.5, 1000.0, 1000.0]
    assert master.failures("192.0.2.1") == 3


def test_connections_waiting_for_the_master(server: ServerProcess) -> None:
    """While the master is slow to answer, a worker holds its new connections: connections
    closed meanwhile do not eat into the bound (even though the master hears of them after
    it has counted them in), what a client sends early is served after the greeting, and the
    bound holds for the server."""
    master = server.proc
    assert master is not None
    master.send_signal(signal.SIGSTOP)
    try:
        gone = [RawClient.connect(server.imap_port, read_greeting=False) for _ in range(4)]
        time.sleep(1.0)  # accepted by the workers, asked about, not answered
        for client in gone:
            client.close()
        time.sleep(2.0)  # the workers see them closed (a loaded machine: not at once)
        early = RawClient.connect(server.imap_port, timeout=20, read_greeting=False)
        early.send(b"a CAPABILITY\r\n")
        time.sleep(0.5)
    finally:
        master.send_signal(signal.SIGCONT)
    assert early.read_line().startswith(b"* OK")
    assert early.read_until_tagged("a").ok
    kept = [early, admitted(server), admitted(server)]
    assert len(kept) == PER_ADDRESS
    extra = greeted(server)
    assert extra.greeting == b"* BYE Too many connections from your address\r\n"


def test_a_release_names_the_connection_an_admit_counted() -> None:
    """Tickets: releasing a refused connection frees nothing, whichever channel asks first."""
    limits = SharedLimits(
        ServerSettings(max_connections_per_address=2), Clock()
    )  # the master's counts
    one, two = object(), object()
    for channel in (one, two):
        limits.joined(channel)  # type: ignore[arg-type]
    assert limits.admit(one, "192.0.2.1", 1) is None  # type: ignore[arg-type]
    assert limits.admit(one, "192.0.2.1", 2) is None  # type: ignore[arg-type]
    assert limits.admit(one, "192.0.2.1", 3) is not None  # type: ignore[arg-type]
    limits.release(one, 3)  # type: ignore[arg-type]  # refused: nothing to free
    assert limits.admit(two, "192.0.2.1", 1) is not None  # type: ignore[arg-type]
    limits.release(one, 1)  # type: ignore[arg-type]
    limits.release(one, 1)  # type: ignore[arg-type]  # twice: freed once
    assert limits.admit(two, "192.0.2.1", 2) is None  # type: ignore[arg-type]
    assert limits.admit(two, "192.0.2.1", 3) is not None  # type: ignore[arg-type]
    limits.left(two)  # type: ignore[arg-type]
    assert limits.connections.total == 1


def test_a_client_that_talks_before_the_greeting_waits(server: ServerProcess) -> None:
    """More than MAX_EARLY_BYTES sent before the admission answer: the worker stops reading
    (the client waits, by TCP's backpressure) and serves every command once admitted."""
    count = 2 * MAX_EARLY_BYTES // len(b"n0000 NOOP\r\n")
    master = server.proc
    assert master is not None
    master.send_signal(signal.SIGSTOP)
    try:
        client = RawClient.connect(server.imap_port, timeout=30, read_greeting=False)
        client.send(b"".join(b"n%04d NOOP\r\n" % i for i in range(count)))
        time.sleep(1.0)
    finally:
        master.send_signal(signal.SIGCONT)
    assert client.read_line().startswith(b"* OK")
    for i in range(count):
        assert client.read_line() == b"n%04d OK NOOP completed\r\n" % i
