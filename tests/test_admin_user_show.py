"""``mailserv user show`` on both user stores: the passwd-file and the SQL users table."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailserv.admin import cli
from mailserv.auth.schemes import hash_password

FAST = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def _run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"pw\n")))
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("store", ["passwd-file", "sql"])
def test_user_show(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    store: str,
) -> None:
    monkeypatch.setattr(cli, "hash_password", lambda pw, **kw: hash_password(pw, hasher=FAST, **kw))
    where = ["--data-dir", str(tmp_path)]
    if store == "sql":
        where = ["--db", f"sqlite://{tmp_path}/mail.db"]
    assert _run(monkeypatch, capsys, "user", "add", "ann", "--password-stdin", *where)[0] == 0
    status, out, _ = _run(monkeypatch, capsys, "user", "show", "ann", *where)
    assert (status, out) == (0, "user: ann\nscheme: ARGON2ID\n")
    status, _, err = _run(monkeypatch, capsys, "user", "show", "bob", *where)
    assert (status, err) == (1, "mailserv: no user 'bob'\n")
