"""Fixture helpers of the delivery tests: a server with an LMTP listener (TCP and a unix
socket), users made in advance, and an IMAP client waiting in IDLE."""

from __future__ import annotations

import imaplib
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imapserver import User, new_user

from bench.harness import HOST, BackendSpec, ServerProcess, free_port

MAX_MESSAGE = 200_000
"""The APPENDLIMIT of the LMTP test servers (``--limit max_literal``): oversized is cheap."""
HANG = 30.0
"""Seconds a test waits for what should come at once before it fails (a hang bound)."""


@dataclass
class LmtpServer:
    """A running server with ``--lmtp`` on ``port`` (TCP) and ``socket_path`` (unix)."""

    process: ServerProcess
    config: Path
    """Its TOML configuration (the APPENDLIMIT and the quota user's limit)."""
    port: int
    socket_path: str
    users: list[User]
    quota_user: User
    """A user whose quota is one message (made unless ``quota_user=False``)."""

    def imap(self, user: User) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(HOST, self.process.imap_port, timeout=HANG)
        conn.login(user.name, user.password)
        return conn


def start_lmtp_server(
    data_dir: Path,
    backend: BackendSpec,
    users: int = 2,
    workers: int = 1,
    quota_user: bool = True,
) -> LmtpServer:
    """A server of ``backend`` with LMTP on a free TCP port and a unix socket, ``users``
    users plus one whose quota is one message."""
    data_dir.mkdir(parents=True, exist_ok=True)
    full = new_user()
    config = data_dir / "server.toml"
    # In the file, not on the command line, so ``mailserv deliver --config`` reads them too.
    config.write_text(
        f'[limits]\nmax_literal = {MAX_MESSAGE}\n[quota.users."{full.name}"]\nmessages = 1\n'
    )
    port = free_port()
    sock_dir = tempfile.mkdtemp(prefix="lmtp")  # short: a unix socket path has 108 bytes
    socket_path = str(Path(sock_dir) / "lmtp.sock")
    args = ["--workers", str(workers), "--config", str(config)]
    args += ["--lmtp", f"tcp:{port}:interface={HOST}", "--lmtp", f"unix:{socket_path}"]
    process = ServerProcess(data_dir, backend, extra_args=args)
    try:
        process.start()
        _wait_port(process, port)
        made = [new_user() for _ in range(users)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            everyone = [*made, full] if quota_user else made
            list(pool.map(lambda u: process.add_user(u.name, u.password), everyone))
    except Exception:
        process.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)
        raise
    return LmtpServer(process, config, port, socket_path, made, full)


def stop_lmtp_server(server: LmtpServer) -> None:
    server.process.stop()
    shutil.rmtree(Path(server.socket_path).parent, ignore_errors=True)


def _wait_port(process: ServerProcess, port: int) -> None:
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"LMTP port {port} never opened:\n{process.log_text()[-3000:]}")


def message(subject: str, body: bytes = b"Hello.\r\n") -> bytes:
    return b"From: sender@example.org\r\nTo: you@example.org\r\nSubject: %s\r\n\r\n%s" % (
        subject.encode(),
        body,
    )


def subjects(conn: imaplib.IMAP4, mailbox: str = "INBOX") -> list[str]:
    """The Subject of every message of ``mailbox``."""
    typ, _ = conn.select(f'"{mailbox}"', readonly=True)
    assert typ == "OK", mailbox
    typ, data = conn.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    if typ != "OK" or data == [None]:
        return []
    out = []
    for item in data:
        if isinstance(item, tuple):
            out.append(item[1].decode().split(":", 1)[1].strip())
    return out


class Idler:
    """An imaplib client of ``user`` in IDLE on INBOX."""

    def __init__(self, server: LmtpServer, user: User) -> None:
        self.conn = server.imap(user)
        typ, data = self.conn.select("INBOX")
        assert typ == "OK"
        self.exists = int(data[0] or 0)
        self.conn.send(b"i1 IDLE\r\n")
        line = self.conn.readline()
        assert line.startswith(b"+"), line

    def wait_exists(self, count: int) -> None:
        """Read untagged responses until ``* count EXISTS`` (the socket timeout bounds it)."""
        while True:
            line = self.conn.readline()
            assert line, "connection closed in IDLE"
            parts = line.split()
            if len(parts) >= 3 and parts[2].upper() == b"EXISTS" and int(parts[1]) >= count:
                return

    def close(self) -> None:
        try:
            self.conn.send(b"DONE\r\n")
            self.conn.shutdown()
        except OSError:
            pass


def seen_by_idle(server: LmtpServer, user: User, deliver: Callable[[str], None]) -> imaplib.IMAP4:
    """``deliver(subject)`` while ``user`` waits in IDLE: the IDLE client hears of the new
    message, and a new client (returned, INBOX selected) finds its subject there."""
    subject = "m-" + secrets.token_hex(4)
    idler = Idler(server, user)
    try:
        deliver(subject)
        idler.wait_exists(idler.exists + 1)
    finally:
        idler.close()
    conn = server.imap(user)
    assert subject in subjects(conn)
    return conn


class RawLmtp:
    """A plain socket to an LMTP listener (TCP port or unix socket path), greeting read."""

    def __init__(self, where: int | str) -> None:
        if isinstance(where, int):
            self.sock = socket.create_connection((HOST, where), timeout=HANG)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(HANG)
            self.sock.connect(where)
        self._buffer = b""
        greeting = self.replies(1)
        assert greeting[0].startswith(b"220 "), greeting

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def replies(self, count: int) -> list[bytes]:
        """The next ``count`` complete replies (a multi-line reply is one, lines joined)."""
        replies: list[bytes] = []
        current: list[bytes] = []
        while len(replies) < count:
            while b"\r\n" not in self._buffer:
                chunk = self.sock.recv(65536)
                assert chunk, f"connection closed after {replies + current}"
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\r\n", 1)
            current.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                replies.append(b"\n".join(current))
                current = []
        return replies

    def codes(self, count: int) -> list[int]:
        return [int(reply[:3]) for reply in self.replies(count)]

    def close(self) -> None:
        self.sock.close()
