"""passwd-file: parsing, reload on change, atomic locked edits, concurrent writers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mailserv
from mailserv.auth.passwd import (
    MAX_USERNAME_BYTES,
    InvalidField,
    InvalidUsername,
    PasswdEntry,
    PasswdFile,
    UserExists,
    UserNotFound,
    check_username,
    parse_line,
)

ALICE = (
    "alice:{PLAIN}wonderland:1000:1000:Alice Liddell:/home/alice:/bin/sh"
    ":userdb_quota_rule=*:storage=1G nopassword"
)
SAMPLE = textwrap.dedent(
    """\
    # mail users
    ALICE

       # indented comment
    bob:{SHA512-CRYPT}$6$salt$hash
    carol:{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA::::::
    dave
    :{PLAIN}nameless
    alice:{PLAIN}duplicate
    """
).replace("ALICE", ALICE)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "passwd"
    path.write_text(SAMPLE)
    return path


def test_parse_all_fields_and_extra(sample: Path) -> None:
    passwd = PasswdFile(sample)
    alice = passwd.lookup("alice")
    assert alice == PasswdEntry(
        "alice",
        "{PLAIN}wonderland",
        "1000",
        "1000",
        "Alice Liddell",
        "/home/alice",
        "/bin/sh",
        "userdb_quota_rule=*:storage=1G nopassword",
    )
    assert alice.extra_fields == {"userdb_quota_rule": "*:storage=1G", "nopassword": ""}


def test_short_lines_comments_blank_duplicates(sample: Path) -> None:
    passwd = PasswdFile(sample)
    assert passwd.users() == ["alice", "bob", "carol", "dave"]
    bob = passwd.lookup("bob")
    assert bob is not None and bob.password == "{SHA512-CRYPT}$6$salt$hash"
    assert bob.home == "" and bob.extra == ""
    dave = passwd.lookup("dave")
    assert dave is not None and dave.password == ""
    carol = passwd.lookup("carol")
    assert carol is not None and carol.password.startswith("{ARGON2ID}$argon2id$")
    assert passwd.lookup("nobody") is None
    assert passwd.lookup("# mail users") is None
    assert passwd.lookup("") is None
    assert passwd.lookup("a:b\n\x00") is None


def test_parse_line() -> None:
    assert parse_line("# x") is None
    assert parse_line("   ") is None
    assert parse_line("u:p\r\n") == PasswdEntry("u", "p")
    with pytest.raises(ValueError, match="empty user"):
        parse_line(":p")
    entry = PasswdEntry("u", "{PLAIN}p", home="/h", extra="a=1 b")
    assert parse_line(entry.to_line()) == entry
    assert entry.to_line() == "u:{PLAIN}p::::/h::a=1 b"
    assert PasswdEntry("u", "h").to_line() == "u:h:::::"


def test_missing_file_means_no_users(tmp_path: Path) -> None:
    passwd = PasswdFile(tmp_path / "absent")
    assert passwd.users() == []
    assert passwd.lookup("alice") is None


def test_invalid_utf8_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_bytes(b"bad\xff:{PLAIN}x\ngood:{PLAIN}y\n")
    assert PasswdFile(path).users() == ["good"]


def test_reload_when_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("alice:{PLAIN}one\n")
    passwd = PasswdFile(path)
    assert passwd.lookup("bob") is None
    other = PasswdFile(path)  # e.g. the CLI in another process
    other.add_user("bob", "{PLAIN}two")
    assert passwd.lookup("bob") is not None
    other.set_password("alice", "{PLAIN}three")
    alice = passwd.lookup("alice")
    assert alice is not None and alice.password == "{PLAIN}three"
    # An in-place edit by hand (same inode) is seen too.
    with open(path, "a") as f:
        f.write("carol:{PLAIN}x\n")
    assert "carol" in passwd.users()
    os.unlink(path)
    assert passwd.lookup("alice") is None


def test_no_reread_when_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "passwd"
    path.write_text("alice:{PLAIN}one\n")
    passwd = PasswdFile(path)
    assert passwd.lookup("alice") is not None
    reads = []
    original = PasswdFile._parse

    def counting(self: PasswdFile, data: bytes) -> dict[str, PasswdEntry]:
        reads.append(1)
        return original(self, data)

    monkeypatch.setattr(PasswdFile, "_parse", counting)
    for _ in range(5):
        passwd.lookup("alice")
    assert reads == []


def test_edits_keep_other_lines_and_comments(sample: Path) -> None:
    passwd = PasswdFile(sample)
    passwd.add_user("erin", "{PLAIN}e", home="/home/erin", extra="quota=1G")
    passwd.set_password("bob", "{PLAIN}newbob")
    passwd.remove_user("dave")
    lines = sample.read_text().splitlines()
    expected = SAMPLE.splitlines()
    expected[4] = "bob:{PLAIN}newbob"
    expected.remove("dave")
    expected.append("erin:{PLAIN}e::::/home/erin::quota=1G")
    assert lines == expected
    assert stat.S_IMODE(sample.stat().st_mode) == 0o600


def test_set_password_keeps_other_fields(sample: Path) -> None:
    passwd = PasswdFile(sample)
    passwd.set_password("alice", "{PLAIN}new")
    alice = passwd.lookup("alice")
    assert alice is not None
    assert alice.password == "{PLAIN}new"
    assert alice.home == "/home/alice"
    assert alice.extra == "userdb_quota_rule=*:storage=1G nopassword"
    assert "alice:{PLAIN}duplicate" not in sample.read_text()


def test_add_to_file_without_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("# only a comment")
    passwd = PasswdFile(path)
    passwd.add_user("x", "{PLAIN}y")
    assert path.read_text() == "# only a comment\nx:{PLAIN}y:::::\n"


def test_creates_file_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    PasswdFile(path).add_user("x", "{PLAIN}y")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_edit_errors(sample: Path) -> None:
    passwd = PasswdFile(sample)
    before = sample.read_bytes()
    with pytest.raises(UserExists):
        passwd.add_user("alice", "{PLAIN}x")
    with pytest.raises(UserNotFound):
        passwd.set_password("zoe", "{PLAIN}x")
    with pytest.raises(UserNotFound):
        passwd.remove_user("zoe")
    with pytest.raises(InvalidField):
        passwd.add_user("zoe", "{PLAIN}a:b")
    with pytest.raises(InvalidField):
        passwd.add_user("zoe", "")
    with pytest.raises(InvalidField):
        passwd.add_user("zoe", "{PLAIN}x", home="/a\n/b")
    with pytest.raises(InvalidField):
        passwd.set_password("alice", "{PLAIN}x\nmallory:{PLAIN}y")
    assert sample.read_bytes() == before


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a:b",
        "a\nb",
        "a\rb",
        "a\x00b",
        "x" * (MAX_USERNAME_BYTES + 1),
        "é" * 128,
        " a",
        "#a",
        "\ud800",
    ],
)
def test_bad_usernames(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidUsername):
        check_username(name)
    with pytest.raises(InvalidUsername):
        PasswdFile(tmp_path / "passwd").add_user(name, "{PLAIN}x")


@pytest.mark.parametrize("name", ["a", "x" * MAX_USERNAME_BYTES, "user@example.org", "Jürgen"])
def test_good_usernames(name: str, tmp_path: Path) -> None:
    check_username(name)
    passwd = PasswdFile(tmp_path / "passwd")
    passwd.add_user(name, "{PLAIN}x")
    assert passwd.users() == [name]


WRITER = """
import sys
from mailserv.auth.passwd import PasswdFile
passwd = PasswdFile(sys.argv[1])
for i in range(int(sys.argv[3])):
    passwd.add_user(f"{sys.argv[2]}{i}", "{PLAIN}x")
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("# shared\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(mailserv.__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    count = 60
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), prefix, str(count)], env=env)
        for prefix in ("a", "b", "c")
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    users = PasswdFile(path).users()
    assert len(users) == 3 * count
    assert set(users) == {f"{p}{i}" for p in "abc" for i in range(count)}
    assert path.read_text().startswith("# shared\n")
