"""OBJECTID (RFC 8474): MAILBOXID from each backend (CREATE, SELECT, STATUS, LIST-STATUS;
kept by RENAME, new after DELETE and CREATE), EMAILID and THREADID (FETCH, SEARCH; kept
by COPY and MOVE, shared by a reply), over real sockets; bad input refused with BAD."""

from __future__ import annotations

import re

import pytest
from imapserver import Connector, all_bad, ok

from bench import messages
from bench.harness import RawClient, Response, fetches, search_numbers
from mailserv.message.ids import OBJECT_ID, email_id, thread_id
from mailserv.message.parse import parse_message

ORIGINAL = messages.plain(subject="Plans", message_id="<root.1@example.org>")
REPLY = messages.plain(
    subject="Re: Plans",
    body="Fine by me.\n",
    message_id="<reply.2@example.org>",
    extra=[("In-Reply-To", "<root.1@example.org>"), ("References", "<root.1@example.org>")],
)
LONE = messages.plain(subject="No id", body="Nothing to thread.\n", message_id="")


def test_ids_are_objectids_and_a_reply_shares_the_thread() -> None:
    original, reply, lone = (parse_message(raw) for raw in (ORIGINAL, REPLY, LONE))
    assert original.emailid == email_id(ORIGINAL) != reply.emailid
    assert thread_id(original) == thread_id(reply) is not None
    assert thread_id(lone) is None
    for value in (original.emailid, reply.emailid, thread_id(original)):
        assert value is not None and OBJECT_ID.fullmatch(value)


def code_id(line: bytes, code: str) -> str:
    """The id of ``[CODE (id)]`` in a response line."""
    match = re.search(rb"\[" + code.encode() + rb" \(([A-Za-z0-9_-]+)\)\]", line)
    assert match is not None, line
    return match.group(1).decode()


def status_id(client: RawClient, name: str) -> str:
    response = client.command(f"STATUS {name} (MAILBOXID MESSAGES)")
    assert response.ok, response.line
    (line,) = response.data("STATUS")
    match = re.search(rb"MAILBOXID \(([A-Za-z0-9_-]+)\) MESSAGES \d+\)$", line)
    assert match is not None, line
    return match.group(1).decode()


def ids(response: Response, item: str) -> dict[int, str | None]:
    """``{seq: id}`` of ``ITEM (id)`` (None for NIL) in FETCH responses."""
    assert response.ok, response.line
    out: dict[int, str | None] = {}
    for seq, items in fetches(response).items():
        value = items[item]
        assert value is None or isinstance(value, list), value
        out[seq] = None if value is None else str(value[0])
    return out


def test_mailboxid_across_rename_and_delete(connect: Connector) -> None:
    if connect.server.backend.name == "proxy":
        pytest.skip("the proxy offers no MAILBOXIDs")
    client = connect.raw()
    assert b"OBJECTID" in client.command("CAPABILITY").data("CAPABILITY")[0].split()
    created = client.command("CREATE Box")  # RFC 8474 4.1: the id in the tagged OK
    assert created.ok
    first = code_id(created.line, "MAILBOXID")
    assert status_id(client, "Box") == first
    assert status_id(client, "INBOX") != first
    assert client.command("RENAME Box Moved").ok
    assert status_id(client, "Moved") == first
    selected = client.command("EXAMINE Moved")
    assert [code_id(line, "MAILBOXID") for line in selected.untagged if b"MAILBOXID" in line] == [
        first
    ]
    listed = client.command('LIST "" Moved RETURN (STATUS (MAILBOXID))')
    assert listed.ok and f"(MAILBOXID ({first}))".encode() in b"".join(listed.untagged)
    assert client.command("DELETE Moved").ok
    again = code_id(client.command("CREATE Moved").line, "MAILBOXID")
    assert again != first and status_id(client, "Moved") == again


def test_emailid_threadid_fetch_search_copy_move(connect: Connector) -> None:
    client = connect.raw()
    for raw in (ORIGINAL, REPLY, LONE):
        assert client.command_with_literal("APPEND INBOX ", raw).ok
    assert client.command("CREATE Other").ok
    assert client.command("SELECT INBOX").ok
    emails = ids(client.command("FETCH 1:3 EMAILID"), "EMAILID")
    threads = ids(client.command("FETCH 1:3 (THREADID UID)"), "THREADID")
    assert len(set(emails.values())) == 3 and None not in emails.values()
    assert threads[1] == threads[2] is not None and threads[3] is None
    assert emails[1] == email_id(ORIGINAL)
    assert search_numbers(client.command(f"SEARCH EMAILID {emails[2]}")) == [2]
    assert search_numbers(client.command(f"SEARCH THREADID {threads[1]}")) == [1, 2]
    assert search_numbers(client.command("SEARCH NOT EMAILID M0000")) == [1, 2, 3]
    assert client.command("COPY 1 Other").ok
    assert client.command("MOVE 2 Other").ok  # the reply: INBOX now holds 1 (ORIGINAL), 2 (LONE)
    assert client.command("SELECT Other").ok
    moved = ids(client.command("FETCH 1:2 (EMAILID THREADID)"), "EMAILID")
    assert moved == {1: emails[1], 2: emails[2]}
    assert search_numbers(client.command(f"SEARCH THREADID {threads[1]}")) == [1, 2]


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
def test_bad_objectid_requests(connect: Connector) -> None:
    client = connect.raw()
    assert client.command_with_literal("APPEND INBOX ", ORIGINAL).ok
    assert client.command("SELECT INBOX").ok
    ok(client, "SEARCH EMAILID M1 THREADID T-_1")  # known keys: the BADs were their arguments
    all_bad(
        client,
        [
            "SEARCH EMAILID",
            'SEARCH EMAILID "M1 2"',
            "SEARCH THREADID T$1",
            "SEARCH EMAILID (M1)",
            "SEARCH THREADID " + "T" * 256,
            "FETCH 1 EMAILID[1]",
            "FETCH 1 THREADID<0.1>",
            "STATUS INBOX (MAILBOXID FOO)",
        ],
    )
