"""MULTIAPPEND (RFC 3502): several messages in one APPEND, all stored or none, APPENDUID
with the UID set (RFC 4315); raw sockets, every backend (the proxy passes the batch on to
an upstream that has MULTIAPPEND, as the tests' Dovecot has)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from imapserver import Connector, uid_set

from bench import messages
from bench.harness import RawClient, Response, ServerProcess


def multiappend(client: RawClient, parts: list[bytes], mailbox: str = "INBOX") -> Response:
    """``APPEND mailbox`` then each part (``[(flags)] ["date"] `` text before a message) as
    LITERAL+ literals: ``parts`` alternate prefix, message, prefix, message ..."""
    tag = client.next_tag()
    out = b"%s APPEND %s" % (tag.encode(), mailbox.encode())
    for prefix, message in zip(parts[::2], parts[1::2], strict=True):
        out += b" " + prefix + b"{%d+}\r\n" % len(message) + message
    client.send(out + b"\r\n")
    return client.read_until_tagged(tag)


def count(client: RawClient, mailbox: str = "INBOX") -> int:
    (line,) = client.command(f"STATUS {mailbox} (MESSAGES)").data("STATUS")
    return int(line.rsplit(b" ", 1)[1].rstrip(b")"))


def test_three_messages_with_appenduid(connect: Connector, server: ServerProcess) -> None:
    client = connect.raw()
    assert client.command("CREATE Batch").ok
    bodies = [messages.plain(subject=f"m{n}") for n in range(1, 4)]
    response = multiappend(
        client,
        [
            b"(\\Seen) ",
            bodies[0],
            b'"14-Jul-2022 02:44:25 -0700" ',
            bodies[1],
            b'(\\Flagged $Work) "01-Feb-2021 10:00:00 +0000" ',
            bodies[2],
        ],
        "Batch",
    )
    assert response.ok, response.line
    code = (response.code or "").split()
    assert code[0] == "APPENDUID" and len(code) == 3, response.line
    uids = uid_set(code[2])
    assert len(uids) == 3 and uids == sorted(uids)
    assert client.command("SELECT Batch").ok
    got = client.command("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")
    text = got.all_text()
    for body in bodies:
        assert body in text
    if server.backend.name == "proxy":  # the same moment; Dovecot's Maildir keeps no zone
        dates = re.findall(rb'INTERNALDATE "([^"]+)"', text)
        moments = {datetime.strptime(d.decode().strip(), "%d-%b-%Y %H:%M:%S %z") for d in dates}
        assert datetime(2022, 7, 14, 9, 44, 25, tzinfo=UTC) in moments, dates
    else:
        assert b'"14-Jul-2022 02:44:25 -0700"' in text
    assert b"$Work" in text and b"\\Flagged" in text and b"\\Seen" in text


def test_second_too_big_adds_nothing(connect: Connector, server: ServerProcess) -> None:
    client = connect.raw()
    (limit,) = [
        int(word.split("=")[1])
        for word in client.command("CAPABILITY").data("CAPABILITY")[0].decode().split()
        if word.startswith("APPENDLIMIT=")
    ]
    small = messages.plain(subject="small")
    # the big one is announced, never sent: the framer refuses it by its header
    tag = client.next_tag()
    client.send(
        b"%s APPEND INBOX {%d+}\r\n%s {%d}\r\n" % (tag.encode(), len(small), small, limit + 1)
    )
    response = client.read_until_tagged(tag)
    assert response.status in ("NO", "BAD") and b"TOOBIG" in response.line, response.line
    assert count(client) == 0


@pytest.mark.one_backend(not_on=("proxy",))
def test_a_bad_message_anywhere_adds_nothing(connect: Connector) -> None:
    client = connect.raw()
    ok = messages.plain(subject="fine")
    cases = [
        ([b"", ok, b"(\\Recent) ", ok], b"BAD"),
        ([b"", ok, b"", b""], b"NO"),  # empty second message
        ([b"", ok, b"", b"x\x00y"], b"BAD"),  # NUL outside a literal8
        ([b"", ok, b'"bad date" ', ok], b"BAD"),
    ]
    for parts, status in cases:
        response = multiappend(client, parts)
        assert response.status == status.decode(), (parts, response.line)
    response = multiappend(client, [b"", ok, b"", ok], "Nowhere")
    assert response.status == "NO" and response.code == "TRYCREATE", response.line
    assert client.command(b"APPEND INBOX {3+}\r\nabc (\\Seen)").status == "BAD"
    assert count(client) == 0


def test_the_counts_and_unseen_uids_follow_a_batch(connect: Connector) -> None:
    """A batch of seen and unseen messages after two already there: every count, the unseen
    UIDs, the first unseen and the modseqs (above the older messages') are right."""
    connect.append([messages.plain(subject="old-seen")], flags="\\Seen")
    connect.append([messages.plain(subject="old-unseen")])
    watcher = connect.selected()
    client = connect.raw()
    seen = [b"(\\Seen) ", b"", b"(\\Seen) ", b"", b"", b"(\\Seen) "]
    parts: list[bytes] = []
    for n, prefix in enumerate(seen):
        parts += [prefix, messages.plain(subject=f"batch-{n}")]
    response = multiappend(client, parts)
    assert response.ok, response.line
    uids = uid_set((response.code or "").split()[2])
    status = client.command("STATUS INBOX (MESSAGES UNSEEN UIDNEXT)").data("STATUS")[0]
    assert b"MESSAGES 8" in status and b"UNSEEN 4" in status, status
    assert b"UIDNEXT %d" % (uids[-1] + 1) in status, status
    selected = client.command("SELECT INBOX")
    assert selected.ok and b"[UNSEEN 2]" in selected.all_text(), selected.all_text()
    unseen = client.command("UID SEARCH UNSEEN").data("SEARCH")[0].split()
    assert [int(u) for u in unseen] == [uids[0] - 1, uids[1], uids[3], uids[4]]
    lines = client.command("FETCH 1:* (MODSEQ)").data("FETCH")
    modseqs = [int(line.rsplit(b"MODSEQ (", 1)[1].split(b")")[0]) for line in lines]
    assert len(modseqs) == 8 and min(modseqs[2:]) > max(modseqs[:2]), modseqs
    assert b"* 8 EXISTS" in watcher.command("NOOP").all_text()
