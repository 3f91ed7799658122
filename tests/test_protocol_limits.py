"""Configured limits seen from outside, each on its own server started with small
``--limit`` values: line length, literal size (APPENDLIMIT, TOOBIG), failed logins,
pre-login and post-login timeouts, pipelining depth (flow control), IDLE keepalive.

Each limit is the engine's (its parser, its timers, its command queue), enforced before or
around any backend call, so those tests run on one backend (``one_backend``): each would
otherwise start a server, and for PostgreSQL a database and for the proxy a Dovecot, per
backend.  Failed logins run on every backend: the proxy checks passwords upstream."""

from __future__ import annotations

import re
import time

import pytest
from imapserver import ServerFactory

from bench import messages
from bench.harness import RawClient, ServerProcess


def connect(server: ServerProcess) -> RawClient:
    return RawClient.connect(server.imap_port)


def logged_in(factory: ServerFactory, server: ServerProcess) -> RawClient:
    user = factory.user(server)
    client = connect(server)
    client.login(user.name, user.password)
    return client


@pytest.mark.one_backend
def test_over_long_line_is_bad_and_connection_survives(server_factory: ServerFactory) -> None:
    server = server_factory(limits={"max_line": 1024})
    client = logged_in(server_factory, server)
    client.send(b"l1 SEARCH SUBJECT " + b"x" * 5000 + b"\r\nl2 NOOP\r\n")
    lines = []
    while True:
        line = client.read_line()
        lines.append(line)
        if line.startswith(b"l2 "):
            break
    assert lines[-1].startswith(b"l2 OK"), lines
    assert any(re.match(rb"^(l1|\*) BAD", line) for line in lines[:-1]), lines
    assert not any(b"Traceback" in line for line in lines)
    # A line just under the limit is fine.
    assert client.command("SELECT INBOX").ok
    assert client.command("SEARCH SUBJECT " + "y" * 900).ok


@pytest.mark.one_backend
def test_literal_over_limit_is_refused_without_continuation(server_factory: ServerFactory) -> None:
    server = server_factory(limits={"max_literal": 4096})
    client = logged_in(server_factory, server)
    caps = client.command("CAPABILITY").data("CAPABILITY")[0].upper()
    assert b"APPENDLIMIT=4096" in caps.split()
    client.send(b"l1 APPEND INBOX {100000}\r\n")
    line = client.read_line()
    assert not line.startswith(b"+"), "no continuation for a literal over the limit"
    assert re.match(rb"^l1 (NO|BAD)\b", line), line
    if line.startswith(b"l1 NO"):
        assert b"[TOOBIG]" in line.upper()
    assert client.command("NOOP").ok
    # Within the limit, APPEND works.
    small = messages.plain()
    assert len(small) < 4096
    assert client.command_with_literal("APPEND INBOX ", small).ok


@pytest.mark.one_backend
def test_non_synchronizing_literal_over_limit(server_factory: ServerFactory) -> None:
    # RFC 7888: the server may reject and close; it must not crash or accept the message.
    server = server_factory(limits={"max_literal": 4096, "max_literal_plus": 4096})
    client = logged_in(server_factory, server)
    payload = b"x" * 20000
    client.send(b"l1 APPEND INBOX {%d+}\r\n%s\r\nl2 NOOP\r\n" % (len(payload), payload))
    lines: list[bytes] = []
    try:
        while True:
            line = client.read_line()
            lines.append(line)
            if line.startswith(b"l2 "):
                break
    except (EOFError, ConnectionResetError):
        pass
    assert any(re.match(rb"^(l1 (NO|BAD)|\* BYE|\* BAD)", line) for line in lines), lines
    assert not any(line.startswith(b"l1 OK") for line in lines)
    assert not any(b"Traceback" in line for line in lines)
    check = logged_in(server_factory, server)
    status = check.command("STATUS INBOX (MESSAGES)")
    assert status.ok and b"MESSAGES 0" in status.data("STATUS")[0]


def test_too_many_auth_failures_disconnects(server_factory: ServerFactory) -> None:
    server = server_factory(limits={"max_auth_failures": 2, "auth_failure_delay": 0})
    user = server_factory.user(server)
    client = connect(server)
    lines: list[bytes] = []
    closed = False
    try:
        for attempt in range(1, 4):
            response = client.command(f'LOGIN {user.name} "wrong-{attempt}"')
            lines += response.untagged + [response.line]
            assert response.status in ("NO", "BAD"), response.line
            if any(line.upper().startswith(b"* BYE") for line in response.untagged):
                break
        lines += client.wait_closed(timeout=3)
        closed = True
    except (EOFError, ConnectionResetError, BrokenPipeError):
        closed = True
    assert closed, lines
    assert sum(line.startswith(b"t") and b" NO" in line for line in lines) >= 1, lines
    # The server is still there for others.
    fresh = connect(server)
    fresh.login(user.name, user.password)


@pytest.mark.one_backend
def test_preauth_timeout_closes_connection(server_factory: ServerFactory) -> None:
    server = server_factory(limits={"preauth_timeout": 1})
    client = connect(server)
    started = time.monotonic()
    lines = client.wait_closed(timeout=6)
    assert time.monotonic() - started < 5
    assert all(line.upper().startswith(b"* BYE") for line in lines), lines
    # After login, the (long) post-login timer applies instead.
    other = logged_in(server_factory, server)
    time.sleep(1.6)
    assert other.command("NOOP").ok


@pytest.mark.one_backend
def test_idle_timeout_after_login(server_factory: ServerFactory) -> None:
    server = server_factory(limits={"idle_timeout": 1})
    client = logged_in(server_factory, server)
    lines = client.wait_closed(timeout=6)
    assert all(line.upper().startswith(b"* BYE") for line in lines), lines


@pytest.mark.one_backend
def test_idle_keepalive(server_factory: ServerFactory) -> None:
    server = server_factory(limits={"idle_keepalive": 0.3})
    client = logged_in(server_factory, server)
    assert client.command("SELECT INBOX").ok
    client.send(b"i1 IDLE\r\n")
    assert client.read_line().startswith(b"+")
    client.settimeout(3)
    line = client.read_line()
    assert line.upper().startswith(b"* OK"), line
    client.send(b"DONE\r\n")
    assert client.read_until_tagged("i1").ok


@pytest.mark.one_backend
def test_pipelining_beyond_the_queue_limits_is_slowed_not_refused(
    server_factory: ServerFactory,
) -> None:
    """Past max_pipelined queued commands (or max_queued_bytes) the server stops reading
    until the queue drains: every command is answered, in order, and no BYE."""
    server = server_factory(limits={"max_pipelined": 4, "max_queued_bytes": 4096})
    client = logged_in(server_factory, server)
    assert client.command("SELECT INBOX").ok
    count = 300
    filler = b"f" * 2000
    client.send(
        b"".join(
            b"n%d SEARCH SUBJECT {%d+}\r\n%s\r\n" % (i, len(filler), filler)
            if i % 3 == 0
            else b"n%d SEARCH ALL\r\n" % i
            for i in range(count)
        )
    )
    lines: list[bytes] = []
    while True:
        line = client.read_line()
        lines.append(line)
        if line.startswith(b"n%d " % (count - 1)):
            break
    assert not any(line.upper().startswith(b"* BYE") for line in lines), lines[-5:]
    tagged = [line for line in lines if not line.startswith(b"*")]
    assert [line.split(b" ", 1)[0] for line in tagged] == [b"n%d" % i for i in range(count)]
    assert all(line.split(b" ", 2)[1] == b"OK" for line in tagged)
    assert client.command("NOOP").ok


def test_appendlimit_matches_default_setting(server: ServerProcess) -> None:
    client = connect(server)
    try:
        caps = client.command("CAPABILITY").data("CAPABILITY")[0].upper().split()
        limits = [c for c in caps if c.startswith(b"APPENDLIMIT=")]
        assert len(limits) == 1 and int(limits[0].split(b"=")[1]) >= 1024 * 1024
    finally:
        client.close()
