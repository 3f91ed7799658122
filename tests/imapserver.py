"""Fixture helpers for the protocol tests: users, and clients of every kind for one user.

The server subprocess, raw client and response parsing live in ``bench.harness`` (the
benchmark uses them too); this module adds what only the tests need.
"""

from __future__ import annotations

import secrets
import ssl
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from imaplib import IMAP4, IMAP4_SSL
from pathlib import Path

from argon2 import PasswordHasher
from imapclient import IMAPClient

from bench.harness import BackendSpec, RawClient, Response, ServerProcess, quote
from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import hash_password


@dataclass(frozen=True)
class User:
    name: str
    password: str


def new_user() -> User:
    """A unique user name and a password with characters that need quoting."""
    return User("t" + secrets.token_hex(6), "pw " + secrets.token_urlsafe(9) + '"\\x')


CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
"""Argon2id parameters of the pool's users: the production ones (64 MiB, 3 passes, 4 lanes)
cost a hash per user and a verification per LOGIN of every test, which is not what those
tests are about (tests/test_admin_cli.py and test_auth_schemes.py check the production cost)."""


def add_cheap_user(data_dir: Path, name: str, password: str) -> None:
    """``name`` in the data dir's passwd-file as ``mailserv user add`` puts it (same file,
    same lock, same entry format), with a cheap Argon2id hash and no interpreter start-up; a
    running server picks the user up as it does after the command."""
    path = data_dir / "passwd"
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(0o600)
    PasswdFile(path).add_user(name, hash_password(password.encode(), hasher=CHEAP))


class UserPool:
    """Creates users a few ahead of need, in background threads, so the per-test ``user``
    fixture does not wait for them."""

    def __init__(self, server: ServerProcess, ahead: int = 3) -> None:
        self.server = server
        self.ahead = ahead
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="useradd")
        self._pending: deque[Future[User]] = deque()
        self._lock = threading.Lock()

    def _create(self) -> User:
        user = new_user()
        add_cheap_user(self.server.data_dir, user.name, user.password)
        return user

    def get(self) -> User:
        with self._lock:
            while len(self._pending) < self.ahead + 1:
                self._pending.append(self._executor.submit(self._create))
            future = self._pending.popleft()
            self._pending.append(self._executor.submit(self._create))
        return future.result(timeout=120)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class Connector:
    """Opens clients to ``server`` as ``user`` and closes them all at the end of a test."""

    def __init__(self, server: ServerProcess, user: User) -> None:
        self.server = server
        self.user = user
        self._raw: list[RawClient] = []
        self._imaplib: list[IMAP4] = []
        self._imapclient: list[IMAPClient] = []
        self._kept: dict[str, RawClient] = {}

    # -- raw sockets ---------------------------------------------------------------------

    def raw(self, login: bool = True, timeout: float = 10.0) -> RawClient:
        client = RawClient.connect(self.server.imap_port, timeout=timeout)
        self._raw.append(client)
        if login:
            client.login(self.user.name, self.user.password)
        return client

    def raw_tls(self, server_hostname: str = "localhost", login: bool = True) -> RawClient:
        """Implicit TLS on the imaps port, trusting only the server's certificate."""
        client = RawClient.connect(
            self.server.imaps_port,
            ssl_context=self.server.ssl_context(),
            server_hostname=server_hostname,
        )
        self._raw.append(client)
        if login:
            client.login(self.user.name, self.user.password)
        return client

    def selected(self, mailbox: str = "INBOX") -> RawClient:
        """A logged-in raw client with ``mailbox`` selected."""
        client = self.raw()
        response = client.command(f'SELECT "{mailbox}"')
        assert response.ok, response.line
        return client

    def kept(self, mailbox: str = "INBOX", fill: Sequence[bytes] = ()) -> RawClient:
        """The same selected client on every call (for hypothesis examples of one test);
        the first call appends ``fill`` to ``mailbox``."""
        if mailbox not in self._kept:
            if fill:
                self.append(fill, mailbox)
            self._kept[mailbox] = self.selected(mailbox)
        return self._kept[mailbox]

    # -- imaplib -------------------------------------------------------------------------

    def imaplib(self, login: bool = True) -> IMAP4:
        conn = IMAP4(self.server.host, self.server.imap_port, timeout=10)
        self._imaplib.append(conn)
        if login:
            conn.login(self.user.name, self.user.password)
        return conn

    def imaplib_ssl(self, host: str = "localhost", login: bool = True) -> IMAP4:
        conn = IMAP4_SSL(
            host, self.server.imaps_port, ssl_context=self.server.ssl_context(), timeout=10
        )
        self._imaplib.append(conn)
        if login:
            conn.login(self.user.name, self.user.password)
        return conn

    # -- imapclient ----------------------------------------------------------------------

    def imapclient(self, login: bool = True) -> IMAPClient:
        conn = IMAPClient(self.server.host, self.server.imap_port, ssl=False, timeout=10)
        self._imapclient.append(conn)
        if login:
            conn.login(self.user.name, self.user.password)
        return conn

    def imapclient_ssl(self, host: str = "localhost") -> IMAPClient:
        ctx = self.server.ssl_context()
        conn = IMAPClient(host, self.server.imaps_port, ssl=True, ssl_context=ctx, timeout=10)
        self._imapclient.append(conn)
        conn.login(self.user.name, self.user.password)
        return conn

    # -- data ----------------------------------------------------------------------------

    def append(
        self, messages: Sequence[bytes], mailbox: str = "INBOX", flags: str = ""
    ) -> list[int]:
        """APPEND (pipelined, LITERAL+) through a throwaway connection; the new UIDs."""
        client = RawClient.connect(self.server.imap_port)
        try:
            client.login(self.user.name, self.user.password)
            responses = client.append_many(mailbox, messages, flags)
            client.command("LOGOUT")
        finally:
            client.close()
        return [appenduid(r)[1] for r in responses]

    def append_in_batches(
        self, messages: Sequence[bytes], mailbox: str = "INBOX", per_command: int = 500
    ) -> list[int]:
        """Like :meth:`append`, in MULTIAPPEND commands of ``per_command`` messages where the
        server offers it (one transaction each on the SQL backends: thousands of messages for
        a test about something else take seconds, not a minute); the new UIDs."""
        client = RawClient.connect(self.server.imap_port)
        try:
            client.login(self.user.name, self.user.password)
            if b"MULTIAPPEND" not in client.command("CAPABILITY").data("CAPABILITY")[0].upper():
                return self.append(messages, mailbox)
            uids: list[int] = []
            for start in range(0, len(messages), per_command):
                tag = client.next_tag()
                out = [f"{tag} APPEND {quote(mailbox)}".encode()]
                for message in messages[start : start + per_command]:
                    out.append(b" {%d+}\r\n%s" % (len(message), message))
                client.send(b"".join(out) + b"\r\n")
                response = client.read_until_tagged(tag)
                assert response.ok and response.code, response.line
                uids += uid_set(response.code.split()[2])
            client.command("LOGOUT")
        finally:
            client.close()
        return uids

    def close(self) -> None:
        for raw in self._raw:
            raw.close()
        for conn in self._imaplib:
            try:
                conn.shutdown()
            except (OSError, IMAP4.error, ssl.SSLError):
                pass
        for client in self._imapclient:
            try:
                client.shutdown()
            except (OSError, IMAP4.error, ssl.SSLError):
                pass


def appenduid(response: Response) -> tuple[int, int]:
    """(UIDVALIDITY, UID) from ``OK [APPENDUID v u]``."""
    assert response.ok, response.line
    code = response.code or ""
    parts = code.split()
    assert len(parts) == 3 and parts[0].upper() == "APPENDUID", response.line
    return int(parts[1]), int(parts[2])


def uid_set(text: str) -> list[int]:
    """Expand a UID set such as ``3:5,9`` (as in COPYUID): items in the order given, each
    range ascending."""
    out: list[int] = []
    for item in text.split(","):
        if ":" in item:
            a, b = sorted(int(x) for x in item.split(":"))
            out += list(range(a, b + 1))
        else:
            out.append(int(item))
    return out


class ServerFactory:
    """Starts extra servers (e.g. with small limits) for one test and stops them after."""

    def __init__(
        self, tmp_path: Path, backend: BackendSpec, cls: type[ServerProcess] = ServerProcess
    ) -> None:
        self.tmp_path = tmp_path
        self.backend = backend
        self.cls = cls
        self.servers: list[ServerProcess] = []

    def __call__(
        self, limits: Mapping[str, object] | None = None, extra_args: Sequence[str] = ()
    ) -> ServerProcess:
        data_dir = self.tmp_path / f"limited-{len(self.servers)}"
        proc = self.cls(data_dir, self.backend, limits=limits, extra_args=extra_args)
        self.servers.append(proc)
        try:
            proc.start()
        except Exception:
            proc.stop()
            raise
        return proc

    def user(self, server: ServerProcess) -> User:
        user = new_user()
        add_cheap_user(server.data_dir, user.name, user.password)
        return user

    def stop(self) -> None:
        for proc in self.servers:
            proc.stop()


def ok(client: RawClient, command: str) -> Response:
    """Run ``command``; it must answer OK."""
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


def all_bad(client: RawClient, commands: Sequence[str]) -> None:
    """Each of ``commands`` answers BAD, and the session goes on (NOOP answers OK)."""
    for command in commands:
        response = client.command(command)
        assert response.status == "BAD", (command, response.line)
    ok(client, "NOOP")


def code_value(response: Response, name: str) -> int:
    """The number of the one response code ``name`` (untagged or tagged), e.g.
    ``HIGHESTMODSEQ``."""
    found = [c for c in response.codes() if c.upper().startswith(name + " ")]
    assert len(found) == 1, (name, response.untagged, response.line)
    return int(found[0].split()[1])
