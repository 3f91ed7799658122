"""``offer_scram=auto`` (the default): SCRAM-SHA-256(-PLUS) is in CAPABILITY only while every
user of the store can finish a SCRAM exchange (``mailserv.auth.scramoffer``).

Over the wire: a passwd-file server whose store changes under it (the census follows the
file), and a server on the SQL users table (its census asked when the backend starts).  The
SQL census's query and cache run against a real database (SQLite, and PostgreSQL where
``pgcluster`` has one) with a fake clock for its cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from test_auth_apppasswords import run_cli  # type: ignore[import-not-found]
from test_sql_backend import resolve, started, url  # type: ignore[import-not-found]
from twisted.internet.task import Clock

from bench.harness import BackendSpec, RawClient, ServerProcess
from mailserv.auth.apppasswords import AppPasswordFile, SqlAppPasswords
from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import hash_password
from mailserv.auth.scramoffer import SqlScramCensus
from mailserv.auth.sqlusers import SqlUsers
from mailserv.backends.sql.db import InlineDatabase
from mailserv.config import ConfigError, parse_limit

__all__ = ["url"]  # the SQL tests' database fixture, used here

HANG_BOUND = 20.0
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
SCRAM = {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"}


def argon2(password: str) -> str:
    return hash_password(password.encode(), hasher=CHEAP)


def scram(password: str) -> str:
    return hash_password(password.encode(), scheme="SCRAM-SHA-256")


def offered(server: ServerProcess) -> set[str]:
    """The AUTH= mechanisms a new plain connection sees."""
    client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    try:
        line = client.command("CAPABILITY").data("CAPABILITY")[0].decode()
    finally:
        client.close()
    return {word[5:] for word in line.split() if word.startswith("AUTH=")}


@pytest.fixture
def passwd_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", BackendSpec("memory"))
    server.start()
    yield server
    server.stop()


def test_auto_offer_follows_the_passwd_file(passwd_server: ServerProcess) -> None:
    data = passwd_server.data_dir
    users = PasswdFile(data / "passwd")
    apps = AppPasswordFile(data / "app-passwords")
    assert not offered(passwd_server) & SCRAM  # no user yet
    users.add_user("ann", argon2("ann pw"))
    assert not offered(passwd_server) & SCRAM  # argon2id cannot do SCRAM
    users.set_password("ann", scram("ann pw"))
    assert offered(passwd_server) & SCRAM == {"SCRAM-SHA-256"}  # -PLUS: TLS only
    client = RawClient.connect(passwd_server.imap_port, timeout=HANG_BOUND)
    client.login("ann", "ann pw")  # LOGIN still works with the keys
    client.close()

    record, _ = apps.add("ann", "phone", lambda canonical: argon2(canonical.decode()))
    assert not offered(passwd_server) & SCRAM  # the phone's app password cannot do SCRAM
    apps.revoke("ann", record.id)
    assert offered(passwd_server) & SCRAM

    users.add_user("bob", argon2("bob pw"))
    assert not offered(passwd_server) & SCRAM
    apps.set_imap_login("bob", "app-passwords")  # bob signs in with OAuth only
    assert offered(passwd_server) & SCRAM
    apps.set_imap_login("bob", "any")
    assert not offered(passwd_server) & SCRAM


def test_auto_offer_reads_the_sql_users_table(tmp_path: Path) -> None:
    """Users added before the start: the census, asked as the backend starts, is known to
    the first client."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    where = ("--db", f"sqlite://{data}/mail.db")
    for name in ("ann", "bob"):
        status, _, err = run_cli(
            "user", "add", name, "--scheme", "SCRAM-SHA-256", "--password-stdin", *where,
            stdin=f"{name} pw\n",
        )  # fmt: skip
        assert status == 0, err
    server = ServerProcess(data, BackendSpec("sql", {"auth": "sql"}))
    server.start()
    try:
        assert offered(server) & SCRAM == {"SCRAM-SHA-256"}
        client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
        client.login("bob", "bob pw")
        client.close()
    finally:
        server.stop()


def test_sql_census_and_its_cache(url: str, tmp_path: Path) -> None:
    backend = started(url, tmp_path, auth="sql")
    database = InlineDatabase(backend.dialect)
    users, apps = SqlUsers(database), SqlAppPasswords(database)
    clock = Clock()
    census = SqlScramCensus(backend.db.run, clock, ttl=10)

    def fresh() -> bool:
        resolve(census.refresh())
        return census.all_scram()

    try:
        assert not fresh()  # no user
        users.add_user("ann", scram("ann pw"))
        assert fresh()
        users.add_user("bob", argon2("bob pw"))
        assert census.all_scram()  # the cached answer, until the cache is older than ttl
        clock.advance(10)
        census.all_scram()  # asks again (inline database: answered at once)
        assert not census.all_scram()
        apps.set_imap_login("bob", "app-passwords")
        assert fresh()  # OAuth-only bob
        record, _ = apps.add("ann", "phone", lambda canonical: argon2(canonical.decode()))
        assert not fresh()
        apps.revoke("ann", record.id)
        assert fresh()
    finally:
        resolve(backend.stop())


def test_offer_scram_limit_takes_three_words() -> None:
    assert parse_limit("offer_scram=auto") == ("offer_scram", "auto")
    assert parse_limit("offer_scram= False") == ("offer_scram", "false")
    with pytest.raises(ConfigError, match="offer_scram must be one of auto, true, false"):
        parse_limit("offer_scram=yes")
