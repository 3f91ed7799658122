"""A real Dovecot (Debian's dovecot-imapd) and mailserv serving the same Maildir at once.

A private Dovecot is started with its own configuration on a free loopback port and
``mail_location = maildir:<the root mailserv uses>``.  Messages, flags, keywords, folders
and expunges made through either server are seen through the other with the same UIDs and
UIDVALIDITY.  Dovecot never gives mail access to root, so when the tests run as root its
mail processes run as the ``dovecot`` user and the Maildir root is shared with that group
(mode 2770): mailserv then creates its files group-readable, as Dovecot would.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from imapserver import User, new_user

from bench import messages
from bench.harness import BackendSpec, RawClient, ServerProcess, free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

pytestmark = [
    pytest.mark.skipif(
        not (os.access(DOVECOT, os.X_OK) and os.path.exists("/usr/lib/dovecot/imap")),
        reason="dovecot-imapd is not installed",
    ),
    pytest.mark.timeout(120),
]

CONFIG = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = mailserv-interop-{tag}
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{dir}/mail/%u/Maildir
mailbox_idle_check_interval = 1 secs
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/dovecot-passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  {chroot}
}}
service anvil {{
  {chroot}
}}
"""


@dataclass
class Dovecot:
    dir: Path
    port: int
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        try:
            return (self.dir / "dovecot.log").read_text("utf-8", "replace")
        except OSError:
            return ""

    def connect(self, user: User) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(user.name, user.password)
        return conn


def mail_account() -> tuple[pwd.struct_passwd, grp.struct_group]:
    """Who Dovecot's mail processes run as: ``dovecot`` for a root test run, else us."""
    user = pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return user, grp.getgrgid(user.pw_gid)


def start_dovecot(directory: Path, user: User) -> Dovecot:
    mail_user, mail_group = mail_account()
    root_run = os.geteuid() == 0
    for name in ("run", "state", f"home/{user.name}"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    os.chown(directory / "home" / user.name, mail_user.pw_uid, mail_user.pw_gid)
    (directory / "dovecot-passwd").write_text(f"{user.name}:{{PLAIN}}{user.password}\n")
    (directory / "dovecot-passwd").chmod(0o644)
    last = ""
    for _attempt in range(3):
        port = free_port()
        config = directory / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                dir=directory,
                tag=secrets.token_hex(4),
                internal_user=mail_user.pw_name,
                internal_group=mail_group.gr_name,
                login_user="dovenull" if root_run else mail_user.pw_name,
                uid=mail_user.pw_uid,
                gid=mail_user.pw_gid,
                port=port,
                chroot="" if root_run else "chroot =",
            )
        )
        proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        dovecot = Dovecot(directory, port, proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return dovecot
            except OSError:
                time.sleep(0.05)
        last = dovecot.log()
        stop_dovecot(dovecot)
        if "in use" not in last:
            break
    raise RuntimeError(f"dovecot did not start:\n{last}")


def stop_dovecot(dovecot: Dovecot) -> None:
    if dovecot.proc.poll() is None:
        dovecot.proc.send_signal(signal.SIGTERM)
        try:
            dovecot.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(dovecot.proc.pid, signal.SIGKILL)
            dovecot.proc.wait(10)


@dataclass
class Pair:
    """The two servers over one Maildir, and a user known to both."""

    user: User
    dovecot: Dovecot
    mailserv: ServerProcess
    maildir: Path

    def mailserv_client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.mailserv.host, self.mailserv.imap_port, timeout=10)
        conn.login(self.user.name, self.user.password)
        return conn


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    # Somewhere Dovecot's unprivileged mail user can reach (pytest's tmp_path is private).
    shared = Path(tempfile.mkdtemp(prefix="mailserv-dovecot-"))
    shared.chmod(0o755)
    user = new_user()
    user = User(user.name, user.password.replace(":", "_"))
    maildir = shared / "mail" / user.name / "Maildir"
    maildir.mkdir(parents=True)
    for path in (shared / "mail", shared / "mail" / user.name):
        path.chmod(0o755)
    _, mail_group = mail_account()
    os.chown(maildir, -1, mail_group.gr_gid)
    maildir.chmod(0o2770)
    dovecot = start_dovecot(shared, user)
    options = {"root": f"{shared}/mail/%u/Maildir", "autocreate": "false"}
    mailserv = ServerProcess(tmp_path / "mailserv", BackendSpec("maildir", options))
    try:
        mailserv.start()
        mailserv.add_user(user.name, user.password)
        yield Pair(user, dovecot, mailserv, maildir)
    finally:
        mailserv.stop()
        stop_dovecot(dovecot)
        if os.environ.get("MAILSERV_KEEP_DOVECOT"):
            print(f"kept {shared}")
        else:
            shutil.rmtree(shared, ignore_errors=True)


def state(
    conn: imaplib.IMAP4, mailbox: str = "INBOX"
) -> tuple[int, dict[int, tuple[frozenset[bytes], int, bytes]]]:
    """(UIDVALIDITY, {UID: (flags without \\Recent, RFC822.SIZE, BODY[])}) of a mailbox."""
    typ, _ = conn.select(mailbox)
    assert typ == "OK", mailbox
    validity = int(conn.untagged_responses["UIDVALIDITY"][-1])
    typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    found = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        uid = int(re.search(rb"UID (\d+)", head).group(1))  # type: ignore[union-attr]
        size = int(re.search(rb"RFC822\.SIZE (\d+)", head).group(1))  # type: ignore[union-attr]
        flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1).split()  # type: ignore[union-attr]
        found[uid] = (frozenset(flags) - {b"\\Recent"}, size, body)
    return validity, found


def appenduid(response: tuple[str, list[object]]) -> int:
    typ, data = response
    assert typ == "OK", data
    match = re.search(rb"APPENDUID \d+ (\d+)", data[-1])  # type: ignore[arg-type]
    assert match is not None, data
    return int(match.group(1))


def test_mail_written_by_mailserv_is_read_by_dovecot(pair: Pair) -> None:
    ours = pair.mailserv_client()
    first = appenduid(ours.append("INBOX", r"(\Seen $Label1)", None, messages.plain(subject="one")))
    second = appenduid(ours.append("INBOX", r"(\Flagged)", None, messages.with_attachment()))
    assert ours.create("Work/2024")[0] == "OK"
    third = appenduid(ours.append("Work/2024", r"(\Draft)", None, messages.plain(subject="w")))
    assert ours.subscribe("Work/2024")[0] == "OK"
    expected = state(ours)
    expected_work = state(ours, "Work/2024")
    ours.logout()

    theirs = pair.dovecot.connect(pair.user)
    try:
        assert state(theirs) == expected
        assert sorted(expected[1]) == [first, second]
        assert expected[1][first][0] == {b"\\Seen", b"$Label1"}
        assert state(theirs, "Work/2024") == expected_work
        assert list(expected_work[1]) == [third]
        typ, listed = theirs.lsub('""', "*")
        assert typ == "OK" and any(b"Work/2024" in line for line in listed if line)
    finally:
        theirs.logout()


def test_mail_written_by_dovecot_is_read_by_mailserv(pair: Pair) -> None:
    ours = pair.mailserv_client()
    ours.select("INBOX")  # mailserv has the mailbox open (and watched) meanwhile
    theirs = pair.dovecot.connect(pair.user)
    try:
        first = appenduid(theirs.append("INBOX", r"(\Answered $Other)", None, messages.plain()))
        second = appenduid(theirs.append("INBOX", None, None, messages.with_attachment()))
        assert theirs.create("Dove/Sub")[0] == "OK"
        theirs.select("INBOX")
        assert theirs.uid("STORE", str(second), "+FLAGS", r"(\Flagged)")[0] == "OK"
        expected = state(theirs)
    finally:
        theirs.logout()
    assert sorted(expected[1]) == [first, second]
    assert state(ours) == expected
    assert expected[1][first][0] == {b"\\Answered", b"$Other"}
    typ, listed = ours.list('""', "*")
    assert typ == "OK" and any(line and line.endswith(b'"/" Dove/Sub') for line in listed)
    ours.logout()


def test_changes_travel_both_ways_while_both_are_open(pair: Pair) -> None:
    ours = pair.mailserv_client()
    uids = [
        appenduid(ours.append("INBOX", None, None, messages.plain(subject=f"m{n}")))
        for n in range(3)
    ]
    theirs = pair.dovecot.connect(pair.user)
    try:
        # Dovecot changes flags and expunges one; mailserv sees it.
        theirs.select("INBOX")
        theirs.uid("STORE", str(uids[0]), "+FLAGS", r"(\Seen Junk)")
        theirs.uid("STORE", str(uids[1]), "+FLAGS", r"(\Deleted)")
        assert theirs.expunge()[0] == "OK"
        validity, seen = state(ours)
        assert sorted(seen) == [uids[0], uids[2]]
        assert seen[uids[0]][0] == {b"\\Seen", b"Junk"}

        # mailserv does the same; Dovecot sees it, and a new message from each side has
        # the next UID on the other.
        ours.uid("STORE", str(uids[2]), "+FLAGS", r"(\Answered)")
        ours.uid("STORE", str(uids[0]), "+FLAGS", r"(\Deleted)")
        assert ours.expunge()[0] == "OK"
        mine = appenduid(ours.append("INBOX", None, None, messages.plain(subject="mine")))
        theirs_uid = appenduid(theirs.append("INBOX", None, None, messages.plain(subject="d")))
        assert theirs_uid == mine + 1
        their_validity, their_view = state(theirs)
        _, our_view = state(ours)
        assert their_validity == validity
        assert their_view == our_view
        assert sorted(our_view) == [uids[2], mine, theirs_uid]
        assert our_view[uids[2]][0] == {b"\\Answered"}
    finally:
        theirs.logout()
        ours.logout()


def test_dovecot_delivery_reaches_a_mailserv_idle_client(pair: Pair) -> None:
    client = RawClient.connect(pair.mailserv.imap_port)
    client.login(pair.user.name, pair.user.password)
    assert client.command("SELECT INBOX").ok
    client.send(b"i IDLE\r\n")
    assert client.read_line().startswith(b"+")
    theirs = pair.dovecot.connect(pair.user)
    try:
        uid = appenduid(theirs.append("INBOX", None, None, messages.plain(subject="via dovecot")))
        assert client.read_line() == b"* 1 EXISTS\r\n"
        client.send(b"DONE\r\n")
        while not client.read_line().startswith(b"i OK"):
            pass
        response = client.command("UID FETCH 1:* (UID)")
        assert b"UID %d" % uid in response.all_text()
    finally:
        theirs.logout()
        client.close()
