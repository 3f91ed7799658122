"""The LMTP service (RFC 2033) over real sockets: ``smtplib.LMTP`` and a raw socket against
a server started with ``--lmtp`` on TCP and on a unix socket.

What depends on the store (delivery seen by IDLE, two recipients, +folder, quota) runs on
every backend; what the protocol answers by itself on one (``one_backend``).  The proxy
backend is left out: without master-user mode it cannot look recipients up, so the server
refuses ``--lmtp`` with it.
"""

from __future__ import annotations

import secrets
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BACKENDS, _selected_backends
from lmtpserver import (
    HANG,
    MAX_MESSAGE,
    Idler,
    LmtpServer,
    RawLmtp,
    message,
    seen_by_idle,
    start_lmtp_server,
    stop_lmtp_server,
    subjects,
)
from postfix import Postfix

from bench.harness import HOST
from mailserv.config import ConfigError, load_config

pytestmark = pytest.mark.timeout(120)

DELIVERING = [name for name in _selected_backends() if name != "proxy"]


@pytest.fixture(scope="module", params=DELIVERING)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LmtpServer]:
    """This module's server (named ``server`` so ``one_backend`` picks the first backend)."""
    name = str(request.param)
    started = start_lmtp_server(tmp_path_factory.mktemp(f"lmtp-{name}"), BACKENDS[name])
    yield started
    stop_lmtp_server(started)
    assert "Traceback" not in started.process.log_text()


def _subject() -> str:
    return "m-" + secrets.token_hex(4)


def _address(name: str, folder: str | None = None) -> str:
    return f"{name}+{folder}@example.org" if folder else f"{name}@example.org"


def _lmtp(server: LmtpServer) -> smtplib.LMTP:
    client = smtplib.LMTP(HOST, server.port, timeout=HANG)
    client.ehlo("test.example.org")
    return client


def _transaction(client: smtplib.LMTP, recipients: list[str], data: bytes) -> list[int]:
    """MAIL, RCPT each, DATA: the RCPT codes, then one DATA code per accepted recipient."""
    assert client.mail("sender@example.org")[0] == 250
    rcpt = [client.rcpt(address)[0] for address in recipients]
    accepted = sum(code == 250 for code in rcpt)
    code, _ = client.data(data)
    return rcpt + [code] + [client.getreply()[0] for _ in range(accepted - 1)]


def test_delivery_reaches_idle_client(server: LmtpServer) -> None:
    user = server.users[0]

    def send(subject: str) -> None:
        with _lmtp(server) as client:
            assert client.sendmail("s@example.org", [_address(user.name)], message(subject)) == {}

    conn = seen_by_idle(server, user, send)
    _typ, data = conn.fetch("*", "(BODY.PEEK[HEADER.FIELDS (RETURN-PATH)])")
    assert b"Return-Path: <s@example.org>" in data[0][1]  # type: ignore[index]
    conn.logout()


def test_two_recipients_one_unknown(server: LmtpServer) -> None:
    first, second = server.users
    subject = _subject()
    with _lmtp(server) as client:
        got = _transaction(
            client,
            [_address(first.name), "nobody-" + secrets.token_hex(3) + "@x", _address(second.name)],
            message(subject),
        )
    assert got == [250, 550, 250, 250, 250]
    for user in (first, second):
        conn = server.imap(user)
        assert subject in subjects(conn)
        conn.logout()


def test_plus_folder(server: LmtpServer) -> None:
    user = server.users[1]
    conn = server.imap(user)
    conn.create("Work")
    subject = _subject()
    with _lmtp(server) as client:
        recipients = [_address(user.name, "Work"), _address(user.name, "NoSuchFolder")]
        assert _transaction(client, recipients, message(subject)) == [250, 250, 250, 250]
    assert subjects(conn, "Work") == [subject]
    assert subject in subjects(conn, "INBOX")
    conn.logout()


def test_over_quota_is_per_recipient(server: LmtpServer) -> None:
    full, other = server.quota_user, server.users[0]
    with _lmtp(server) as client:
        assert _transaction(client, [_address(full.name)], message(_subject())) == [250, 250]
        assert client.mail("s@example.org")[0] == 250
        assert client.rcpt(_address(full.name))[0] == 250
        assert client.rcpt(_address(other.name))[0] == 250
        code, text = client.data(message(_subject()))
        assert (code, text[:5]) == (552, b"5.2.2")
        assert client.getreply()[0] == 250
    conn = server.imap(full)
    assert len(subjects(conn)) == 1
    conn.logout()


@pytest.mark.one_backend
def test_unix_socket(server: LmtpServer) -> None:
    user = server.users[0]
    subject = _subject()
    client = smtplib.LMTP(server.socket_path, timeout=HANG)
    try:
        client.ehlo("test")
        assert client.sendmail("", [_address(user.name)], message(subject)) == {}
    finally:
        client.quit()
    conn = server.imap(user)
    assert subject in subjects(conn)
    conn.logout()


@pytest.mark.one_backend
def test_oversize(server: LmtpServer) -> None:
    user = server.users[0]
    raw = RawLmtp(server.port)
    raw.send(b"LHLO test\r\n")
    (lhlo,) = raw.replies(1)
    assert f"SIZE {MAX_MESSAGE}".encode() in lhlo and b"PIPELINING" in lhlo
    raw.send(b"MAIL FROM:<a@example.org> SIZE=%d BODY=8BITMIME\r\n" % (MAX_MESSAGE + 1))
    (reply,) = raw.replies(1)
    assert reply.startswith(b"552 5.3.4"), reply
    raw.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<%s>\r\nDATA\r\n" % user.name.encode())
    assert raw.codes(3) == [250, 250, 354]
    line = b"x" * 998 + b"\r\n"
    raw.send(b"Subject: big\r\n\r\n" + line * (MAX_MESSAGE // len(line) + 10) + b".\r\n")
    (reply,) = raw.replies(1)
    assert reply.startswith(b"552 5.3.4"), reply
    raw.send(b"NOOP\r\nQUIT\r\n")
    assert raw.codes(2) == [250, 221]
    raw.close()


@pytest.mark.one_backend
def test_pipelined_commands_and_dot_stuffing(server: LmtpServer) -> None:
    first, second = server.users
    raw = RawLmtp(server.port)
    raw.send(
        b"LHLO test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<%s@x>\r\nRCPT TO:<nobody-zz@x>\r\n"
        b"RCPT TO:<%s@x>\r\nDATA\r\n" % (first.name.encode(), second.name.encode())
    )
    assert raw.codes(6) == [250, 250, 250, 550, 250, 354]
    subject = _subject()
    body = message(subject, b"line\r\n..starts with a dot\r\n") + b".\r\n"
    raw.send(body + b"MAIL FROM:<>\r\nRCPT TO:<%s@x>\r\nDATA\r\n" % first.name.encode())
    assert raw.codes(5) == [250, 250, 250, 250, 354]
    raw.send(message(_subject()) + b".\r\nQUIT\r\n")
    assert raw.codes(2) == [250, 221]
    raw.close()
    conn = server.imap(second)
    conn.select("INBOX", readonly=True)
    _typ, data = conn.search(None, "SUBJECT", subject)
    _typ, data = conn.fetch(data[0].split()[-1], "(BODY.PEEK[TEXT])")
    assert data[0][1] == b"line\r\n.starts with a dot\r\n"  # type: ignore[index]
    conn.logout()


BAD = [
    (b"EHLO test", 500),
    (b"HELO test", 500),
    (b"MAIL FROM:<a@example.org>", 503),
    (b"LHLO", 501),
    (b"LHLO test", 250),
    (b"RCPT TO:<a@example.org>", 503),
    (b"DATA", 503),
    (b"MAIL FROM:a@example.org", 501),
    (b"MAIL FROM:<a@example.org> FOO=1", 555),
    (b"MAIL FROM:<a@example.org> SIZE=ten", 501),
    (b"MAIL FROM:<a@example.org> BODY=BINARYMIME", 501),
    (b"MAIL FROM:<a@example.org>", 250),
    (b"MAIL FROM:<b@example.org>", 503),
    (b"RCPT TO:<>", 501),
    (b"RCPT TO:<a@example.org> NOTIFY=NEVER", 555),
    (b"DATA", 503),
    (b"BOGUS", 500),
    (b"\xff\xfe", 500),
    (b"x" * 5000, 500),
    (b"RSET", 250),
    (b"VRFY a", 252),
    (b"NOOP", 250),
]


@pytest.mark.one_backend
def test_bad_commands(server: LmtpServer) -> None:
    raw = RawLmtp(server.port)
    for line, code in BAD:
        raw.send(line + b"\r\n")
        (reply,) = raw.replies(1)
        assert int(reply[:3]) == code, (line[:40], reply)
    # Still usable after all that.
    raw.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<%s@x>\r\n" % server.users[0].name.encode())
    assert raw.codes(2) == [250, 250]
    raw.send(b"QUIT\r\n")
    assert raw.codes(1) == [221]
    raw.close()


@pytest.mark.one_backend
def test_too_many_errors_close(server: LmtpServer) -> None:
    raw = RawLmtp(server.port)
    raw.send(b"BOGUS\r\n" * 25)
    assert raw.codes(21) == [500] * 20 + [421]
    assert raw.sock.recv(100) == b""
    raw.close()


@pytest.mark.skipif("maildir" not in _selected_backends(), reason="maildir not selected")
def test_workers_share_the_lmtp_listener(tmp_path: Path) -> None:
    """Under --workers 2 the children accept on the LMTP socket; an IDLE client (of
    whichever child) sees each delivery."""
    started = start_lmtp_server(
        tmp_path / "srv", BACKENDS["maildir"], users=1, workers=2, quota_user=False
    )
    try:
        user = started.users[0]
        idler = Idler(started, user)
        try:
            for n, where in enumerate([started.port, started.socket_path, started.port], 1):
                raw = RawLmtp(where)
                raw.send(b"LHLO t\r\nMAIL FROM:<>\r\nRCPT TO:<%s>\r\nDATA\r\n" % user.name.encode())
                assert raw.codes(4) == [250, 250, 250, 354]
                raw.send(message(_subject()) + b".\r\nQUIT\r\n")
                assert raw.codes(2) == [250, 221]
                raw.close()
                idler.wait_exists(idler.exists + n)
        finally:
            idler.close()
    finally:
        stop_lmtp_server(started)


@pytest.mark.one_backend
def test_postfix_delivers_over_lmtp(server: LmtpServer) -> None:
    """A real Postfix (private instance) takes a message by SMTP and hands it to mailserv
    over LMTP; the recipient's IDLE client sees it."""
    postfix = Postfix(f"inet:[{HOST}]:{server.port}")
    try:
        postfix.start()

        def send(subject: str) -> None:
            with smtplib.SMTP(HOST, postfix.smtp_port, timeout=HANG) as smtp:
                to = [_address(server.users[1].name)]
                assert smtp.sendmail("s@example.org", to, message(subject)) == {}

        seen_by_idle(server, server.users[1], send).logout()
    finally:
        print(postfix.log_text()[-4000:])  # shown when the test fails
        postfix.stop()


@pytest.mark.one_backend
def test_lmtp_endpoints_in_the_configuration_file(tmp_path: Path) -> None:
    path = tmp_path / "mailserv.toml"
    path.write_text('lmtp = ["unix:lmtp.sock", "tcp:24:interface=127.0.0.1"]\n')
    assert load_config({}, str(path)).lmtp == ("unix:lmtp.sock", "tcp:24:interface=127.0.0.1")
    assert load_config({"lmtp": ["tcp:2424"]}, str(path)).lmtp == ("tcp:2424",)
    path.write_text('lmtp = "tcp:24"\n')
    with pytest.raises(ConfigError, match="lmtp must be a list of endpoint strings"):
        load_config({}, str(path))
