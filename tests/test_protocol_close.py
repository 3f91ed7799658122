"""After BYE the server closes (issue 8, findings 3 and 5), and says BYE when it stops.

mbsync 1.4 over TLS waited for the server to close after LOGOUT while the server waited
for mbsync's close_notify.  These clients never send close_notify and never close: the
server must still close within a short bound, over plain IMAP, STARTTLS and IMAPS.
"""

from __future__ import annotations

import re
import signal
import socket
import ssl
import time

import pytest
from imapserver import Connector, ServerFactory

from bench import messages
from bench.harness import RawClient, ServerProcess, quote

TRANSPORTS = ("plain", "starttls", "imaps")

TCP_ESTABLISHED = 1
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
"""Linux ``tcpi_state`` values: CLOSE_WAIT once the peer's FIN came, CLOSE after its RST."""


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0]


def wait_state(sock: socket.socket, states: set[int], within: float) -> float:
    """Seconds until the socket's TCP state is one of ``states``; fails after ``within``."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if tcp_state(sock) in states:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"TCP state still {tcp_state(sock)} after {within} s")


class SilentClient:
    """A client over a raw socket (TLS through memory BIOs) that never sends anything the
    test does not ask for: no close_notify, no FIN."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(10)
        self.tls: ssl.SSLObject | None = None
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.buf = bytearray()
        self.eof = False

    @classmethod
    def open(cls, server: ServerProcess, transport: str) -> SilentClient:
        port = server.imaps_port if transport == "imaps" else server.imap_port
        client = cls(socket.create_connection((server.host, port), timeout=10))
        if transport == "imaps":
            client.start_tls(server.ssl_context())
        assert client.read_line().startswith(b"* OK")
        if transport == "starttls":
            client.send(b"s STARTTLS\r\n")
            assert client.read_line().startswith(b"s OK")
            client.start_tls(server.ssl_context())
        return client

    def start_tls(self, ctx: ssl.SSLContext) -> None:
        self.tls = ctx.wrap_bio(self._in, self._out, server_hostname="localhost")
        self._until_done(self.tls.do_handshake)

    def _push(self) -> None:
        data = self._out.read()
        if data:
            self.sock.sendall(data)

    def _pull(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            self._in.write_eof()
            raise EOFError
        self._in.write(chunk)

    def _until_done(self, step):  # type: ignore[no-untyped-def]
        while True:
            try:
                result = step()
            except ssl.SSLWantReadError:
                self._push()
                self._pull()
                continue
            self._push()
            return result

    def send(self, data: bytes) -> None:
        if self.tls is None:
            self.sock.sendall(data)
        else:
            self.tls.write(data)
            self._push()

    def _fill(self) -> None:
        if self.tls is None:
            chunk = self.sock.recv(65536)
        else:
            try:
                chunk = self._until_done(lambda: self.tls.read(65536))  # type: ignore[union-attr]
            except ssl.SSLZeroReturnError:
                chunk = b""  # close_notify
        if not chunk:
            self.eof = True
            raise EOFError
        self.buf += chunk

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        line = bytes(self.buf[:i])
        del self.buf[:i]
        return line

    def command(self, tag: str, text: str) -> list[bytes]:
        """The lines up to and including the tagged one."""
        self.send(f"{tag} {text}\r\n".encode())
        lines = []
        while True:
            lines.append(self.read_line())
            if lines[-1].startswith(tag.encode() + b" "):
                return lines


def login(client: SilentClient, user: str, password: str) -> None:
    assert client.command("l", f"LOGIN {quote(user)} {quote(password)}")[-1].startswith(b"l OK")


@pytest.mark.one_backend  # LOGOUT, close_notify and FIN are the engine's and the transport's
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_closes_after_logout_without_waiting_for_the_client(
    connect: Connector, server: ServerProcess, transport: str
) -> None:
    client = SilentClient.open(server, transport)
    login(client, connect.user.name, connect.user.password)
    assert client.command("s", "SELECT INBOX")[-1].startswith(b"s OK")
    lines = client.command("z", "LOGOUT")
    assert lines[0].startswith(b"* BYE") and lines[-1].startswith(b"z OK"), lines
    # The server closes at once: TLS close_notify and TCP FIN (the client did neither).
    wait_state(client.sock, {TCP_CLOSE_WAIT, TCP_CLOSE}, within=1.5)
    if transport != "plain":
        with pytest.raises(EOFError):
            client.read_line()  # close_notify, then nothing
        # A client that never answers is not waited for longer than close_timeout (2 s).
        wait_state(client.sock, {TCP_CLOSE}, within=2 + 2.5)
    client.sock.close()


def test_logout_answers_only_bye_and_ok(connect: Connector) -> None:
    """Pending updates for a selected mailbox are not sent in reply to LOGOUT."""
    connect.append([messages.plain(subject=f"m{i}", message_id=f"<l{i}@x>") for i in range(4)])
    watcher = connect.selected()
    other = connect.selected()
    assert other.command("STORE 2 +FLAGS (\\Flagged)").ok
    assert other.command("STORE 1 +FLAGS (\\Deleted)").ok
    assert other.command("EXPUNGE").ok
    assert other.command_with_literal("APPEND INBOX ", messages.plain(subject="new")).ok
    time.sleep(0.3)  # let the updates reach the watcher's session
    watcher.send(b"w LOGOUT\r\n")
    lines = watcher.wait_closed(timeout=5)
    assert len(lines) == 2, lines
    assert lines[0].upper().startswith(b"* BYE"), lines
    assert re.match(rb"^w OK\b", lines[1]), lines


@pytest.mark.one_backend  # the engine's timers and transport; one server per run, not per backend
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_autologout_closes_even_if_the_client_does_not_read(
    server_factory: ServerFactory, transport: str
) -> None:
    """BYE (autologout) while the client reads nothing and its buffers are full: the
    server cannot deliver what it wrote and drops the connection after close_timeout."""
    server = server_factory(limits={"idle_timeout": 1, "close_timeout": 0.5})
    user = server_factory.user(server)
    client = SilentClient.open(server, transport)
    login(client, user.name, user.password)
    big = messages.plain(subject="big", body="") + (b"y" * 998 + b"\r\n") * 300
    assert client.command("a", "SELECT INBOX")[-1].startswith(b"a OK")
    client.send(b"b APPEND INBOX {%d+}\r\n%s\r\n" % (len(big), big))
    while not client.read_line().startswith(b"b OK"):
        pass
    # 30 MB of responses the client will not read.
    client.send(b"".join(b"f%d FETCH 1 BODY.PEEK[]\r\n" % i for i in range(100)))
    wait_state(client.sock, {TCP_CLOSE}, within=1 + 0.5 + 4)
    client.sock.close()


def test_shutdown_says_bye_to_open_sessions(server_factory: ServerFactory) -> None:
    server = server_factory(limits={"close_timeout": 1})
    user = server_factory.user(server)
    plain = RawClient.connect(server.imap_port)
    plain.login(user.name, user.password)
    assert plain.command("SELECT INBOX").ok
    idle = RawClient.connect(
        server.imaps_port, ssl_context=server.ssl_context(), server_hostname="localhost"
    )
    idle.login(user.name, user.password)
    assert idle.command("SELECT INBOX").ok
    idle.send(b"i IDLE\r\n")
    assert idle.read_line().startswith(b"+")
    silent = SilentClient.open(server, "starttls")
    login(silent, user.name, user.password)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    for client in (plain, idle):
        lines = client.wait_closed(timeout=5)
        assert lines and lines[-1] == b"* BYE Server shutting down\r\n", lines
    assert silent.read_line() == b"* BYE Server shutting down\r\n"
    wait_state(silent.sock, {TCP_CLOSE_WAIT, TCP_CLOSE}, within=3)
    assert server.proc.wait(10) in (0, -signal.SIGTERM)  # twistd re-raises the signal


@pytest.mark.one_backend
@pytest.mark.parametrize("transport", ("starttls", "imaps"))
def test_client_close_notify_after_the_servers_is_no_error(
    connect: Connector, server: ServerProcess, transport: str
) -> None:
    """A TLS client that answers the server's close_notify with its own (OpenSSL clients
    such as fetchmail do) after the server has shut its TCP write side: the connection
    ends without an error in the server's log.  Twisted's TLS layer, reading that
    close_notify, closes the TCP transport, which (its write side already shut) ends the
    connection at once, inside the TLS layer's own read; the layer then used its TLS
    connection object after dropping it and logged an AttributeError."""
    before = server.log_path.stat().st_size
    for _ in range(3):
        client = SilentClient.open(server, transport)
        login(client, connect.user.name, connect.user.password)
        lines = client.command("z", "LOGOUT")
        assert lines[0].startswith(b"* BYE") and lines[-1].startswith(b"z OK"), lines
        wait_state(client.sock, {TCP_CLOSE_WAIT, TCP_CLOSE}, within=1.5)
        with pytest.raises(EOFError):
            client.read_line()  # the server's close_notify
        assert client.tls is not None
        client._until_done(client.tls.unwrap)  # ours, as an OpenSSL client sends it
        time.sleep(0.2)  # the server reads it (and used to log the error) at once
        client.sock.close()
    with server.log_path.open("rb") as log:
        log.seek(before)
        written = log.read().decode("utf-8", "replace")
    assert "Traceback" not in written and "Unhandled Error" not in written, written[-3000:]
