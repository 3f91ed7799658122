"""STARTTLS and TLS 1.3's session tickets (offlineimap's stall).

Over TLS 1.3 a server sends session tickets once it has the client's Finished, that is after
the client has finished its handshake and may already be writing.  imaplib2 (offlineimap's
library) reads in one thread and writes in another on one TLS connection; when the tickets
reached its reader just as its writer sent CAPABILITY, the command was lost and both sides
waited until the server's pre-login timeout.  STARTTLS negotiates TLS 1.3 by default, as
production servers do; ``starttls_tls13=false`` caps it at TLS 1.2, after which nothing
follows the handshake.  Implicit TLS always keeps 1.3 (the greeting follows the tickets
there, and clients read it before they write).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from bench.harness import BackendSpec, ServerProcess

BOUND = 30.0
"""Seconds a socket read may block before the test fails as hung (far above normal)."""


def read_line(sock: socket.socket | ssl.SSLSocket) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"connection closed after {line!r}"
        line += chunk
    return line


def read_reply(sock: ssl.SSLSocket, tag: bytes) -> list[bytes]:
    lines = [read_line(sock)]
    while not lines[-1].startswith(tag + b" "):
        lines.append(read_line(sock))
    return lines


def starttls(server: ServerProcess) -> tuple[str, bool]:
    """The TLS version STARTTLS negotiated, and whether a session ticket had arrived by the
    answer to the first command after the handshake."""
    plain = socket.create_connection((server.host, server.imap_port), timeout=BOUND)
    with plain:
        assert read_line(plain).startswith(b"* OK ")
        plain.sendall(b"s STARTTLS\r\n")
        assert read_line(plain).startswith(b"s OK ")
        with server.ssl_context().wrap_socket(plain, server_hostname="localhost") as tls:
            # What arrived before the answer to the first command is what followed the
            # handshake: a session ticket would show in the session.
            tls.sendall(b"c CAPABILITY\r\n")
            reply = read_reply(tls, b"c")
            assert reply[-1].startswith(b"c OK "), reply
            assert tls.session is not None
            version, ticket = str(tls.version()), tls.session.has_ticket
            tls.sendall(b"l LOGOUT\r\n")
            assert read_reply(tls, b"l")[-1].startswith(b"l OK ")
    return version, ticket


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("capped")
    server = ServerProcess(data, BackendSpec("memory"), {"starttls_tls13": False})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.one_backend
def test_starttls_negotiates_tls13_by_default(server: ServerProcess) -> None:
    assert starttls(server) == ("TLSv1.3", True)


@pytest.mark.one_backend
def test_starttls_capped_sends_nothing_after_the_handshake(capped: ServerProcess) -> None:
    assert starttls(capped) == ("TLSv1.2", False)


@pytest.mark.one_backend
def test_implicit_tls_keeps_tls13(server: ServerProcess) -> None:
    plain = socket.create_connection((server.host, server.imaps_port), timeout=BOUND)
    with server.ssl_context().wrap_socket(plain, server_hostname="localhost") as tls:
        assert read_line(tls).startswith(b"* OK ")
        assert tls.version() == "TLSv1.3"
