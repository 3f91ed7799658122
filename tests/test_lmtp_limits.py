"""LMTP's bounds over real sockets: connections counted with IMAP's against
``max_connections`` in one process (under ``--workers``, where the master counts: in
test_managesieve_workers.py, on the server it has), the idle timeout, the proxy backend's
refusal of ``--lmtp``, and a message big enough to be joined in a thread after its final
dot.

What the engine answers by itself runs on one backend.
"""

from __future__ import annotations

import imaplib
import smtplib
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKENDS, _selected_backends
from imapserver import add_cheap_user, new_user
from lmtpserver import HANG, RawLmtp
from test_service_twistd import (  # type: ignore[import-not-found]
    LOOPBACK_ANY_PORT,
    source_env,
    twistd,
)

from bench.harness import HOST, ServerProcess, free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.one_backend]

FIRST: list[Any] = [name for name in _selected_backends() if name != "proxy"][:1] or [
    pytest.param("proxy", marks=pytest.mark.skip(reason="the proxy backend refuses --lmtp"))
]
TOO_MANY = b"421 4.3.2 Too many connections"


def _start(data_dir: Path, backend: str, lmtp: int, args: Sequence[str]) -> ServerProcess:
    process = ServerProcess(
        data_dir, BACKENDS[backend], extra_args=["--lmtp", f"tcp:{lmtp}:interface={HOST}", *args]
    )
    process.start()
    return process


@pytest.fixture
def stopped_cleanly() -> Iterator[list[ServerProcess]]:
    """Servers a test started: stopped after it, their logs free of tracebacks."""
    started: list[ServerProcess] = []
    yield started
    for process in started:
        process.stop()
    for process in started:
        assert "Traceback" not in process.log_text(), process.log_text()[-3000:]


def _first_line(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection((HOST, port), timeout=HANG)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return sock, data.split(b"\r\n", 1)[0]


def _admitted(port: int, greeting: bytes) -> socket.socket:
    """A connection that got ``greeting``: a slot a closed connection held may be given
    back a moment after its close (the master's count, with --workers), so try again."""
    deadline = time.monotonic() + HANG
    while True:
        sock, line = _first_line(port)
        if line.startswith(greeting):
            return sock
        sock.close()
        assert time.monotonic() < deadline, f"never admitted: {line!r}"
        time.sleep(0.05)


def _refused(port: int, expected: bytes) -> None:
    """The first line says why, and the server closes the connection."""
    sock, line = _first_line(port)
    try:
        assert line.startswith(expected), line
        sock.settimeout(HANG)
        while sock.recv(4096):
            pass
    finally:
        sock.close()


def counted_together(process: ServerProcess, lmtp: int) -> None:
    """With two connections allowed: one LMTP and one IMAP fill the count; a third of
    either kind is refused in its protocol's words; once the LMTP one has said QUIT, an
    LMTP connection is admitted again."""
    held = _admitted(lmtp, b"220 ")
    imap = _admitted(process.imap_port, b"* OK")
    try:
        _refused(lmtp, TOO_MANY)
        _refused(process.imap_port, b"* BYE Too many connections")
        held.sendall(b"QUIT\r\n")
        assert held.recv(4096).startswith(b"221 ")
        held.close()
        again = _admitted(lmtp, b"220 ")
        again.sendall(b"LHLO t\r\n")
        assert again.recv(4096).startswith(b"250-")
        again.close()
    finally:
        held.close()
        imap.close()


@pytest.fixture(scope="module", params=FIRST)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, int]]:
    """One process that admits two connections at a time, and its LMTP port."""
    lmtp = free_port()
    args = ["--workers", "1", "--limit", "max_connections=2"]
    process = _start(tmp_path_factory.mktemp("counted"), str(request.param), lmtp, args)
    yield process, lmtp
    process.stop()
    assert "Traceback" not in process.log_text(), process.log_text()[-3000:]


def test_lmtp_counts_with_imap(server: tuple[ServerProcess, int]) -> None:
    counted_together(*server)


def test_big_message(server: tuple[ServerProcess, int]) -> None:
    """2 MiB with dot-stuffed lines (smtplib stuffs them), read back by IMAP as sent."""
    process, lmtp = server
    user = new_user()
    add_cheap_user(process.data_dir, user.name, user.password)
    line = b".a line that starts with a dot, and some more text to fill it up\r\n"
    text = b"Subject: big\r\n\r\n" + line * ((2 << 20) // len(line))
    deadline = time.monotonic() + HANG
    while True:  # the other test's connections may take a moment to be counted out
        try:
            client = smtplib.LMTP(HOST, lmtp, timeout=HANG)
            break
        except smtplib.SMTPConnectError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with client:
        client.ehlo("test.example.org")
        assert client.sendmail("a@example.org", [user.name], text) == {}
    imap = imaplib.IMAP4(HOST, process.imap_port, timeout=HANG)
    try:
        imap.login(user.name, user.password)
        imap.select("INBOX", readonly=True)
        _typ, data = imap.fetch("1", "(BODY.PEEK[TEXT])")
        assert data[0][1] == text.split(b"\r\n\r\n", 1)[1]  # type: ignore[index]
    finally:
        imap.logout()


@pytest.mark.parametrize("backend", FIRST)
def test_silent_connection_is_closed(
    backend: str, tmp_path: Path, stopped_cleanly: list[ServerProcess]
) -> None:
    lmtp = free_port()
    process = _start(tmp_path, backend, lmtp, ["--workers", "1", "--limit", "preauth_timeout=1"])
    stopped_cleanly.append(process)
    raw = RawLmtp(lmtp)
    try:
        # Some talk first: the timeout counts from the last thing heard.
        raw.send(b"LHLO t\r\n")
        assert raw.codes(1) == [250]
        reply = raw.replies(1)[0]
        assert reply.startswith(b"421 4.4.2 "), reply
        assert raw.sock.recv(4096) == b""
    finally:
        raw.close()


def test_proxy_backend_refuses_lmtp(tmp_path: Path) -> None:
    """Without a user store to find recipients in, ``twistd imapserv --lmtp`` does not
    start: one line saying why, exit status 1, no traceback."""
    args = [
        "-n",
        "--pidfile=",
        "imapserv",
        "--data-dir",
        str(tmp_path / "data"),
        *LOOPBACK_ANY_PORT,
    ]
    args += ["--backend", "proxy", "--backend-option", f"upstream=plain:{HOST}:{free_port()}"]
    args += ["--lmtp", f"tcp:{free_port()}:interface={HOST}"]
    result = twistd(args, tmp_path, source_env())
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "twistd imapserv: --lmtp: this backend checks sign-in elsewhere" in result.stderr
    assert "Traceback" not in output
