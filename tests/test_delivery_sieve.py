"""Sieve filtering at delivery (RFC 5228, 5232, 5230, 5429) over real sockets: scripts put
with ``mailserv sieve``, messages delivered with ``smtplib.LMTP``, results read with imaplib.

Where a message lands and with which flags goes through the backend, so the RFC 5228
example runs on every delivering backend; the rest is the engine's own (one backend).
"""

from __future__ import annotations

import io
import json
import secrets
import smtplib
import sys
from collections.abc import Iterator

import pytest
from conftest import BACKENDS, _selected_backends
from imapserver import User, new_user
from lmtpserver import HANG, LmtpServer, start_lmtp_server, stop_lmtp_server, subjects

from bench.harness import HOST
from mailserv.admin.cli import main as cli
from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import hash_password
from mailserv.delivery.sievescript import (
    MessageFacts,
    Result,
    SieveRuntimeError,
    compile_script,
    run,
)

pytestmark = pytest.mark.timeout(120)

DELIVERING = [name for name in _selected_backends() if name != "proxy"]

RFC5228_EXAMPLE = b"""#
# Example Sieve Filter (RFC 5228 section 9)
require ["fileinto"];
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
"""


@pytest.fixture(scope="module", params=DELIVERING)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LmtpServer]:
    """This module's server (named ``server`` so ``one_backend`` picks the first backend)."""
    name = str(request.param)
    started = start_lmtp_server(
        tmp_path_factory.mktemp(f"sieve-{name}"), BACKENDS[name], users=0, quota_user=False
    )
    # Added here rather than by a `mailserv user add` process each: the server re-reads
    # its passwd-file when it changes.
    passwd = PasswdFile(str(started.process.data_dir / "passwd"))
    for _ in range(9):  # one per test, the reject test's second recipient too
        made = new_user()
        passwd.add_user(made.name, hash_password(made.password.encode()))
        started.users.append(made)
    yield started
    stop_lmtp_server(started)
    assert "Traceback" not in started.process.log_text()


def take_user(server: LmtpServer) -> User:
    """A user of the server no other test of this module uses (nor will: a test that mails
    a second user takes it here too, else that mail would be in a later test's INBOX, by
    the order in which pytest-xdist hands this worker its tests)."""
    taken = server.__dict__.setdefault("_taken", set())
    for candidate in server.users:
        if candidate.name not in taken:
            taken.add(candidate.name)
            return candidate
    raise AssertionError("the server has too few users")


@pytest.fixture
def user(server: LmtpServer) -> User:
    return take_user(server)


def put(server: LmtpServer, user: User, script: bytes, name: str = "main") -> None:
    """``mailserv sieve put --activate`` as an operator runs it."""
    path = server.process.data_dir / f"{name}-{secrets.token_hex(3)}.sieve"
    path.write_bytes(script)
    args = ["sieve", "put", "--data-dir", str(server.process.data_dir)]
    assert cli([*args, user.name, name, str(path), "--activate"]) == 0


def deliver(
    server: LmtpServer, recipients: list[str], data: bytes, sender: str = "sender@example.org"
) -> list[tuple[int, bytes]]:
    """One LMTP transaction: the DATA reply of each recipient (all must be accepted)."""
    with smtplib.LMTP(HOST, server.port, timeout=HANG) as client:
        client.ehlo("test.example.org")
        assert client.mail(sender)[0] == 250
        for address in recipients:
            assert client.rcpt(address)[0] == 250
        replies = [client.data(data)]
        replies += [client.getreply() for _ in recipients[1:]]
    return replies


def mail(subject: str, headers: str = "", size: int = 0) -> bytes:
    head = f"From: someone@elsewhere.example\r\nTo: me@example.com\r\n{headers}"
    return f"{head}Subject: {subject}\r\n\r\nHello.\r\n{'x' * size}".encode()


def make_folders(server: LmtpServer, user: User, *names: str) -> None:
    conn = server.imap(user)
    for name in names:
        assert conn.create(f'"{name}"')[0] == "OK"
    conn.logout()


def flags_of(server: LmtpServer, user: User, folder: str, subject: str) -> set[str]:
    conn = server.imap(user)
    assert conn.select(f'"{folder}"', readonly=True)[0] == "OK"
    typ, found = conn.search(None, "SUBJECT", f'"{subject}"')
    assert typ == "OK" and found[0], (folder, subject)
    _, data = conn.fetch(found[0].split()[0], "(FLAGS)")
    conn.logout()
    text = data[0].decode() if isinstance(data[0], bytes) else ""
    return set(text.split("FLAGS (", 1)[1].split(")", 1)[0].split())


def where(server: LmtpServer, user: User, folders: list[str]) -> dict[str, list[str]]:
    conn = server.imap(user)
    found = {}
    for folder in folders:
        typ, count = conn.select(f'"{folder}"', readonly=True)
        assert typ == "OK", folder
        found[folder] = subjects(conn, folder) if int(count[0] or 0) else []
    conn.logout()
    return found


def test_rfc5228_example_files_each_message(server: LmtpServer, user: User) -> None:
    make_folders(server, user, "filter", "spam", "personal")
    put(server, user, RFC5228_EXAMPLE)
    me = f"{user.name}@example.org"
    cc_me = "To: friend@elsewhere.example\r\nCc: me@example.com\r\n"
    cases = [
        ("list", "Sender: owner-ietf-mta-filters@imc.org\r\nTo: a@imc.org\r\n"),
        ("company", "To: me@example.com\r\n"),
        ("make lots of money fast", cc_me),
        ("not to me", "To: friend@elsewhere.example\r\n"),
        ("personal", cc_me),
    ]
    for subject, headers in cases:
        data = f"From: someone@elsewhere.example\r\n{headers}Subject: {subject}\r\n\r\nHi.\r\n"
        assert deliver(server, [me], data.encode())[0][0] == 250
    found = where(server, user, ["INBOX", "filter", "spam", "personal"])
    assert found == {
        "INBOX": ["company"],
        "filter": ["list"],
        "spam": ["make lots of money fast", "not to me"],
        "personal": ["personal"],
    }


@pytest.mark.one_backend
def test_discard_stop_size_exists_and_elsif(server: LmtpServer, user: User) -> None:
    # RFC 5228 3.3's example, then 5.5's and 5.9's.
    put(
        server,
        user,
        b"""require "fileinto";
if header :contains "from" "coyote" {
    discard;
} elsif header :contains ["subject"] ["$$$"] {
    discard;
} elsif not exists ["From", "Date"] {
    fileinto "nodate"; stop;
} elsif size :over 1K {
    fileinto "big";
}
fileinto "seen-all";
""",
    )
    make_folders(server, user, "nodate", "big", "seen-all")
    me = f"{user.name}@example.org"
    dated = "Date: Sat, 5 Dec 2026 10:00:00 +0000\r\n"
    deliver(server, [me], mail("wile", dated).replace(b"someone@", b"wile.coyote@"))
    deliver(server, [me], mail("get $$$ now", dated))
    deliver(server, [me], mail("no date"))
    deliver(server, [me], mail("large", dated, size=2000))
    deliver(server, [me], mail("small", dated))
    found = where(server, user, ["INBOX", "nodate", "big", "seen-all"])
    assert found == {
        "INBOX": [],
        "nodate": ["no date"],
        "big": ["large"],
        # discard cancels the implicit keep only: a later fileinto still files.
        "seen-all": ["wile", "get $$$ now", "large", "small"],
    }


@pytest.mark.one_backend
def test_imap4flags_and_comparators(server: LmtpServer, user: User) -> None:
    put(
        server,
        user,
        rb"""require ["fileinto", "imap4flags", "envelope",
         "comparator-i;octet"];
if header :matches :comparator "i;octet" "Subject" "Urgent?*" {
    setflag "\\Flagged";
    addflag ["$Work", "\\Seen \\Recent"];
    fileinto "work";
    removeflag "\\Seen";
    keep;
    stop;
}
if envelope :domain :is "from" "LISTS.example.net" {
    fileinto :flags "\\Seen" "lists";
}
""",
    )
    make_folders(server, user, "work", "lists")
    me = f"{user.name}@example.org"
    deliver(server, [me], mail("Urgent: call"))
    deliver(server, [me], mail("urgent: lower case is no match for i;octet"))
    deliver(server, [me], mail("news"), sender="bot@lists.example.net")
    assert flags_of(server, user, "work", "Urgent: call") == {"\\Flagged", "$Work", "\\Seen"}
    assert flags_of(server, user, "INBOX", "Urgent: call") == {"\\Flagged", "$Work"}
    assert flags_of(server, user, "lists", "news") == {"\\Seen"}
    found = where(server, user, ["INBOX", "work", "lists"])
    assert found["INBOX"] == ["Urgent: call", "urgent: lower case is no match for i;octet"]


@pytest.mark.one_backend
def test_missing_folder_goes_to_inbox_and_create_makes_it(server: LmtpServer, user: User) -> None:
    put(
        server,
        user,
        b"""require ["fileinto", "mailbox"];
if header :is "subject" "one" { fileinto "nowhere"; }
if header :is "subject" "two" { fileinto :create "made/here"; }
""",
    )
    me = f"{user.name}@example.org"
    deliver(server, [me], mail("one"))
    deliver(server, [me], mail("two"))
    assert where(server, user, ["INBOX", "made/here"]) == {
        "INBOX": ["one"],
        "made/here": ["two"],
    }
    assert "files into 'nowhere', which does not exist" in server.process.log_text()


@pytest.mark.one_backend
def test_reject_answers_550_for_that_recipient_only(server: LmtpServer, user: User) -> None:
    put(
        server,
        user,
        b"""require "reject";
if header :contains "subject" "offer" { reject text:
No offers, please.
.
; }
""",
    )
    other = take_user(server)
    replies = deliver(server, [f"{user.name}@example.org", f"{other.name}@example.org"],
                      mail("an offer"))  # fmt: skip
    assert replies[0][0] == 550 and replies[0][1].startswith(b"5.7.1 No offers, please.")
    assert replies[1][0] == 250
    assert where(server, user, ["INBOX"]) == {"INBOX": []}
    assert "an offer" in where(server, other, ["INBOX"])["INBOX"]


def _outbox(server: LmtpServer) -> list[tuple[dict[str, object], bytes]]:
    root = server.process.data_dir / "sieve" / "outbox"
    if not root.exists():
        return []
    found = []
    for envelope in sorted(root.glob("*.json")):
        message = envelope.with_suffix(".eml").read_bytes()
        found.append((json.loads(envelope.read_text()), message))
    return found


@pytest.mark.one_backend
def test_vacation_once_per_sender_and_never_to_lists(server: LmtpServer, user: User) -> None:
    put(
        server,
        user,
        b"""require "vacation";
vacation :days 3 :subject "Away" :addresses ["alias@example.org"] "Back on Monday.";
""",
    )
    me = f"{user.name}@example.org"
    before = len(_outbox(server))
    to_alias = mail("hi").replace(b"To: me@example.com", b"To: alias@example.org")
    to_me = mail("hello").replace(b"To: me@example.com", f"To: {me}".encode())
    for data, sender in [
        (to_alias, "friend@example.net"),
        (to_me, "friend@example.net"),  # the same sender within :days: no second reply
        (to_me, "other@example.net"),
        (mail("not to me"), "third@example.net"),  # not addressed to the user
        (to_me.replace(b"\r\n\r\n", b"\r\nList-Id: <l.example.net>\r\n\r\n"), "l@x.example"),
        (to_me.replace(b"\r\n\r\n", b"\r\nAuto-Submitted: auto-replied\r\n\r\n"), "a@x.ex"),
        (to_me.replace(b"\r\n\r\n", b"\r\nPrecedence: bulk\r\n\r\n"), "b@x.example"),
        (to_me, "owner-list@x.example"),
        (to_me, ""),
        (to_me, me),
    ]:
        assert deliver(server, [me], data, sender=sender)[0][0] == 250
    replies = _outbox(server)[before:]
    assert [envelope for envelope, _ in replies] == [
        {"from": "", "to": ["friend@example.net"]},
        {"from": "", "to": ["other@example.net"]},
    ]
    text = replies[0][1]
    assert b"Subject: Away\r\n" in text and b"Back on Monday." in text
    assert b"Auto-Submitted: auto-replied" in text
    assert f"From: {me}".encode() in text
    # Every message was kept: vacation does not cancel the implicit keep.
    assert len(where(server, user, ["INBOX"])["INBOX"]) == 10


@pytest.mark.one_backend
def test_broken_script_keeps_mail_in_inbox_and_logs(server: LmtpServer, user: User) -> None:
    # Bypassing the check on put: a file written into the store by hand.
    folder = server.process.data_dir / "sieve" / "users" / user.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hand.sieve").write_bytes(b'if header :is "subject" "x" { fileinto "y" }')
    assert cli(["sieve", "activate", "--data-dir", str(server.process.data_dir),
                user.name, "hand"]) == 0  # fmt: skip
    me = f"{user.name}@example.org"
    assert deliver(server, [me], mail("still here"))[0][0] == 250
    assert where(server, user, ["INBOX"])["INBOX"] == ["still here"]
    log = server.process.log_text()
    assert f"Sieve script 'hand' of {user.name} cannot run" in log
    # A redirect that got in the same way: kept, and logged (this server sends no mail).
    (folder / "hand.sieve").write_bytes(b'redirect "elsewhere@example.net";')
    assert deliver(server, [me], mail("not redirected"))[0][0] == 250
    assert where(server, user, ["INBOX"])["INBOX"] == ["still here", "not redirected"]
    assert "redirects to elsewhere@example.net, but this server sends no mail" in (
        server.process.log_text()
    )


@pytest.mark.one_backend
def test_cli_refuses_bad_scripts_with_the_reason(
    server: LmtpServer,
    user: User,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = str(server.process.data_dir)
    for script, reason in [
        (b'require "fileinto";\nif true { fileinto "x" }', "line 2"),
        (b'require "body";', "unsupported extension 'body'"),
        (b'redirect "a@example.net";', "redirect is not available"),
        (b'keep;\nrequire "fileinto";', "require must come before"),
        (b"keep;" * 20000, "script too large"),
    ]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(script)))
        assert cli(["sieve", "put", "--data-dir", data_dir, user.name, "bad"]) == 1
        assert reason in capsys.readouterr().err
    assert cli(["sieve", "list", "--data-dir", data_dir, user.name]) == 0
    assert capsys.readouterr().out == ""
    assert cli(["sieve", "get", "--data-dir", data_dir, user.name, "bad"]) == 1
    assert "No script named 'bad'" in capsys.readouterr().err


# -- the evaluator alone (pure functions: no server, no backend) ----------------------------


def _run(script: bytes, message: bytes, sender: str = "a@example.net") -> Result:
    return run(compile_script(script), MessageFacts.of(message, sender, "me@example.org"))


@pytest.mark.one_backend
@pytest.mark.parametrize(
    ("key", "text", "matches"),
    [
        ("*mo?ey*", "lots of money here", True),
        ("a*b", "acbd", False),
        ("\\\\*x", "*x", True),
        ("*", "", True),
        ("a*a", "a", False),
        ("*a*b*", "xxbxxaxx", False),
        ("a.c", "abc", False),
        ("x\\\\?", "xy", False),
        ("??", "\u00e9\u00e9", True),
    ],
)
def test_matches_wildcards(key: str, text: str, matches: bool) -> None:
    script = f'if header :matches "subject" "{key}" {{ discard; }}'.encode()
    result = _run(script, f"Subject: {text}\r\n\r\n".encode())
    assert result.discarded is matches


@pytest.mark.one_backend
def test_matches_has_no_backtracking_blowup() -> None:
    # A backtracking matcher takes minutes on this; pieces searched in order take no time.
    script = b'if header :matches "subject" "*' + b"a*" * 2000 + b'b" { discard; }'
    assert not _run(script, b"Subject: " + b"a" * 50000 + b"\r\n\r\n").discarded


@pytest.mark.one_backend
def test_runtime_errors_and_flag_lists() -> None:
    with pytest.raises(SieveRuntimeError):
        _run(b'require ["reject", "fileinto"]; fileinto "x"; reject "no";', b"\r\n")
    result = _run(
        b'require "imap4flags"; setflag ["\\\\seen bad(flag", "\\\\Recent $Ok"]; keep;', b"\r\n"
    )
    assert result.folders == {"INBOX": ("\\Seen", "$Ok")}
