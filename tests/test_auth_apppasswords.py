"""App passwords (``mailserv app-password add|list|revoke``, ``mailserv user set --imap-login``)
used over IMAP against a real server, with the passwd-file store and the SQL users table.

The CLI runs in-process through ``cli.main`` (a Python start-up per call would dominate).
A failed login costs its address a throttle delay, so each failing client comes from a
loopback address of its own (127.0.5.N).
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from test_service_workers import wait_for  # type: ignore[import-not-found]
from test_workers_limits import children, serving_pid  # type: ignore[import-not-found]
from twisted.internet.task import Clock

from bench.harness import HOST, BackendSpec, RawClient, ServerProcess, quote
from mailserv.admin import cli
from mailserv.auth.apppasswords import (
    ALPHABET,
    AppPasswordFile,
    RevocationWatch,
    generate,
    split_app_password,
)
from mailserv.auth.schemes import hash_password

STORES = {
    "passwd": BackendSpec("memory"),
    "sql": BackendSpec("sql", {"auth": "sql"}),
}
LIMITS = {"auth_failure_delay": 0.01, "user_max_auth_failures": 0}
"""No per-user throttle here (tests/test_auth_throttle_user.py): its delays add up."""
BYE_BOUND = 20.0
"""Seconds a revoked session may take to get its BYE (the watch polls every second)."""
_SOURCES = itertools.count(1)
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashes made here cost little to make and to verify (the server reads the cost from
    the hash); what is tested is which hash is verified, not argon2's cost."""
    monkeypatch.setattr(
        cli, "hash_password", lambda pw, **kw: hash_password(pw, hasher=CHEAP, **kw)
    )


def run_cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = cli.sys.stdin
    cli.sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(list(argv))
    finally:
        cli.sys.stdin = saved
    return status, out.getvalue(), err.getvalue()


@dataclass
class Site:
    server: ServerProcess
    where: tuple[str, ...]
    """The CLI's options naming the store the server reads."""

    def cli(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        return run_cli(*argv, *self.where, stdin=stdin)

    def add_user(self, name: str, password: str) -> None:
        status, _, err = self.cli("user", "add", name, "--password-stdin", stdin=password + "\n")
        assert status == 0, err

    def app_password(self, user: str, label: str) -> tuple[str, str]:
        """(id, password) of a new app password."""
        status, out, err = self.cli("app-password", "add", user, "--label", label)
        assert status == 0, err
        shown = out.splitlines()[-1]
        key_id = re.match(r"app password (\w+) ", out)
        assert key_id is not None, out
        return key_id.group(1), shown

    def client(self, fresh_address: bool = False) -> RawClient:
        """A greeted client; ``fresh_address``: from a loopback address of its own."""
        source = f"127.0.5.{next(_SOURCES)}" if fresh_address else HOST
        sock = socket.create_connection(
            (HOST, self.server.imap_port), timeout=20, source_address=(source, 0)
        )
        client = RawClient(sock, 20.0)
        client.greeting = client.read_response()
        return client

    def logs_in(self, user: str, password: str) -> bool:
        client = self.client(fresh_address=True)
        try:
            return client.command(f"LOGIN {quote(user)} {quote(password)}").ok
        finally:
            client.close()


def start_site(data: Path, spec: BackendSpec, *extra: str) -> Site:
    server = ServerProcess(data, spec, limits=LIMITS, extra_args=list(extra))
    server.start()
    if spec.name == "sql":
        where: tuple[str, ...] = ("--db", f"sqlite://{data}/mail.db")
    else:
        where = ("--data-dir", str(data))
    return Site(server, where)


@pytest.fixture(scope="module", params=sorted(STORES))
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    name = str(request.param)
    started = start_site(tmp_path_factory.mktemp(f"apppass-{name}") / "data", STORES[name])
    yield started
    started.server.stop()


@pytest.fixture
def user(site: Site) -> tuple[str, str]:
    name, password = f"u{next(_SOURCES)}x{time.monotonic_ns() % 10**6}", "main pw"
    site.add_user(name, password)
    return name, password


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def last_used(site: Site, user: str, key_id: str) -> str:
    status, out, err = site.cli("app-password", "list", user)
    assert status == 0, err
    row = next(line for line in out.splitlines() if line.startswith(key_id + " "))
    return row.split()[3]  # ID, CREATED (date, time), LAST USED (date ...)


def assert_revoked(client: RawClient) -> None:
    """The server says BYE for the revocation and closes, within BYE_BOUND."""
    client.settimeout(BYE_BOUND)
    lines = []
    with contextlib.suppress(EOFError):
        while True:
            lines.append(client.read_line())
    assert any(b"* BYE App password revoked" in line for line in lines), lines


def test_generated_passwords_and_the_forms_accepted() -> None:
    key_id, shown = generate()
    groups = shown.split("-")
    assert [len(g) for g in groups] == [4] * 5 and groups[0] == key_id
    assert set(shown.replace("-", "")) <= set(ALPHABET)
    canonical = shown.replace("-", "").encode()
    for typed in (shown, shown.upper(), shown.replace("-", " "), shown.replace("-", "")):
        assert split_app_password(typed.encode()) == (key_id, canonical)
    for other in ("main pw", shown[:-1], shown + "x", shown.replace(shown[5], "0"), "é" * 20):
        assert split_app_password(other.encode()) is None


class Held:
    """A session as RevocationWatch sees it: whether it ended, and the BYE it was given."""

    def __init__(self) -> None:
        self.ended = False
        self.byes: list[str] = []

    def shutdown(self, text: str) -> None:
        self.byes.append(text)
        self.ended = True


def test_revocation_watch_says_bye_to_the_sessions_of_a_revoked_password(
    tmp_path: Path,
) -> None:
    """RevocationWatch itself, on a fake clock over a real app-passwords file: only the
    sessions of the revoked password get BYE, and the poll stops once none is held."""
    apps = AppPasswordFile(tmp_path / "app-passwords")
    phone, _ = apps.add("ann", "phone", lambda canonical: hash_password(canonical, hasher=CHEAP))
    laptop, _ = apps.add("ann", "laptop", lambda canonical: hash_password(canonical, hasher=CHEAP))
    clock = Clock()
    watch = RevocationWatch(apps, clock, interval=1.0)
    on_phone, also_on_phone, on_laptop = Held(), Held(), Held()
    watch.hold(("ann", phone.id), on_phone)
    watch.hold(("ann", phone.id), also_on_phone)
    watch.hold(("ann", laptop.id), on_laptop)
    clock.advance(1.0)
    assert len(watch) == 3 and not (on_phone.byes or on_laptop.byes)
    apps.revoke("ann", "phone")
    clock.advance(0.5)
    assert not on_phone.byes  # not before the next look
    clock.advance(0.5)
    assert on_phone.byes == also_on_phone.byes == ["App password revoked"]
    assert not on_laptop.byes and len(watch) == 1
    on_laptop.ended = True  # the session logged out
    clock.advance(1.0)
    assert len(watch) == 0 and not clock.getDelayedCalls()  # nothing left to watch
    apps.revoke("ann", "laptop")
    clock.advance(5.0)
    assert not on_laptop.byes


def test_app_password_signs_in_and_list_shows_last_use(site: Site, user: tuple[str, str]) -> None:
    name, main = user
    key_id, shown = site.app_password(name, "phone")
    assert last_used(site, name, key_id) == "never"
    client = site.client()
    reply = client.command(f"LOGIN {quote(name)} {quote(shown)}")
    assert reply.ok, reply.line
    client.close()
    client = site.client()  # AUTHENTICATE PLAIN, typed in capitals without dashes
    typed = shown.replace("-", "").upper()
    assert client.command(f"AUTHENTICATE PLAIN {plain(name, typed)}").ok
    client.close()
    assert site.logs_in(name, main)  # the main password still works
    wrong = key_id + "-" + "2222-3333-4444-5555"
    assert not site.logs_in(name, wrong)  # a right id with a wrong secret
    wait_for(lambda: last_used(site, name, key_id) != "never", timeout=20)
    assert last_used(site, name, key_id) == time.strftime("%Y-%m-%d", time.gmtime())


def test_revoke_ends_the_sessions_using_it(site: Site, user: tuple[str, str]) -> None:
    name, main = user
    key_id, shown = site.app_password(name, "laptop")
    _other_id, other = site.app_password(name, "tablet")
    quiet = site.client()
    assert quiet.command(f"LOGIN {quote(name)} {quote(shown)}").ok
    assert quiet.command("SELECT INBOX").ok
    idling = site.client()
    assert idling.command(f"LOGIN {quote(name)} {quote(shown)}").ok
    idling.send(b"i IDLE\r\n")
    assert idling.read_response().startswith(b"+ ")
    kept = [site.client(), site.client()]
    assert kept[0].command(f"LOGIN {quote(name)} {quote(main)}").ok
    assert kept[1].command(f"LOGIN {quote(name)} {quote(other)}").ok

    status, out, err = site.cli("app-password", "revoke", name, "laptop")
    assert status == 0 and f"app password {key_id} (laptop) of {name} revoked" in out, err
    for client in (quiet, idling):
        assert_revoked(client)
    for client in kept:
        assert client.command("NOOP").ok
        client.close()
    assert not site.logs_in(name, shown)
    assert site.logs_in(name, other)


def test_app_only_user_gets_the_wrong_password_answer(site: Site, user: tuple[str, str]) -> None:
    name, main = user
    _key_id, shown = site.app_password(name, "mail app")
    status, out, err = site.cli("user", "set", name, "--imap-login", "app-passwords")
    assert status == 0 and "app-passwords" in out, err
    tries = {
        "wrong": f"LOGIN {quote(name)} {quote('not it')}",
        "main": f"LOGIN {quote(name)} {quote(main)}",
        "plain": f"AUTHENTICATE PLAIN {plain(name, main)}",
    }
    clients = {what: site.client(fresh_address=True) for what in tries}
    for what, command in tries.items():  # sent together: their throttle delays overlap
        clients[what].send(f"{what} {command}\r\n")
    answers = {what: clients[what].read_response().split(b" ", 1) for what in tries}
    for client in clients.values():
        client.close()
    assert answers["wrong"][1] == b"NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    assert answers["main"][1] == answers["plain"][1] == answers["wrong"][1]
    assert f"Main password of {name!r} refused" in site.server.log_text()
    assert site.logs_in(name, shown)
    assert site.cli("user", "set", name, "--imap-login", "any")[0] == 0
    assert site.logs_in(name, main)


def test_cli_refuses_bad_input(tmp_path: Path) -> None:
    where = ("--data-dir", str(tmp_path / "data"))
    assert run_cli("user", "add", "ann", *where, "--password-stdin", stdin="pw\n")[0] == 0
    cases = [
        (("app-password", "add", "nobody", "--label", "x"), 1, "no user 'nobody'"),
        (("app-password", "add", "ann", "--label", ""), 1, "label must be 1 to 64"),
        (("app-password", "add", "ann", "--label", "a\tb"), 1, "control character"),
        (("app-password", "add", "ann", "--label", "x" * 65), 1, "label must be 1 to 64"),
        (("app-password", "add", "ann"), 2, "--label"),
        (("app-password", "revoke", "ann", "nope"), 1, "no app password 'nope'"),
        (("app-password", "list", "bad\nname"), 2, "invalid user name"),
        (("user", "set", "ann", "--imap-login", "sometimes"), 2, "invalid choice"),
        (("user", "set", "nobody", "--imap-login", "any"), 1, "no user 'nobody'"),
    ]
    for argv, wanted_status, wanted_text in cases:
        status, _, err = run_cli(*argv, *where)
        assert (status, wanted_text in err) == (wanted_status, True), (argv, status, err)
    assert run_cli("app-password", "add", "ann", "--label", "twin", *where)[0] == 0
    assert run_cli("app-password", "add", "ann", "--label", "twin", *where)[0] == 0
    status, _, err = run_cli("app-password", "revoke", "ann", "twin", *where)
    assert status == 1 and "2 app passwords are labelled 'twin'" in err
    run_cli("user", "del", "ann", *where)  # its app passwords go with it
    assert "ann" not in (tmp_path / "data" / "app-passwords").read_text()


def test_revoke_reaches_every_worker(tmp_path: Path) -> None:
    """``--workers 2``: each worker watches the store itself."""
    site = start_site(
        tmp_path / "data", BackendSpec("maildir", {"autocreate": "false"}), "--workers", "2"
    )
    try:
        site.add_user("wu", "main pw")
        _key_id, shown = site.app_password("wu", "phone")
        pids = children(site.server.pid)
        sessions: list[RawClient] = []
        deadline = time.monotonic() + 60  # a busy machine may starve a worker a while
        while time.monotonic() < deadline:
            client = site.client()
            assert client.command(f"LOGIN wu {quote(shown)}").ok
            sessions.append(client)
            if len({serving_pid(c, pids) for c in sessions}) == 2:
                break
        assert len({serving_pid(c, pids) for c in sessions}) == 2
        assert site.cli("app-password", "revoke", "wu", "phone")[0] == 0
        for client in sessions:
            assert_revoked(client)
    finally:
        site.server.stop()
