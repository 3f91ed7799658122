"""Two real ``twistd imapserv`` frontends on one PostgreSQL database.

A client IDLE on one frontend hears what a client of the other does (APPEND, STORE,
EXPUNGE, COPY), through LISTEN/NOTIFY, also after the notices connection was cut; APPENDs
through both at once never share a UID and never lose a message.  Users live in the
database (``auth=sql``), added with ``mailserv user add --db``.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pgcluster
import psycopg
import pytest

from bench import messages
from bench.harness import REPO, BackendSpec, RawClient, ServerProcess

NOTICE_WAIT = 5.0
"""Seconds a test waits for a cross-frontend notice (they take milliseconds)."""

pytestmark = pytest.mark.timeout(120)


class Frontends:
    def __init__(self, url: str, servers: list[ServerProcess]) -> None:
        self.url = url
        self.servers = servers
        self.user = "u" + secrets.token_hex(4)
        self.password = "pw " + secrets.token_hex(6)

    def client(self, which: int) -> RawClient:
        client = RawClient.connect(self.servers[which].imap_port)
        client.login(self.user, self.password)
        return client


def add_user(url: str, name: str, password: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailserv", "user", "add", name, "--db", url, "--password-stdin"],
        input=(password + "\n").encode(),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()


@pytest.fixture(scope="module")
def frontends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frontends]:
    url = pgcluster.database_url()
    spec = BackendSpec("sql", {"url": url, "auth": "sql"})
    servers = [
        ServerProcess(  # one process each: a test counts their LISTEN connections
            tmp_path_factory.mktemp(f"frontend{i}"),
            spec,
            limits={"auth_failure_delay": 0},
            extra_args=["--workers", "1"],
        )
        for i in range(2)
    ]
    try:
        for server in servers:
            server.start()
        yield Frontends(url, servers)
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def fronts(frontends: Frontends) -> Frontends:
    """A fresh user for each test, in the shared database."""
    frontends.user = "u" + secrets.token_hex(4)
    add_user(frontends.url, frontends.user, frontends.password)
    return frontends


def wait_for(client: RawClient, wanted: Callable[[bytes], bool], timeout: float) -> bytes:
    """Read lines until one satisfies ``wanted``; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching line arrived in time")
        client.settimeout(left)
        line = client.read_line()
        if wanted(line):
            client.settimeout(10)
            return line


def start_idle(client: RawClient, mailbox: str = "INBOX") -> None:
    assert client.command(f"SELECT {mailbox}").ok
    client.send(b"idle IDLE\r\n")
    wait_for(client, lambda line: line.startswith(b"+"), 10)


def test_idle_on_one_frontend_hears_the_other(fronts: Frontends) -> None:
    idler, actor = fronts.client(0), fronts.client(1)
    start_idle(idler)

    started = time.perf_counter()
    assert actor.command_with_literal("APPEND INBOX ", messages.plain()).ok
    wait_for(idler, lambda line: line == b"* 1 EXISTS\r\n", NOTICE_WAIT)
    assert time.perf_counter() - started < 1.0

    assert actor.command("SELECT INBOX").ok
    assert actor.command("STORE 1 +FLAGS (\\Flagged)").ok
    line = wait_for(idler, lambda line: b"FETCH" in line, NOTICE_WAIT)
    assert line.startswith(b"* 1 FETCH") and b"\\Flagged" in line

    assert actor.command("STORE 1 +FLAGS (\\Deleted)").ok
    wait_for(idler, lambda line: b"FETCH" in line and b"\\Deleted" in line, NOTICE_WAIT)
    assert actor.command("EXPUNGE").ok
    wait_for(idler, lambda line: line == b"* 1 EXPUNGE\r\n", NOTICE_WAIT)

    assert actor.command_with_literal("APPEND INBOX ", messages.plain(subject="2")).ok
    assert actor.command("CREATE Other").ok
    assert actor.command("COPY 1 Other").ok
    idler.send(b"DONE\r\n")
    assert idler.read_until_tagged("idle").ok
    start_idle(idler, "Other")
    assert actor.command("COPY 1 Other").ok
    wait_for(idler, lambda line: line == b"* 2 EXISTS\r\n", NOTICE_WAIT)
    idler.send(b"DONE\r\n")
    assert idler.read_until_tagged("idle").ok


def test_concurrent_appends_through_both_frontends(fronts: Frontends) -> None:
    per_client, clients = 40, 4
    uids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(which: int) -> None:
        try:
            client = fronts.client(which % 2)
            batch = [messages.plain(subject=f"c{which} m{n}") for n in range(per_client)]
            for response in client.append_many("INBOX", batch):
                assert response.ok, response.line
                match = re.search(r"APPENDUID \d+ (\d+)", response.code or "")
                assert match is not None, response.line
                with lock:
                    uids.append(int(match.group(1)))
            client.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors
    total = per_client * clients
    assert len(uids) == len(set(uids)) == total
    for which in (0, 1):
        client = fronts.client(which)
        assert client.command("SELECT INBOX").numbers("EXISTS")[-1] == total
        found = client.command("UID SEARCH ALL").data("SEARCH")[0].split()
        assert sorted(int(uid) for uid in found) == sorted(uids)
        client.close()


def _cut_listen_connections(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'mailserv-listen' AND datname = current_database()"
        ).fetchall()
    return len(rows)


def test_notices_resume_after_the_listen_connection_is_cut(fronts: Frontends) -> None:
    idler, actor = fronts.client(0), fronts.client(1)
    start_idle(idler)
    assert _cut_listen_connections(fronts.url) == 2
    # Sent while the notices connection is down: the resynchronisation reports it.
    assert actor.command_with_literal("APPEND INBOX ", messages.plain()).ok
    wait_for(idler, lambda line: line == b"* 1 EXISTS\r\n", NOTICE_WAIT)
    time.sleep(0.3)
    assert actor.command_with_literal("APPEND INBOX ", messages.plain(subject="2")).ok
    wait_for(idler, lambda line: line == b"* 2 EXISTS\r\n", NOTICE_WAIT)
    idler.send(b"DONE\r\n")
    assert idler.read_until_tagged("idle").ok
    assert "reconnect" in fronts.servers[0].log_text()


def test_sql_users_log_in_on_every_frontend(fronts: Frontends) -> None:
    for which in (0, 1):
        for password, accepted in ((fronts.password, True), ("wrong", False)):
            client = RawClient.connect(fronts.servers[which].imap_port)
            assert client.command(f'LOGIN {fronts.user} "{password}"').ok is accepted
            client.close()


def test_dropped_database_connections_are_replaced(fronts: Frontends) -> None:
    """After a PostgreSQL restart or failover the next command still succeeds."""
    client = fronts.client(0)
    assert client.command_with_literal("APPEND INBOX ", messages.plain()).ok
    with psycopg.connect(fronts.url, autocommit=True) as conn:
        cut = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert cut is not None and cut[0] >= 2
    for n in range(3):
        assert client.command_with_literal("APPEND INBOX ", messages.plain(subject=str(n))).ok
    assert client.command("SELECT INBOX").numbers("EXISTS")[-1] == 4
