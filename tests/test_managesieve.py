"""ManageSieve (RFC 5804) over real sockets: sievelib's client (a client we did not write)
over STARTTLS and over implicit TLS (``--managesieve ssl:``), and a raw socket for what a
client library would never send.

The service keeps scripts in the data directory whatever the backend, and signs in as
IMAP does: one backend (``one_backend``).
"""

from __future__ import annotations

import base64
import imaplib
import secrets
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import BACKENDS, _selected_backends
from imapserver import User, new_user
from sievelib.managesieve import Client
from sieveraw import Raw
from twisted.python.usage import UsageError

from bench.harness import HOST, ServerProcess, free_port
from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import hash_password
from mailserv.config import Config
from mailserv.tap import build_service

T = TypeVar("T")

pytestmark = [pytest.mark.timeout(120), pytest.mark.one_backend]

HANG = 30.0
FILTER = """require ["fileinto", "imap4flags"];
if header :contains "subject" "report" {
    fileinto :flags "\\\\Seen" "Reports";
}
"""


@dataclass
class Server:
    process: ServerProcess
    port: int
    lmtp: int
    user: User
    tls_port: int
    """``--managesieve ssl:``: TLS from the first byte, with the server's certificate."""


@pytest.fixture(scope="module", params=[n for n in _selected_backends() if n != "proxy"][:1])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("managesieve")
    port, lmtp, tls_port = free_port(), free_port(), free_port()
    args = ["--managesieve", f"tcp:{port}:interface={HOST}"]
    args += ["--managesieve", f"ssl:{tls_port}:interface={HOST}"]
    args += ["--lmtp", f"tcp:{lmtp}:interface={HOST}", "--workers", "1"]
    process = ServerProcess(data_dir, BACKENDS[str(request.param)], extra_args=args)
    process.start()
    user = new_user()
    PasswdFile(str(data_dir / "passwd")).add_user(user.name, hash_password(user.password.encode()))
    _wait_port(port)
    yield Server(process, port, lmtp, user, tls_port)
    process.stop()
    assert "Traceback" not in process.log_text()


def _wait_port(port: int) -> None:
    for _ in range(600):
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


@pytest.fixture
def client(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """sievelib's client, signed in after STARTTLS (it trusts the server's certificate)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(server.process.cert_path))
    # sievelib waits 5 s for a line; a loaded CI machine (the hash check of the sign-in
    # runs beside the other tests) has taken longer, so wait as the other clients do
    monkeypatch.setattr(Client, "read_timeout", 30)
    sieve = Client(HOST, server.port)
    assert sieve.connect(server.user.name, server.user.password, starttls=True, authmech="PLAIN")
    yield sieve
    sieve.logout()


def test_scripts_put_listed_activated_and_used_at_delivery(server: Server, client: Client) -> None:
    assert {"fileinto", "imap4flags", "vacation", "reject"} <= set(client.get_sieve_capabilities())
    assert client.havespace("filter", len(FILTER))
    assert client.putscript("filter", FILTER)
    assert client.putscript("spare", "keep;\n")
    assert client.setactive("filter")
    active, others = client.listscripts()
    assert (active, others) == ("filter", ["spare"])
    assert client.getscript("filter").splitlines() == FILTER.splitlines()
    # Delivery runs the active script.
    conn = imaplib.IMAP4(HOST, server.process.imap_port, timeout=HANG)
    conn.login(server.user.name, server.user.password)
    assert conn.create("Reports")[0] == "OK"
    subject = "report " + secrets.token_hex(3)
    with smtplib.LMTP(HOST, server.lmtp, timeout=HANG) as lmtp:
        lmtp.ehlo("test.example.org")
        message = f"From: a@example.org\r\nSubject: {subject}\r\n\r\nHi.\r\n"
        lmtp.sendmail("a@example.org", [f"{server.user.name}@example.org"], message)
    typ, data = conn.select("Reports", readonly=True)
    assert typ == "OK" and data == [b"1"]
    _, flags = conn.fetch("1", "(FLAGS)")
    assert b"\\Seen" in flags[0]
    conn.logout()
    # The active script can be neither deleted nor lost by a rename.
    assert not client.deletescript("filter")
    assert b"ACTIVE" in client.errcode
    assert client.renamescript("filter", "renamed")
    assert client.listscripts() == ("renamed", ["spare"])
    assert not client.renamescript("renamed", "spare")
    assert b"ALREADYEXISTS" in client.errcode
    assert client.setactive("")
    assert client.deletescript("renamed") and client.deletescript("spare")
    assert client.listscripts() == (None, [])
    assert not client.getscript("renamed")
    assert b"NONEXISTENT" in client.errcode


def test_checkscript_and_putscript_refuse_with_the_reason(client: Client) -> None:
    for script, reason in [
        ('require "fileinto";\nif true { fileinto "x" }\n', b"line 2"),
        ('require "body";\n', b"unsupported extension 'body'"),
        ('redirect "a@example.net";\n', b"redirect is not available"),
        ("keep;" * 20000, b"at most 65536 octets"),
    ]:
        assert not client.checkscript(script)
        assert reason in client.errmsg, client.errmsg
        assert not client.putscript("bad", script)
        assert reason in client.errmsg
    assert client.checkscript('require "vacation";\nvacation "Away.";\n')
    assert not client.havespace("big", 10**6)
    assert b"QUOTA/MAXSIZE" in client.errcode
    assert client.listscripts() == (None, [])


def test_bad_input_answers_no_with_text(server: Server) -> None:
    raw = Raw(server.port)
    assert raw.ask(b"FROBNICATE") == b'NO "Unknown command"'
    assert raw.ask(b"LISTSCRIPTS") == b'NO "Authenticate first"'
    assert raw.ask(b'PUTSCRIPT "x" {3+}\r\nkee') == b'NO "Authenticate first"'
    assert raw.ask(b"NOOP (").startswith(b'NO "Syntax error')
    assert raw.ask(b'NOOP "t1"') == b'OK (TAG "t1") "Done"'
    assert raw.ask(b'AUTHENTICATE "X-NONE"') == b'NO "Unsupported authentication mechanism X-NONE"'
    bad = base64.b64encode(f"\0{server.user.name}\0wrong".encode())
    assert raw.ask(b'AUTHENTICATE "PLAIN" "' + bad + b'"') == b'NO "Authentication failed"'
    # PLAIN without an initial response: an empty challenge, then the response.
    raw.sock.sendall(b'AUTHENTICATE "PLAIN"\r\n')
    assert raw.line() == b'""'
    good = base64.b64encode(f"\0{server.user.name}\0{server.user.password}".encode())
    assert raw.ask(b'"' + good + b'"') == b'OK "Logged in"'
    assert raw.ask(b'AUTHENTICATE "PLAIN"') == b'NO "Already authenticated"'
    assert raw.ask(b'PUTSCRIPT "a\x01b" {5+}\r\nkeep;').startswith(b'NO "Script name')
    assert raw.ask(b'SETACTIVE "missing"').startswith(b"NO (NONEXISTENT)")
    assert raw.ask(b'HAVESPACE "x" 99999999999999999999').startswith(b"NO (QUOTA/MAXSIZE)")
    assert raw.ask(b"GETSCRIPT") == b'NO "GETSCRIPT takes a script name"'
    # A literal over the bound ends the connection rather than being read.
    assert raw.ask(b'PUTSCRIPT "x" {99999999+}').startswith(b"BYE")
    raw.sock.close()


def test_implicit_tls(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """sievelib over TLS from the first byte (it checks the certificate and the name):
    no STARTTLS offered, PLAIN offered, and a script stored there is the one STARTTLS sees."""
    monkeypatch.setenv("SSL_CERT_FILE", str(server.process.cert_path))
    sieve = Client(HOST, server.tls_port)
    assert sieve.connect(server.user.name, server.user.password, authmech="PLAIN", ssl=True)
    assert not sieve.has_tls_support()  # the greeting over TLS offers no STARTTLS
    name = "tls-" + secrets.token_hex(3)
    assert sieve.putscript(name, "keep;\n")
    sieve.logout()
    other = Client(HOST, server.port)
    assert other.connect(server.user.name, server.user.password, starttls=True, authmech="PLAIN")
    assert other.getscript(name).splitlines() == ["keep;"]
    assert other.deletescript(name)
    other.logout()


def test_implicit_tls_with_a_key_of_its_own_needs_one_worker(tmp_path: Path) -> None:
    """Workers serve TLS with the server's certificate: an ``ssl:`` endpoint naming its own
    key cannot be handed to them (as for --imaps)."""
    endpoint = f"ssl:{free_port()}:interface={HOST}:privateKey=key.pem"
    config = Config(data_dir=str(tmp_path), backend="maildir", workers=2, managesieve=(endpoint,))
    with pytest.raises(UsageError, match=r"--managesieve '.*privateKey=key.pem': with --workers"):
        build_service(config)


def admitted_after_probes(open_: Callable[[], tuple[T, bool]]) -> T:
    """A connection ``open_`` says was admitted, opened again while it is refused: the
    probes that saw the server start may be counted out a moment after they closed."""
    deadline = time.monotonic() + HANG
    while True:
        connection, admitted = open_()
        if admitted:
            return connection
        assert time.monotonic() < deadline, "never admitted"
        time.sleep(0.05)


def test_connections_count_with_imap_in_one_process(tmp_path: Path) -> None:
    """With two connections allowed, one ManageSieve and one IMAP fill the count: a third
    of either is refused (ManageSieve's in RFC 5804's words, a BYE) and closed; once the
    ManageSieve connection has logged out, another is admitted."""
    port = free_port()
    args = ["--managesieve", f"tcp:{port}:interface={HOST}", "--workers", "1"]
    limits = {"max_connections": 2}
    process = ServerProcess(tmp_path, BACKENDS["memory"], limits=limits, extra_args=args)
    process.start()
    try:
        _wait_port(port)

        def sieve() -> tuple[Raw, bool]:
            raw = Raw(port, admitted=False)
            return raw, raw.greeting[-1].startswith(b"OK")

        def imap() -> tuple[socket.socket, bool]:
            sock = socket.create_connection((HOST, process.imap_port), timeout=HANG)
            return sock, sock.recv(4096).startswith(b"* OK")

        held = admitted_after_probes(sieve)
        other = admitted_after_probes(imap)
        refused = Raw(port, admitted=False)
        assert refused.greeting == [b'BYE (TRYLATER) "Too many connections, try again later"']
        assert refused.closed()
        assert held.ask(b"LOGOUT") == b'OK "Logout completed"' and held.closed()
        again = admitted_after_probes(sieve)
        assert again.ask(b"NOOP") == b'OK "Done"'
        again.close()
        other.close()
    finally:
        process.stop()
    assert "Traceback" not in process.log_text()
    assert "Refused a ManageSieve connection from 127.0.0.1" in process.log_text()
