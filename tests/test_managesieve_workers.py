"""ManageSieve and LMTP under ``--workers 2`` over real sockets, on one server (a
``--workers`` start costs seconds): both children serve the ManageSieve listeners
(STARTTLS and implicit TLS) and share the users' scripts, which live in the data
directory; ManageSieve and LMTP connections count with IMAP's in the master, against a
per-address bound of four; failed ManageSieve sign-ins are held by both children before
their NO.  On maildir, a store several processes share.
"""

from __future__ import annotations

import base64
import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from imapserver import User, add_cheap_user, new_user
from sievelib.managesieve import Client
from sievelib.managesieve import Error as SieveError
from sieveraw import Raw
from test_lmtp_limits import (  # type: ignore[import-not-found]
    _admitted,
    _refused,
    counted_together,
)
from test_service_workers import children, serving_pid  # type: ignore[import-not-found]

from bench.harness import HOST, BackendSpec, ServerProcess, free_port

pytestmark = pytest.mark.timeout(180)

PER_ADDRESS = 4
GREETING = b'"IMPLEMENTATION"'
HANG = 60.0
"""Seconds to wait for a connection to land on the second worker (a busy machine may
starve one a while)."""


@dataclass
class Workers:
    process: ServerProcess
    user: User
    other: User
    """A user whose sign-ins fail (and end locked)."""
    lmtp: int
    sieve: int
    """ManageSieve, STARTTLS offered."""
    sieve_tls: int
    """ManageSieve over TLS from the first byte."""


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    data_dir = tmp_path_factory.mktemp("workers")
    lmtp, sieve, sieve_tls = free_port(), free_port(), free_port()
    args = ["--workers", "2", "--limit", f"max_connections_per_address={PER_ADDRESS}"]
    args += ["--limit", "user_max_auth_failures=2"]
    args += ["--lmtp", f"tcp:{lmtp}:interface={HOST}"]
    args += ["--managesieve", f"tcp:{sieve}:interface={HOST}"]
    args += ["--managesieve", f"ssl:{sieve_tls}:interface={HOST}"]
    user, other = new_user(), new_user()
    add_cheap_user(data_dir, user.name, user.password)
    add_cheap_user(data_dir, other.name, other.password)
    process = ServerProcess(data_dir, BackendSpec("maildir"), extra_args=args)
    process.start()
    try:
        _wait_both_accept(process)
        yield Workers(process, user, other, lmtp, sieve, sieve_tls)
    finally:
        process.stop()
    assert "Traceback" not in process.log_text()


def _wait_both_accept(process: ServerProcess) -> None:
    """Until both children accept (before, a connection waits in the backlog, and a
    client's TLS handshake may give up)."""
    deadline = time.monotonic() + HANG
    pattern = r"worker \d \[\d+\] \[mailserv.tap#info\] MANAGESIEVES listening"
    while len(re.findall(pattern, process.log_text())) < 2:
        assert time.monotonic() < deadline, process.log_text()[-3000:]
        time.sleep(0.05)


def _done(client: Client) -> None:
    """LOGOUT, then close our end (sievelib leaves its socket open, and the connection
    keeps its slot in the per-address count until the server gives up on it)."""
    try:
        client.logout()
    finally:
        client.sock.close()


@pytest.fixture
def clients(workers: Workers, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Client]]:
    """Signed-in sievelib clients over implicit TLS, opened until each worker serves one
    (the first of each kept; the others closed at once, so they never fill the
    per-address count), then one over STARTTLS."""
    user = workers.user
    monkeypatch.setenv("SSL_CERT_FILE", str(workers.process.cert_path))
    kept: dict[int, Client] = {}
    everyone: list[Client] = []
    try:
        deadline = time.monotonic() + HANG
        while len(kept) < 2:
            assert time.monotonic() < deadline, "every connection went to one worker"
            client = Client(HOST, workers.sieve_tls)
            try:
                signed_in = client.connect(user.name, user.password, authmech="PLAIN", ssl=True)
            except SieveError:
                # Refused at the per-address bound: a worker may accept this connection
                # before it sees that the one just closed is gone.  Try again.
                time.sleep(0.05)
                continue
            if not signed_in:
                raise AssertionError(f"no sign-in over TLS: {client.errmsg!r}")
            pid = serving_pid(client, children(workers.process.pid))
            if pid in kept:
                _done(client)
            else:
                kept[pid] = client
                everyone.append(client)
        while True:  # the same bound may refuse it for a moment (``BYE (TRYLATER)``)
            assert time.monotonic() < deadline, "STARTTLS connections refused throughout"
            starttls = Client(HOST, workers.sieve)
            try:
                signed_in = starttls.connect(
                    user.name, user.password, starttls=True, authmech="PLAIN"
                )
            except SieveError:
                time.sleep(0.05)
                continue
            assert signed_in, f"no sign-in over STARTTLS: {starttls.errmsg!r}"
            everyone.append(starttls)
            break
        yield everyone
    finally:
        for client in everyone:
            _done(client)


def test_script_put_by_one_worker_is_read_by_the_other(clients: list[Client]) -> None:
    first, second, starttls = clients
    name = "w-" + secrets.token_hex(3)
    script = 'require "fileinto";\nif header :contains "subject" "x" { fileinto "X"; }\n'
    assert first.putscript(name, script)
    assert second.getscript(name).splitlines() == script.splitlines()
    assert second.setactive(name)
    assert first.listscripts() == (name, [])
    assert starttls.listscripts() == (name, [])
    assert starttls.setactive("") and starttls.deletescript(name)
    assert first.listscripts() == (None, [])


def test_every_protocol_counts_together_under_workers(workers: Workers) -> None:
    """The master's ticket scheme holds ManageSieve with IMAP and LMTP: two ManageSieve
    connections leave room for one LMTP and one IMAP connection (``counted_together``: a
    third of those is refused); with all four held, a ManageSieve one is told BYE and
    closed; once one has closed, another is admitted."""
    sieves = [_admitted(workers.sieve, GREETING) for _ in range(2)]
    held: list[socket.socket] = []
    try:
        counted_together(workers.process, workers.lmtp)
        held.append(_admitted(workers.lmtp, b"220 "))
        held.append(_admitted(workers.process.imap_port, b"* OK"))
        _refused(workers.sieve, b'BYE (TRYLATER) "Too many connections from your address"')
        sieves.pop().close()
        sieves.append(_admitted(workers.sieve, GREETING))
    finally:
        for sock in sieves + held:
            sock.close()


def _plain(user: str, password: str) -> bytes:
    return b'AUTHENTICATE "PLAIN" "%s"' % base64.b64encode(f"\0{user}\0{password}".encode())


def test_failed_sign_ins_are_held_by_every_worker(workers: Workers) -> None:
    """Two failed sign-ins of one user from two addresses at once lock it
    (``user_max_auth_failures=2``): once both NOs have come, both children refuse even its
    right password, and exactly one logged the lockout."""
    name, password = workers.other.name, workers.other.password
    failing = [Raw(workers.sieve, source=f"127.0.6.{n}") for n in (1, 2)]
    for raw in failing:  # sent at once: the answers wait for their delays
        raw.sock.sendall(_plain(name, "wrong") + b"\r\n")
    for raw in failing:  # a NO comes once every worker holds that failure
        assert raw.until_status()[-1] == b'NO "Authentication failed"'
        raw.close()
    pids = children(workers.process.pid)
    served: set[int] = set()
    tries = 0
    deadline = time.monotonic() + HANG
    while len(served) < 2:  # until both children refused it
        assert time.monotonic() < deadline, (tries, pids, served)
        tries += 1
        probe = Raw(workers.sieve, source=f"127.0.7.{tries % 250 + 1}")
        served.add(serving_pid(probe, pids))  # type: ignore[arg-type]
        answer = probe.ask(_plain(name, password))
        assert answer == b'BYE "Too many failed logins for this user; try later"'
        probe.close()
    assert workers.process.log_text().count(f"Logins of {name!r} refused for now") == 1
