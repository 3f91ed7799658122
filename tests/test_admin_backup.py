"""``mailserv backup`` / ``mailserv restore`` run as an operator runs them (processes next to a
running server): backup, 1% changed, incremental backup, the user's mail deleted, restore,
compared over IMAP; one folder restored; dry run; a deleted user brought back with password,
app password, quota, ACLs and record of replies sent (passwd-file users on maildir, the SQL
users table on SQLite), and a dry run into a new install; a backup while a client appends;
bad input.
"""

from __future__ import annotations

import hashlib
import imaplib
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import _selected_backends
from imapserver import User, new_user
from test_auth_apppasswords import CHEAP, run_cli  # type: ignore[import-not-found]

from bench.harness import REPO, BackendSpec, ServerProcess
from mailserv.admin import cli
from mailserv.auth.schemes import hash_password
from mailserv.delivery.sieve import sent_log

pytestmark = pytest.mark.timeout(180)

SPECS = {
    "maildir": BackendSpec("maildir", {"autocreate": "false", "fsync": "false"}),
    "sql-sqlite": BackendSpec("sql", {"auth": "sql"}),  # users in the database too
}
CHOSEN = [name for name in SPECS if name in _selected_backends()]
MESSAGES = 100
KEYWORDS = ("", "\\Seen", "\\Seen \\Answered $Forwarded", "\\Flagged Work", "\\Draft")
DATE = '"{:02d}-Mar-2021 05:06:07 +0200"'
SUMMARY = re.compile(
    r"backup: (\d+) users, (\d+) mailboxes \((\d+) copied in full\), (\d+) messages copied "
    r"\(\d+ octets\), (\d+) flag updates, (\d+) removed, (\d+) messages in the backup, "
    r"\d+ sieve scripts, (\d+) accounts copied, (\d+) records of replies sent copied"
)


def _cheap_hash(password: bytes, **options: str) -> str:
    return hash_password(password, hasher=CHEAP, **options)


class Setup:
    def __init__(self, server: ServerProcess, spec: BackendSpec) -> None:
        self.server = server
        self.spec = spec
        self.users = ["--data-dir", str(server.data_dir)]
        """Where the user commands find the users (those of the server)."""
        if spec.options.get("auth") == "sql":
            self.users += ["--db", f"sqlite://{server.data_dir}/mail.db"]
        self.where = [*self.users, "--backend", spec.name]
        for key, value in spec.options.items():
            self.where += ["--backend-option", f"{key}={value}"]

    def cli(
        self, *args: str, check: bool = True, where: list[str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``mailserv ARGS`` on the server's store (or ``where``'s)."""
        done = subprocess.run(
            [sys.executable, "-m", "mailserv", *args, *(self.where if where is None else where)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            timeout=120,
        )
        assert "Traceback" not in done.stderr, done.stderr
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def admin(self, *args: str, stdin: str = "") -> str:
        """A user-store command in this process (no backend: no reactor), cheap hashes."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cli, "hash_password", _cheap_hash)
            status, out, err = run_cli(*args, *self.users, stdin=stdin)
        assert status == 0, err
        return out

    def user(self) -> User:
        user = new_user()
        self.admin("user", "add", user.name, "--password-stdin", stdin=user.password + "\n")
        return user

    def imap(self, user: User) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.server.host, self.server.imap_port)
        conn.login(user.name, user.password)
        return conn


@pytest.fixture(scope="module", params=CHOSEN)
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    spec = SPECS[str(request.param)]
    limits = {"auth_failure_delay": 0.01, "user_max_auth_failures": 0}  # logins refused
    server = ServerProcess(tmp_path_factory.mktemp(f"backup-{request.param}"), spec, limits)
    server.start()
    yield Setup(server, spec)
    server.stop()


def message(n: int) -> bytes:
    return (
        f"From: sender{n}@example.org\r\nTo: u@example.org\r\nSubject: message {n}\r\n"
        f"Message-ID: <m{n}@example.org>\r\n\r\nbody {n}\r\n" + "line\r\n" * (n % 7)
    ).encode()


def fill(conn: imaplib.IMAP4, count: int) -> None:
    """``count`` messages, 4 in 5 in INBOX, the rest in Work (subscribed) and Archive."""
    conn.create("Work")
    conn.subscribe("Work")
    typ, _ = conn._simple_command("CREATE", "Archive", "(USE (\\Archive))")  # type: ignore[attr-defined]
    assert typ == "OK"
    for n in range(count):
        folder = "INBOX" if n % 5 else ("Work" if n % 10 else "Archive")
        flags = f"({KEYWORDS[n % len(KEYWORDS)]})"
        typ, _ = conn.append(folder, flags, DATE.format(1 + n % 28), message(n))
        assert typ == "OK"
    # Two identical messages in one folder: both must come back.
    conn.append("Work", "()", DATE.format(1), message(1))


def snapshot(conn: imaplib.IMAP4) -> dict[str, object]:
    """Every folder's messages (bytes, flags, internal date), folders and subscriptions."""
    state: dict[str, object] = {}
    _, listed = conn.list()
    names = sorted(re.sub(rb'^\(.*?\) "/" ', b"", line).decode().strip('"') for line in listed)  # type: ignore[union-attr]
    state["folders"] = names
    _, subs = conn.lsub()
    state["subscribed"] = sorted(line for line in subs if line)  # type: ignore[type-var]
    for name in names:
        _, exists = conn.select(name, readonly=True)
        items = []
        if exists == [b"0"]:
            state[name] = items
            continue
        _, data = conn.fetch("1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
        for part in data:
            if isinstance(part, tuple):
                head = part[0].decode()
                flags = sorted(re.search(r"FLAGS \((.*?)\)", head).group(1).split())  # type: ignore[union-attr]
                date = re.search(r'INTERNALDATE "(.*?)"', head).group(1)  # type: ignore[union-attr]
                items.append((part[1], " ".join(f for f in flags if f != "\\Recent"), date))
        state[name] = sorted(items)
    return state


def counts(done: subprocess.CompletedProcess[str]) -> tuple[int, ...]:
    found = SUMMARY.search(done.stdout)
    assert found, done.stdout
    return tuple(int(value) for value in found.groups())


def wipe(conn: imaplib.IMAP4) -> None:
    for name in ("Archive", "Work"):
        conn.unsubscribe(name)
        assert conn.delete(name)[0] == "OK"
    conn.select("INBOX")
    conn.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
    conn.expunge()
    conn.close()


def test_backup_incremental_restore(setup: Setup, tmp_path: Path) -> None:
    user = setup.user()
    conn = setup.imap(user)
    fill(conn, MESSAGES)
    dest = str(tmp_path / "backup")
    total = MESSAGES + 1
    assert counts(setup.cli("backup", "--user", user.name, dest)) == (
        (1, 3, 3, total, 0, 0, total, 1, 0)
    )

    # 1% changed: one message flagged, one new, one expunged.
    conn.select("INBOX")
    conn.store("2", "+FLAGS", "(\\Flagged)")
    conn.append("INBOX", "(\\Seen)", DATE.format(9), message(1000))
    conn.store("3", "+FLAGS", "(\\Deleted)")
    conn.expunge()
    conn.close()
    assert counts(setup.cli("backup", "--user", user.name, dest)) == (1, 3, 0, 1, 1, 1, total, 0, 0)
    assert counts(setup.cli("backup", "--user", user.name, dest))[3:6] == (0, 0, 0)

    before = snapshot(conn)
    wipe(conn)
    wiped = snapshot(conn)
    dry = setup.cli("restore", "--user", user.name, "--dry-run", dest)
    assert "would append 80 messages to INBOX" in dry.stdout
    assert "would append 11 messages to Work" in dry.stdout
    assert "would create folder Work" in dry.stdout
    assert "would restore 2 folders, 1 subscriptions, 101 messages" in dry.stdout
    assert snapshot(conn) == wiped

    setup.cli("restore", "--user", user.name, dest)
    assert snapshot(conn) == before
    again = setup.cli("restore", "--user", user.name, dest)
    assert "restored 0 folders, 0 subscriptions, 0 messages" in again.stdout
    assert "101 messages already there" in again.stdout
    assert snapshot(conn) == before

    # One folder: Work comes back, INBOX's loss stays.
    conn.delete("Work")
    conn.select("INBOX")
    conn.store("1", "+FLAGS.SILENT", "(\\Deleted)")
    conn.expunge()
    conn.close()
    restored = setup.cli("restore", "--user", user.name, "--folder", "Work", dest)
    assert "restored 1 folders, 0 subscriptions, 11 messages" in restored.stdout
    after = snapshot(conn)
    assert after["Work"] == before["Work"]
    assert len(after["INBOX"]) == len(before["INBOX"]) - 1  # type: ignore[arg-type]
    conn.logout()


def _acl(conn: imaplib.IMAP4, name: str) -> list[bytes]:
    typ, data = conn.getacl(name)
    assert typ == "OK", data
    return sorted(data[0].split()[1:])  # type: ignore[union-attr]


def _quota(conn: imaplib.IMAP4) -> bytes:
    typ, data = conn.getquotaroot("INBOX")
    assert typ == "OK", data
    return data[1][0]  # type: ignore[index,return-value]


def _refused(setup: Setup, user: User) -> bool:
    try:
        setup.imap(user).logout()
    except imaplib.IMAP4.error:
        return True
    return False


def test_deleted_user_restored(setup: Setup, tmp_path: Path) -> None:
    """``mailserv user del``, then ``restore --user``: the same password, app password,
    quota, ACLs, mail and replies sent (only that user's); an existing user's password is
    replaced only when asked.  A dry run into a new install (no passwd-file yet) lists
    what it would add."""
    user, friend = setup.user(), setup.user()
    setup.admin("user", "set", user.name, "--quota-storage", "5M", "--quota-messages", "40")
    app = setup.admin("app-password", "add", user.name, "--label", "phone").splitlines()[-1]
    conn = setup.imap(user)
    conn.create("Team")
    for n in range(6):
        folder = "Team" if n % 2 else "INBOX"
        conn.append(folder, f"({KEYWORDS[n % 5]})", DATE.format(n + 1), message(n))
    assert conn.setacl("Team", friend.name, "lrsw")[0] == "OK"
    assert conn.setacl("INBOX", "anyone", "lr")[0] == "OK"
    before, acls, quota = snapshot(conn), [_acl(conn, n) for n in ("INBOX", "Team")], _quota(conn)
    assert b"STORAGE" in quota and b"MESSAGE" in quota and b" 40)" in quota, quota
    sent = sent_log(str(setup.server.data_dir))
    assert sent.vacation_due(user.name, "boss@example.org", 7)  # a vacation reply went
    sent.record("redirect", friend.name, "<r1@example.org>")  # another user's
    dest = str(tmp_path / "backup")
    assert counts(setup.cli("backup", "--user", user.name, dest))[7:] == (1, 1)
    assert counts(setup.cli("backup", "--user", user.name, dest))[7:] == (0, 0)  # unchanged

    # The loss: an ACL entry and a folder gone, INBOX emptied, then the user deleted.
    assert conn.deleteacl("INBOX", "anyone")[0] == "OK"
    assert conn.delete("Team")[0] == "OK"
    conn.select("INBOX")
    conn.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
    conn.expunge()
    conn.logout()
    setup.admin("user", "del", user.name)
    os.unlink(sent.path)

    dry = setup.cli("restore", "--user", user.name, "--dry-run", dest).stdout
    assert f"{user.name}: would add user {user.name}\n" in dry
    assert f"would put back app password {app[:4]} (phone) of {user.name}\n" in dry
    assert "would set the ACL of INBOX: anyone lr\n" in dry
    assert f"would set the ACL of Team: {friend.name} lrsw\n" in dry
    assert f"{user.name}: would put back 1 records of replies sent\n" in dry
    assert "1 accounts, 1 app passwords, 2 ACL entries, 1 records of replies sent" in dry
    assert not os.path.exists(sent.path)
    if setup.spec.name == "maildir":  # into a new install: nothing there yet
        new = tmp_path / "new"
        new.mkdir()
        where = ["--data-dir", str(new), "--backend", "maildir"]
        fresh = setup.cli("restore", "--user", user.name, "--dry-run", dest, where=where).stdout
        assert f"{user.name}: would add user {user.name}\n" in fresh
        assert "would restore 1 folders, 0 subscriptions, 6 messages" in fresh, fresh
        assert "1 accounts, 1 app passwords, 2 ACL entries, 1 records of replies sent" in fresh
        assert not (new / "passwd").exists() and not (new / "sieve").exists()

    setup.cli("restore", "--user", user.name, dest)
    conn = setup.imap(user)  # the same password
    assert snapshot(conn) == before
    assert [_acl(conn, n) for n in ("INBOX", "Team")] == acls
    assert _quota(conn) == quota
    conn.logout()
    setup.imap(User(user.name, app)).logout()  # the same app password
    assert not sent.vacation_due(user.name, "boss@example.org", 7)  # already answered
    assert not sent.recent("redirect", friend.name, "<r1@example.org>", 86400.0)

    # An existing user keeps the password set since, unless the restore is told to replace.
    changed = User(user.name, "changed " + user.password)
    setup.admin("user", "passwd", user.name, "--password-stdin", stdin=changed.password + "\n")
    kept = setup.cli("restore", "--user", user.name, dest).stdout
    assert "0 accounts, 0 app passwords, 0 ACL entries" in kept
    assert _refused(setup, user)
    replaced = setup.cli("restore", "--user", user.name, "--accounts", "replace", dest).stdout
    assert "1 accounts, 0 app passwords" in replaced
    setup.imap(user).logout()


def test_backup_while_appending(setup: Setup, tmp_path: Path) -> None:
    if setup.spec.name != "maildir":
        pytest.skip("maildir only")
    user = setup.user()
    conn = setup.imap(user)
    stop = threading.Event()

    def append() -> int:
        writer = setup.imap(user)
        n = 0
        while not stop.is_set() and n < 5000:
            writer.append("INBOX", "()", None, message(n) + b"x" * 20000)
            n += 1
        writer.logout()
        return n

    dest = tmp_path / "backup"
    with ThreadPoolExecutor(1) as pool:
        appending = pool.submit(append)
        setup.cli("backup", "--user", user.name, str(dest))
        stop.set()
        appended = appending.result()
    db = sqlite3.connect(dest / "manifest.sqlite")
    rows = db.execute("SELECT box, uid, sha256, size FROM messages").fetchall()
    assert rows
    for box, uid, sha, size in rows:
        (validity,) = os.listdir(dest / "mail" / user.name / box)
        data = (dest / "mail" / user.name / box / validity / str(uid)).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha
    done = counts(setup.cli("backup", "--user", user.name, str(dest)))
    assert done[6] == appended
    conn.logout()


def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any backend starts: run in this process."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "passwd").write_text("")
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = {
        "memory": (["backup", str(tmp_path / "b"), "--backend", "memory"], "memory backend", 1),
        "no such user": (["backup", "--user", "nobody", str(tmp_path / "b")], "no user", 1),
        "not a backup": (["restore", str(tmp_path)], "holds no backup", 1),
        "not a directory": (["restore", str(afile)], "is not a directory", 1),
        "folder without user": (["restore", "--folder", "W", str(tmp_path)], "needs --user", 2),
        "dest is a file": (["backup", str(afile)], "cannot use", 1),
        "no DEST": (["backup"], "required: DEST", 2),
        "accounts mode": (["restore", "--accounts", "all", str(tmp_path)], "invalid choice", 2),
    }
    for name, (args, text, status) in cases.items():
        assert cli.main([*args, "--data-dir", str(data)]) == status, name
        err = capsys.readouterr().err
        assert text in err, (name, err)
        assert "Traceback" not in err, name
