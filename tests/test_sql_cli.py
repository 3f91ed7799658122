"""``mailserv db upgrade|check`` and ``mailserv user ...`` on the SQL users table."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

import pgcluster
import pytest
from argon2 import PasswordHasher

from bench.harness import BackendSpec, RawClient, ServerProcess
from mailserv.admin import cli
from mailserv.auth.schemes import hash_password
from mailserv.backends.sql import schema

FAST = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "hash_password", lambda pw, **kw: hash_password(pw, hasher=FAST))


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """``run(*argv, stdin="...")`` → (exit status, stdout, stderr)."""

    def call(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        status = cli.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return call


Run = Callable[..., tuple[int, str, str]]


def write_config(tmp_path: Path, url: str | None, auth: str = "sql") -> Path:
    lines = ['backend = "sql"', 'data-dir = "data"', "[backend-option]", f'auth = "{auth}"']
    if url:
        lines.append(f'url = "{url}"')
    path = tmp_path / "mailserv.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_check_and_upgrade_sqlite(tmp_path: Path, run: Run) -> None:
    data = str(tmp_path / "data")
    status, _, err = run("db", "check", "--data-dir", data)
    assert status == 1 and "no database file" in err
    assert not (tmp_path / "data").exists()
    status, out, _ = run("db", "upgrade", "--data-dir", data)
    assert status == 0 and f"schema version {schema.LATEST}" in out
    status, out, _ = run("db", "check", "--data-dir", data)
    assert status == 0 and "up to date" in out
    status, out, _ = run("db", "upgrade", "--data-dir", data)
    assert status == 0 and "up to date" in out


NEXT = schema.Migration(
    schema.LATEST + 1, "a test index", ("CREATE INDEX test_mail_size ON mail (mailbox_id, size)",)
)


def test_check_reports_an_outdated_schema(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    url = pgcluster.database_url()
    status, _, err = run("db", "check", "--db", url)
    assert status == 1 and "no mailserv schema" in err
    assert run("db", "upgrade", "--db", url)[0] == 0
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, NEXT))
    monkeypatch.setattr(schema, "LATEST", NEXT.version)
    status, _, err = run("db", "check", "--db", url)
    assert status == 1 and "mailserv db upgrade" in err
    status, out, _ = run("db", "upgrade", "--db", url)
    assert status == 0 and f"applied migrations {NEXT.version}" in out
    assert run("db", "check", "--db", url)[0] == 0


def test_unreachable_and_bad_urls(run: Run) -> None:
    status, _, err = run("db", "check", "--db", "postgresql://nobody@127.0.0.1:1/x")
    assert status == 1 and "127.0.0.1" in err
    status, _, err = run("db", "check", "--db", "mysql://x/y")
    assert status == 1 and "unsupported database" in err


def test_users_in_the_database(tmp_path: Path, run: Run) -> None:
    config = str(write_config(tmp_path, None))
    status, out, _ = run(
        "user", "add", "ann", "--config", config, "--password-stdin", stdin="pw1\n"
    )
    assert status == 0 and "added" in out
    assert (tmp_path / "data" / "mail.db").exists()
    assert not (tmp_path / "data" / "passwd").exists()
    status, _, err = run("user", "add", "ann", "--config", config, "--password-stdin", stdin="x\n")
    assert status == 1 and "already exists" in err
    assert (
        run("user", "passwd", "ann", "--config", config, "--password-stdin", stdin="pw2\n")[0] == 0
    )
    assert run("user", "list", "--config", config)[1] == "ann\n"
    url = f"sqlite://{tmp_path}/data/mail.db"
    assert run("user", "list", "--db", url)[1] == "ann\n"
    assert run("user", "del", "ann", "--db", url)[0] == 0
    status, _, err = run("user", "del", "ann", "--config", config)
    assert status == 1 and "no user" in err
    status, _, err = run("user", "add", "a:b", "--db", url, "--password-stdin", stdin="x\n")
    assert status == 2


def test_passwd_file_stays_the_default(tmp_path: Path, run: Run) -> None:
    config = str(write_config(tmp_path, None, auth="passwd-file"))
    assert run("user", "add", "bo", "--config", config, "--password-stdin", stdin="p\n")[0] == 0
    assert (tmp_path / "data" / "passwd").read_text().startswith("bo:")
    assert not (tmp_path / "data" / "mail.db").exists()


def test_server_checks_logins_against_the_users_table(tmp_path: Path, run: Run) -> None:
    data = tmp_path / "data"
    url = f"sqlite://{data}/mail.db"
    assert run("user", "add", "cy", "--db", url, "--password-stdin", stdin="secret\n")[0] == 0
    server = ServerProcess(
        data, BackendSpec("sql", {"auth": "sql"}), limits={"auth_failure_delay": 0}
    )
    server.start()
    try:
        for password, accepted in (("secret", True), ("wrong", False)):
            client = RawClient.connect(server.imap_port)
            assert client.command(f'LOGIN cy "{password}"').ok is accepted
            client.close()
    finally:
        server.stop()
