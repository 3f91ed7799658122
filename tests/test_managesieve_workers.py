"""ManageSieve and LMTP under ``--workers 2`` over real sockets, on one server (a
``--workers`` start costs seconds): both children serve the ManageSieve listeners
(STARTTLS and implicit TLS) and share the users' scripts, which live in the data
directory; LMTP connections count with IMAP's in the master, against a per-address bound
of two (ManageSieve connections are not counted).  On maildir, a store several processes
share.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from imapserver import User, add_cheap_user, new_user
from sievelib.managesieve import Client
from test_lmtp_limits import counted_together  # type: ignore[import-not-found]
from test_service_workers import children, serving_pid  # type: ignore[import-not-found]

from bench.harness import HOST, BackendSpec, ServerProcess, free_port

pytestmark = pytest.mark.timeout(180)

HANG = 60.0
"""Seconds to wait for a connection to land on the second worker (a busy machine may
starve one a while)."""


@dataclass
class Workers:
    process: ServerProcess
    user: User
    lmtp: int
    sieve: int
    """ManageSieve, STARTTLS offered."""
    sieve_tls: int
    """ManageSieve over TLS from the first byte."""


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    data_dir = tmp_path_factory.mktemp("workers")
    lmtp, sieve, sieve_tls = free_port(), free_port(), free_port()
    args = ["--workers", "2", "--limit", "max_connections_per_address=2"]
    args += ["--lmtp", f"tcp:{lmtp}:interface={HOST}"]
    args += ["--managesieve", f"tcp:{sieve}:interface={HOST}"]
    args += ["--managesieve", f"ssl:{sieve_tls}:interface={HOST}"]
    user = new_user()
    add_cheap_user(data_dir, user.name, user.password)
    process = ServerProcess(data_dir, BackendSpec("maildir"), extra_args=args)
    process.start()
    try:
        _wait_both_accept(process)
        yield Workers(process, user, lmtp, sieve, sieve_tls)
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


@pytest.fixture
def clients(workers: Workers, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Client]]:
    """Signed-in sievelib clients over implicit TLS, opened until each worker serves one
    (the first of each kept), then one over STARTTLS."""
    user = workers.user
    monkeypatch.setenv("SSL_CERT_FILE", str(workers.process.cert_path))
    kept: dict[int, Client] = {}
    deadline = time.monotonic() + HANG
    while len(kept) < 2:
        assert time.monotonic() < deadline, "every connection went to one worker"
        client = Client(HOST, workers.sieve_tls)
        if not client.connect(user.name, user.password, authmech="PLAIN", ssl=True):
            raise AssertionError(f"no sign-in over TLS: {client.errmsg!r}")
        pid = serving_pid(client, children(workers.process.pid))
        if pid in kept:
            client.logout()
        else:
            kept[pid] = client
    starttls = Client(HOST, workers.sieve)
    assert starttls.connect(user.name, user.password, starttls=True, authmech="PLAIN")
    everyone = [*kept.values(), starttls]
    yield everyone
    for client in everyone:
        client.logout()


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


def test_lmtp_counts_with_imap_under_workers(workers: Workers) -> None:
    """The master's ticket scheme: the per-address bound holds for both children."""
    counted_together(workers.process, workers.lmtp)
