"""The maildir backend in a real ``twistd imapserv``: mail dropped into ``new/`` by another
program reaches an IDLE client, and kill -9 in the middle of a burst of APPENDs loses
nothing that was acknowledged and serves no half-written message."""

from __future__ import annotations

import imaplib
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapserver import User, new_user

from bench import messages
from bench.harness import BackendSpec, RawClient, ServerProcess, fetches

pytestmark = pytest.mark.timeout(120)

SPEC = BackendSpec("maildir", {"autocreate": "false"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("maildir-server"), SPEC)
    proc.start()
    yield proc
    proc.stop()


def add_user(server: ServerProcess) -> User:
    user = new_user()
    server.add_user(user.name, user.password)
    return user


def maildir(server: ServerProcess, user: User, folder: str = "") -> Path:
    return server.data_dir / "mail" / user.name / "Maildir" / folder


def read_until(conn: imaplib.IMAP4, pattern: bytes, timeout: float) -> tuple[bytes, float]:
    """Lines from the server until one matches ``pattern``; (that line, seconds waited)."""
    started = time.monotonic()
    conn.sock.settimeout(timeout)
    while True:
        line = conn.readline()
        if not line:
            raise EOFError("server closed the connection")
        if re.search(pattern, line):
            return line, time.monotonic() - started


# -- delivery by another program -----------------------------------------------------------


def test_delivery_into_new_reaches_an_idle_imaplib_client(server: ServerProcess) -> None:
    user = add_user(server)
    conn = imaplib.IMAP4(server.host, server.imap_port, timeout=10)
    try:
        conn.login(user.name, user.password)
        typ, data = conn.select("INBOX")
        assert (typ, data) == ("OK", [b"0"])
        conn.send(b"idle1 IDLE\r\n")
        read_until(conn, rb"^\+", 5)
        box = maildir(server, user)

        # An MDA that writes in tmp/ and renames into new/ (Postfix, Dovecot's LDA) ...
        temp = box / "tmp" / "1700000001.M1P1.mta"
        temp.write_bytes(messages.plain(subject="renamed in").replace(b"\r\n", b"\n"))
        os.rename(temp, box / "new" / temp.name)
        _, waited = read_until(conn, rb"^\* 1 EXISTS", 5)
        # ... and one that writes straight into new/ (announced once the file is closed).
        with open(box / "new" / "1700000002.M2P1.mta", "wb") as f:
            f.write(messages.plain(subject="written in place"))
            f.flush()
            time.sleep(0.2)  # a slow writer: nothing may be announced before close
            f.write(b"More text.\r\n")
        read_until(conn, rb"^\* 2 EXISTS", 5)

        conn.send(b"DONE\r\n")
        read_until(conn, rb"^idle1 OK", 5)
        typ, data = conn.fetch("1:2", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
        assert typ == "OK"
        parts = [item for item in data if isinstance(item, tuple)]
        assert b"renamed in" in parts[0][1] and b"written in place" in parts[2][1]
        assert parts[3][1].endswith(b"More text.\r\n")
        assert waited < 5
    finally:
        conn.shutdown()


def test_other_programs_flag_changes_and_deletions_reach_an_idle_client(
    server: ServerProcess,
) -> None:
    user = add_user(server)
    client = RawClient.connect(server.imap_port)
    client.login(user.name, user.password)
    client.append_many("INBOX", [messages.plain(subject=f"m{n}") for n in range(2)])
    assert client.command("SELECT INBOX").ok
    client.send(b"i IDLE\r\n")
    assert client.read_line().startswith(b"+")
    cur = maildir(server, user) / "cur"
    # Messages 1 and 2 by their subjects: file names do not sort in the order of the UIDs
    # (two made in one second differ by a counter or random part).
    by_subject = {
        (cur / name).read_bytes().split(b"Subject: ")[1][:2]: name for name in os.listdir(cur)
    }
    first, second = by_subject[b"m0"], by_subject[b"m1"]
    os.rename(cur / first, cur / (first + "FS"))
    line = client.read_line()
    assert line.startswith(b"* 1 FETCH (") and b"\\Flagged" in line and b"\\Seen" in line
    os.unlink(cur / second)
    assert client.read_line() == b"* 2 EXPUNGE\r\n"
    client.send(b"DONE\r\n")
    assert client.read_until_tagged("i").ok
    client.close()


# -- kill -9 ---------------------------------------------------------------------------------


class Burst:
    """Clients appending numbered messages until the server dies; what was acknowledged."""

    def __init__(self, server: ServerProcess, user: User, clients: int) -> None:
        self.server = server
        self.user = user
        self.acked: dict[bytes, int] = {}  # Message-ID -> APPENDUID
        self.sent: dict[bytes, bytes] = {}  # Message-ID -> message
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(clients)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(30)

    def _run(self, worker: int) -> None:
        try:
            client = RawClient.connect(self.server.imap_port, timeout=10)
            client.login(self.user.name, self.user.password)
            for n in range(10_000):
                ident = b"<%d.%d.%s@crash>" % (worker, n, secrets.token_hex(4).encode())
                body = ("x" * 76 + "\n") * (50 + (n * 37 % 900))  # 4 to 70 KB
                data = messages.plain(subject=f"w{worker} n{n}", body=body)
                data = data.replace(b"<plain.1@example.org>", ident)
                with self.lock:
                    self.sent[ident] = data
                response = client.command_with_literal("APPEND INBOX (\\Seen) ", data)
                if not response.ok:
                    return
                uid = int((response.code or "").split()[2])
                with self.lock:
                    self.acked[ident] = uid
        except (OSError, EOFError, AssertionError):
            return  # the server was killed


def test_kill_9_during_appends_loses_nothing_acknowledged(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", SPEC, extra_args=["--workers", "1"])  # one to kill
    server.start()
    try:
        user = add_user(server)
        burst = Burst(server, user, clients=4)
        burst.start()
        deadline = time.monotonic() + 60
        while len(burst.acked) < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.proc is not None
        server.proc.kill()  # SIGKILL, in the middle of the burst
        server.proc.wait(10)
        burst.join()
        assert len(burst.acked) >= 60

        server.start()  # the same data dir: a restart after the crash
        client = RawClient.connect(server.imap_port, timeout=30)
        client.login(user.name, user.password)
        assert client.command("SELECT INBOX").ok
        found = fetches(client.command("FETCH 1:* (UID BODY.PEEK[] RFC822.SIZE)"))
        served: dict[bytes, list[int]] = {}
        for items in found.values():
            body = items["BODY[]"]
            assert isinstance(body, bytes) and isinstance(items["UID"], int)
            assert items["RFC822.SIZE"] == len(body)
            ident = re.search(rb"Message-ID: (<[^>]+>)", body)
            assert ident is not None, body[:300]
            # No half-written message: each one served is exactly one that was sent.
            assert body == burst.sent[ident.group(1)]
            served.setdefault(ident.group(1), []).append(items["UID"])
        for ident, uid in burst.acked.items():
            assert served.get(ident) == [uid], ident  # there, once, under its APPENDUID
        assert len(served) == sum(len(uids) for uids in served.values())

        # The lock the killed server may have held does not block the restarted one.
        response = client.command_with_literal("APPEND INBOX ", messages.plain(subject="after"))
        assert response.ok, response.line
        client.close()
        leftovers = os.listdir(maildir(server, user) / "tmp")
        assert all(name.split(".")[0].isdigit() for name in leftovers)  # only unacked writes
    finally:
        server.stop()


def test_default_backend_is_maildir(tmp_path: Path) -> None:
    """``twistd imapserv`` with no --backend serves mail from DATA/mail/<user>/Maildir."""
    server = ServerProcess(tmp_path / "data", BackendSpec("maildir"))
    server.command_line = _without_backend(server.command_line)  # type: ignore[method-assign]
    server.start()
    try:
        user = add_user(server)
        client = RawClient.connect(server.imap_port)
        client.login(user.name, user.password)
        assert client.command_with_literal("APPEND INBOX ", messages.plain()).ok
        listed = client.command('LIST "" *')
        client.close()
        assert (maildir(server, user) / "cur").is_dir()
        assert len(os.listdir(maildir(server, user) / "cur")) == 1
        assert b"\\Sent" in listed.all_text()  # special-use folders made at first login
    finally:
        server.stop()


def _without_backend(command_line: object) -> object:
    def build() -> list[str]:
        assert callable(command_line)
        args: list[str] = command_line()
        at = args.index("--backend")
        return args[:at] + args[at + 2 :]

    return build
