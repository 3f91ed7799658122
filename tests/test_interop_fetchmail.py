"""fetchmail (Debian's ``fetchmail`` 6.4) and curl's IMAP client against every backend.

Two widely installed clients with habits of their own, over plain IMAP, STARTTLS and IMAPS
(trusting only the server's generated certificate):

- fetchmail quotes the password itself, fetches with ``RFC822.HEADER`` then
  ``BODY.PEEK[TEXT]``, marks ``\\Seen`` by STORE, and in ``idle`` mode sits in IDLE and
  fetches what an EXISTS announces.  ``keep`` leaves mail on the server (only unseen mail is
  fetched next time); without it, fetchmail deletes with ``+FLAGS (\\Seen \\Deleted)`` and
  EXPUNGE.
- curl uploads with ``APPEND INBOX (\\Seen) {n}``, reads by IMAP URL (``;UID=``,
  ``;SECTION=``, ``?SEARCH``) and sends any command with ``-X``.

Every run must exit as the program documents for success; the server's state is then read
with imaplib.  Without fetchmail or curl the tests are skipped, unless
MAILSERV_REQUIRE_FETCHMAIL / MAILSERV_REQUIRE_CURL is set (CI).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import pytest
from imapserver import Connector, User, add_cheap_user, new_user
from maildirsync import require

from bench.harness import ServerProcess

TRANSPORTS = ("plain", "starttls", "imaps")

RUN_TIMEOUT = 120.0
"""Seconds after which one client run is killed as hung (runs take well under a second)."""

pytestmark = pytest.mark.timeout(600)


def message(n: int, marker: str) -> bytes:
    return (
        f"From: Sender {n} <s{n}@example.org>\r\n"
        f"To: someone@example.org\r\n"
        f"Subject: {marker} number {n}\r\n"
        f"Date: Sun, 06 Dec 2026 01:00:{n:02d} +0000\r\n"
        f"Message-ID: <{marker}.{n}@example.org>\r\n"
        f"\r\n"
        f"Body of {marker} {n}.\r\n"
    ).encode()


def server_flags(connector: Connector) -> dict[str, set[str]]:
    """Message-ID → flags of every message in INBOX, read with imaplib."""
    client = connector.imaplib()
    try:
        client.select("INBOX")
        typ, data = client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK", data
        found: dict[str, set[str]] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, header = item
            flags = meta.split(b"FLAGS (", 1)[1].split(b")", 1)[0].decode().split()
            mid = header.decode().split(":", 1)[1].strip()
            found[mid] = set(flags) - {"\\Recent"}
        return found
    finally:
        client.logout()


# -- fetchmail ---------------------------------------------------------------------------


@pytest.fixture
def fm_user(server: ServerProcess) -> User:
    """A user whose password has a space and double quotes, which fetchmail quotes in its
    LOGIN; not the pool's backslash and both kinds of quote, which fetchmail's rc file
    cannot carry (its lexer takes no escapes there)."""
    name = new_user().name
    user = User(name, f'pw "{secrets.token_urlsafe(9)}" x')
    add_cheap_user(server.data_dir, user.name, user.password)
    return user


def _rc_string(value: str) -> str:
    """A quoted fetchmailrc string: in single quotes if it holds a double quote (its lexer
    takes no escaped quote), else in double quotes."""
    assert "'" not in value or '"' not in value
    return f"'{value}'" if '"' in value else f'"{value}"'


def fetchmail_rc(
    tmp_path: Path,
    server: ServerProcess,
    user: User,
    transport: str,
    out: Path,
    options: str,
) -> Path:
    if transport == "imaps":
        port, tls = server.imaps_port, "ssl sslproto tls1.2+"
    elif transport == "starttls":
        port, tls = server.imap_port, "sslproto tls1.2+"
    else:
        port, tls = server.imap_port, "sslproto ''"
    if transport != "plain":
        tls += f" sslcertck sslcertfile {_rc_string(str(server.cert_path))} sslcommonname localhost"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll {server.host} service {port} protocol IMAP auth password timeout 60\n"
        f"  user {_rc_string(user.name)} password {_rc_string(user.password)}\n"
        f"  is root {tls} {options}\n"
        f"  mda {_rc_string(f'cat >> {out}')}\n"
    )
    rc.chmod(0o600)
    return rc


def fetchmail_argv(rc: Path, tmp_path: Path) -> list[str]:
    return [
        require("fetchmail", "fetchmail"),
        "-f",
        str(rc),
        "--nodetach",
        "--nosyslog",
        "-v",
        "--pidfile",
        str(tmp_path / "fetchmail.pid"),
    ]


def fetchmail(rc: Path, tmp_path: Path, expect: int) -> str:
    """One fetchmail run; ``expect`` is its documented exit status (0: mail fetched,
    1: no mail)."""
    result = subprocess.run(
        fetchmail_argv(rc, tmp_path),
        capture_output=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode == expect, f"fetchmail exit {result.returncode}:\n{output[-4000:]}"
    return output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fetchmail_keep_then_flush(
    server: ServerProcess, fm_user: User, transport: str, tmp_path: Path
) -> None:
    require("fetchmail", "fetchmail")
    user = fm_user
    connector = Connector(server, user)
    try:
        connector.append([message(1, "fm")])
        connector.append([message(2, "fm")], flags=r"\Seen")
        connector.append([message(3, "fm")])
        out = tmp_path / "mail.out"
        keep = fetchmail_rc(tmp_path, server, user, transport, out, "keep")
        log = fetchmail(keep, tmp_path, expect=0)
        if transport == "plain":
            assert "STARTTLS" not in log.split("IMAP> ", 1)[1]
        else:
            assert "Server certificate verification error" not in log
        fetched = out.read_text()
        assert "<fm.1@example.org>" in fetched and "<fm.3@example.org>" in fetched
        assert "<fm.2@example.org>" not in fetched  # seen already: keep fetches unseen mail only
        assert "Body of fm 3." in fetched
        assert server_flags(connector) == {f"<fm.{n}@example.org>": {r"\Seen"} for n in range(1, 4)}
        fetchmail(keep, tmp_path, expect=1)  # nothing new
        flush = fetchmail_rc(tmp_path, server, user, transport, out, "fetchall nokeep")
        fetchmail(flush, tmp_path, expect=0)
        assert out.read_text().count("<fm.2@example.org>") == 1
        assert server_flags(connector) == {}
    finally:
        connector.close()


def test_fetchmail_idle_fetches_new_mail(
    server: ServerProcess, fm_user: User, tmp_path: Path
) -> None:
    """fetchmail in ``idle`` mode (over IMAPS) sits in IDLE; mail appended by another
    session is announced, fetched and deleted without a new poll."""
    require("fetchmail", "fetchmail")
    user = fm_user
    connector = Connector(server, user)
    out = tmp_path / "mail.out"
    rc = fetchmail_rc(tmp_path, server, user, "imaps", out, "idle")
    process = subprocess.Popen(
        fetchmail_argv(rc, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    try:
        log_path = tmp_path / "fetchmail.log"
        deadline = time.monotonic() + RUN_TIMEOUT
        # Wait until it sits in IDLE, so the message below arrives during IDLE.
        lines: list[str] = []
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline().decode("utf-8", "replace")
            if not line:
                break
            lines.append(line)
            if "IMAP< + " in line:
                break
        assert any("IMAP< + " in line for line in lines), "".join(lines)
        connector.append([message(7, "idle")])
        while time.monotonic() < deadline and "<idle.7@example.org>" not in _text(out):
            time.sleep(0.2)
        assert "<idle.7@example.org>" in _text(out), "".join(lines)
        while time.monotonic() < deadline and server_flags(connector):
            time.sleep(0.2)
        assert server_flags(connector) == {}
        log_path.write_text("".join(lines))
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        connector.close()


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


# -- curl --------------------------------------------------------------------------------


def curl(server: ServerProcess, user: User, transport: str, url_path: str, *args: str) -> str:
    """One curl run against the server; fails the test unless it exits 0."""
    if transport == "imaps":
        base = f"imaps://{server.host}:{server.imaps_port}"
    else:
        base = f"imap://{server.host}:{server.imap_port}"
    argv = [require("curl", "curl"), "-sS", "--user", f"{user.name}:{user.password}"]
    if transport != "plain":
        # The certificate names localhost: ask for that name, connect to the server's address.
        argv += ["--cacert", str(server.cert_path), "--connect-to", f"localhost::{server.host}:"]
        base = base.replace(server.host, "localhost")
    if transport == "starttls":
        argv.append("--ssl-reqd")
    result = subprocess.run(
        [*argv, *args, base + url_path],
        capture_output=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout.decode("utf-8", "replace")
    assert result.returncode == 0, (
        f"curl exit {result.returncode}: {result.stderr.decode('utf-8', 'replace')}"
    )
    return output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_curl(server: ServerProcess, user: User, transport: str, tmp_path: Path) -> None:
    require("curl", "curl")
    connector = Connector(server, user)
    try:
        for n in (1, 2):
            upload = tmp_path / f"m{n}.eml"
            upload.write_bytes(message(n, "curl"))
            curl(server, user, transport, "/INBOX", "-T", str(upload))
        assert server_flags(connector) == {
            "<curl.1@example.org>": {r"\Seen"},
            "<curl.2@example.org>": {r"\Seen"},
        }
        listing = curl(server, user, transport, "/")
        assert ' "/" INBOX' in listing or " INBOX\r" in listing, listing
        assert curl(server, user, transport, "/INBOX;UID=2") == message(2, "curl").decode()
        body = curl(server, user, transport, "/INBOX;UID=1;SECTION=TEXT")
        assert body == "Body of curl 1.\r\n"
        found = curl(server, user, transport, "/INBOX?SUBJECT%20%22number%202%22")
        assert found.split() == ["*", "SEARCH", "2"], found
        stored = curl(server, user, transport, "/INBOX", "-X", "UID STORE 1 -FLAGS (\\Seen)")
        assert "FETCH" in stored, stored
        assert server_flags(connector)["<curl.1@example.org>"] == set()
        examined = curl(server, user, transport, "/", "-X", "EXAMINE INBOX")
        assert "* 2 EXISTS" in examined, examined
    finally:
        connector.close()
