"""The ``mailserv user ...`` command, in-process through main() and as ``python -m mailserv``."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher

import mailserv
from mailserv.admin import cli
from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import hash_password, verify_password

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mailserv.__file__)))
FAST = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


class FakeStdin(io.TextIOWrapper):
    def __init__(self, data: bytes, tty: bool = False) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "hash_password", lambda pw, **kw: hash_password(pw, hasher=FAST, **kw))


def run(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: bytes = b"", tty: bool = False
) -> int:
    monkeypatch.setattr(sys, "stdin", FakeStdin(stdin, tty))
    return cli.main(argv)


def check(path: Path, user: str, password: bytes) -> bool:
    entry = PasswdFile(path).lookup(user)
    return entry is not None and verify_password(entry.password, password)


def test_add_list_passwd_del(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    base = ["--data-dir", str(data), "user"]
    assert run(monkeypatch, [*base, "add", "alice", "--password-stdin"], b"s3cret\n") == 0
    assert run(monkeypatch, [*base, "add", "bob", "--password-stdin"], b"pw with spaces\r\n") == 0
    passwd = data / "passwd"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert check(passwd, "alice", b"s3cret")
    assert check(passwd, "bob", b"pw with spaces")
    assert passwd.read_text().startswith("alice:{ARGON2ID}$argon2id$")
    capsys.readouterr()

    assert run(monkeypatch, [*base, "list"]) == 0
    assert capsys.readouterr().out == "alice\nbob\n"

    assert run(monkeypatch, [*base, "passwd", "alice", "--password-stdin"], b"n\xc3\xa9w") == 0
    assert check(passwd, "alice", "néw".encode())
    assert not check(passwd, "alice", b"s3cret")

    assert run(monkeypatch, [*base, "del", "bob"]) == 0
    capsys.readouterr()
    assert run(monkeypatch, [*base, "list"]) == 0
    assert capsys.readouterr().out == "alice\n"


def test_options_after_the_subcommand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "etc" / "users"
    argv = ["user", "add", "carol", "--password-stdin", "--passwd-file", str(pw)]
    assert run(monkeypatch, argv, b"x\n") == 0
    assert check(pw, "carol", b"x")


def test_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--data-dir", str(tmp_path), "user"]
    assert run(monkeypatch, [*base, "add", "alice", "--password-stdin"], b"a\n") == 0
    capsys.readouterr()
    cases: list[tuple[list[str], bytes, int, str]] = [
        (["add", "alice", "--password-stdin"], b"b\n", 1, "already exists"),
        (["passwd", "zoe", "--password-stdin"], b"b\n", 1, "no user 'zoe'"),
        (["del", "zoe"], b"", 1, "no user 'zoe'"),
        (["add", "a:b", "--password-stdin"], b"b\n", 2, "invalid user name"),
        (["add", "", "--password-stdin"], b"b\n", 2, "invalid user name"),
        (["add", "x" * 256, "--password-stdin"], b"b\n", 2, "longer than 255"),
        (["add", "dan", "--password-stdin"], b"\n", 1, "password is empty"),
        (["add", "dan", "--password-stdin"], b"", 1, "password is empty"),
        (["add", "dan", "--password-stdin"], b"p" * 5000, 1, "password too long"),
        (["add", "dan"], b"", 1, "use --password-stdin"),
    ]
    for args, stdin, status, message in cases:
        assert run(monkeypatch, [*base, *args], stdin) == status, args
        assert message in capsys.readouterr().err, args
    assert PasswdFile(tmp_path / "passwd").users() == ["alice"]


def test_missing_passwd_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--data-dir", str(tmp_path / "none"), "user"]
    assert run(monkeypatch, [*base, "list"]) == 0
    assert capsys.readouterr().out == ""
    assert run(monkeypatch, [*base, "del", "x"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_usage_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(monkeypatch, []) == 2
    assert run(monkeypatch, ["user"]) == 2
    assert run(monkeypatch, ["user", "frobnicate"]) == 2
    assert run(monkeypatch, ["user", "add"]) == 2
    assert "usage:" in capsys.readouterr().err
    assert run(monkeypatch, ["--help"]) == 0
    assert "user" in capsys.readouterr().out


def test_interactive_prompt_asks_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["typed", "typed", "one", "two"])
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(cli.getpass, "getpass", fake_getpass)
    base = ["--data-dir", str(tmp_path), "user"]
    assert run(monkeypatch, [*base, "add", "eve"], tty=True) == 0
    assert prompts == ["Password: ", "Password (again): "]
    assert check(tmp_path / "passwd", "eve", b"typed")
    assert run(monkeypatch, [*base, "passwd", "eve"], tty=True) == 1  # mismatch
    assert check(tmp_path / "passwd", "eve", b"typed")


def test_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "conf" / "mailserv.toml"
    config.parent.mkdir()
    config.write_text('data-dir = "../var"\n')
    argv = ["--config", str(config), "user", "add", "fay", "--password-stdin"]
    assert run(monkeypatch, argv, b"pw\n") == 0
    assert check(tmp_path / "var" / "passwd", "fay", b"pw")  # relative to the config file

    config.write_text('data-dir = "../var"\npasswd-file = "/nonexistent-dir/x"\n')
    other = tmp_path / "explicit"
    argv = ["--config", str(config), "--passwd-file", str(other), "user", "list"]
    assert run(monkeypatch, argv) == 0  # the command line wins; no such file is fine


def test_bad_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("data-dir = [\n")
    assert run(monkeypatch, ["--config", str(config), "user", "list"]) == 1
    assert "TOML" in capsys.readouterr().err
    assert run(monkeypatch, ["--config", str(tmp_path / "absent.toml"), "user", "list"]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_default_data_dir_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(monkeypatch, ["user", "add", "gus", "--password-stdin"], b"pw\n") == 0
    assert check(tmp_path / "imapserv-data" / "passwd", "gus", b"pw")


def python_m(args: list[str], cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-m", "mailserv", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_python_m_mailserv(tmp_path: Path) -> None:
    """What only a real process shows: ``__main__`` runs main() on sys.argv and exits with its
    status (0, 1), the password comes from a real pipe, the hash has the production cost (the
    other tests use a cheap one), output reaches the real stdout and stderr.  Each run starts
    the interpreter and imports the server (seconds on a loaded machine), so passwd and del,
    the same main() as add, are left to the in-process tests above."""
    done = python_m(["user", "add", "alice", "--password-stdin"], tmp_path, b"wonder\n")
    assert done.returncode == 0, done.stderr
    passwd = tmp_path / "imapserv-data" / "passwd"
    assert check(passwd, "alice", b"wonder")
    entry = PasswdFile(passwd).lookup("alice")
    assert entry is not None and "m=65536,t=3,p=4" in entry.password  # production cost

    done = python_m(["user", "list"], tmp_path)
    assert (done.returncode, done.stdout) == (0, b"alice\n")

    done = python_m(["user", "add", "bob"], tmp_path)  # stdin is no terminal
    assert done.returncode == 1
    assert b"--password-stdin" in done.stderr
    assert PasswdFile(passwd).users() == ["alice"]
