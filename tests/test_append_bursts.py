"""Pipelined APPENDs to one mailbox run together (one sync of the store for the burst, as
one MULTIAPPEND), each still answered on its own, in order, with its own APPENDUID.

Importers and synchronisers (mbsync, offlineimap, imapsync) upload mail this way.  A
command of the burst that fails on its own (bad syntax, \\Recent, no such mailbox, over
quota: that one is in ``test_quota``) gets its own answer and the others are stored.
"""

from __future__ import annotations

import re

from imapserver import Connector

from bench import messages
from bench.harness import RawClient, Response, ServerProcess

_APPENDUID = re.compile(r"APPENDUID (\d+) (\d+)$")
UNDECODABLE = "!#$&'+,-.0123456789:;<=>?@^_`|[}"
"""A name that is not modified UTF-7 (as in ``test_protocol_mailboxes``)."""


def burst(client: RawClient, commands: list[bytes]) -> list[Response]:
    """Send every command (LITERAL+ APPENDs and others) in one write, then read each
    one's answer, in order."""
    tags = [client.next_tag() for _ in commands]
    client.send(
        b"".join(
            b"%s %s\r\n" % (tag.encode(), body) for tag, body in zip(tags, commands, strict=True)
        )
    )
    return [client.read_until_tagged(tag) for tag in tags]


def append(mailbox: str, message: bytes, extra: bytes = b"") -> bytes:
    return b"APPEND %s%s {%d+}\r\n%s" % (mailbox.encode(), extra, len(message), message)


def subjects(client: RawClient) -> dict[int, bytes]:
    """Each message's Subject by UID, in the selected mailbox."""
    found = client.command("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert found.ok, found.line
    out = {}
    for line in found.data("FETCH"):
        uid = int(re.search(rb"UID (\d+)", line).group(1))  # type: ignore[union-attr]
        out[uid] = re.search(rb"Subject: (\S+)", line).group(1)  # type: ignore[union-attr]
    return out


def test_a_burst_of_appends_is_answered_in_order_each_with_its_uid(
    connect: Connector, server: ServerProcess
) -> None:
    client = connect.raw()
    watcher = connect.raw()
    assert client.command('CREATE "Burst"').ok
    assert watcher.command('SELECT "Burst"').ok
    count = 40
    bodies = [
        messages.plain(subject=f"b{i}", message_id=f"<b{i}@example.org>") for i in range(count)
    ]
    answers = burst(client, [append('"Burst"', body) for body in bodies])
    assert all(a.ok for a in answers), [a.line for a in answers if not a.ok]
    codes = [_APPENDUID.match(a.code or "") for a in answers]
    assert all(codes), [a.line for a in answers]
    assert len({m.group(1) for m in codes if m}) == 1  # one UIDVALIDITY
    uids = [int(m.group(2)) for m in codes if m]
    assert uids == list(range(uids[0], uids[0] + count))  # ascending, in the commands' order
    assert watcher.command("NOOP").numbers("EXISTS")[-1] == count
    assert client.command('SELECT "Burst"').ok
    assert subjects(client) == {uid: b"b%d" % i for i, uid in enumerate(uids)}
    if server.backend.name == "maildir":
        # One delivery for a burst: its messages share the modseq of its transaction.
        assert client.command("ENABLE CONDSTORE").ok
        fetched = client.command("FETCH 1:* (MODSEQ)").data("FETCH")
        modseqs = {re.search(rb"MODSEQ \((\d+)\)", line).group(1) for line in fetched}  # type: ignore[union-attr]
        assert len(modseqs) <= count // 4, sorted(modseqs)


def test_a_failing_append_of_a_burst_fails_alone(connect: Connector) -> None:
    """Each command that cannot be stored gets its own BAD or NO; the others of the burst
    are stored, in order, and nothing is stored twice."""
    client = connect.raw()
    assert client.command('CREATE "Mixed"').ok
    bodies = [messages.plain(subject=f"m{i}", message_id=f"<m{i}@example.org>") for i in range(8)]
    commands = [append('"Mixed"', body) for body in bodies]
    commands[2] = append('"Mixed"', bodies[2], b" (\\Recent)")  # BAD: \Recent cannot be set
    commands[4] = append('"Mixed"', bodies[4], b' "31-Feb-2021 10:00:00 +0000"')  # BAD date
    commands[5] = append('"Nowhere"', bodies[5])  # NO [TRYCREATE]
    commands.insert(7, b"NOOP")
    undecodable = append(f'"{UNDECODABLE}"', bodies[0])  # names no mailbox: NO [NONEXISTENT]
    commands = [undecodable, undecodable, *commands]
    answers = burst(client, commands)
    statuses = [a.status for a in answers]
    assert statuses == ["NO", "NO", "OK", "OK", "BAD", "OK", "BAD", "NO", "OK", "OK", "OK"], [
        a.line for a in answers
    ]
    assert [answers[n].code for n in (0, 1, 7)] == ["NONEXISTENT", "NONEXISTENT", "TRYCREATE"]
    assert client.command('SELECT "Mixed"').ok
    assert sorted(subjects(client).values()) == [b"m0", b"m1", b"m3", b"m6", b"m7"]


def test_a_burst_to_a_missing_mailbox_is_told_to_create_it(connect: Connector) -> None:
    client = connect.raw()
    body = messages.plain(subject="lost")
    answers = burst(client, [append('"Absent"', body) for _ in range(6)])
    assert [(a.status, a.code) for a in answers] == [("NO", "TRYCREATE")] * 6
    assert client.command('CREATE "Absent"').ok
    answers = burst(client, [append('"Absent"', body) for _ in range(6)])
    assert all(a.ok for a in answers), [a.line for a in answers]
    assert b"MESSAGES 6" in client.command('STATUS "Absent" (MESSAGES)').data("STATUS")[0]
