"""Shared mailboxes: the rights RFC 4314 asks for beyond the commands themselves, two users
on one mailbox over real sockets: SELECT's READ-ONLY and PERMANENTFLAGS (5.2, 4), NOTIFY's
events and CATENATE's URLs into another user's mailbox (r), the owner's quota charged for
what others store in its mailboxes, and LIST of the shared namespace.

Each runs on every backend that keeps ACLs (the proxy keeps none): the rights are the
store's lists."""

from __future__ import annotations

import re
import sys
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

import test_ext_acl
from imapserver import Connector, ok
from test_ext_acl import refused, shared_name, team
from test_protocol_sync import end_idle, start_idle, wait_for

from bench import messages
from bench.harness import RawClient, Response

keeps_acls = test_ext_acl.keeps_acls
other = test_ext_acl.other

T = TypeVar("T")


def resolve(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never waits (the memory backend's calls)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("the call waited")


def append_to(owner: Connector, mailbox: str) -> Response:
    """One message APPENDed by ``owner`` to its own ``mailbox``."""
    client = owner.raw()
    response = client.command_with_literal(f"APPEND {mailbox} ", messages.plain(subject="new"))
    client.close()
    return response


def permanent(response: Response) -> bytes:
    """The PERMANENTFLAGS list a SELECT sent."""
    found = re.search(rb"\[PERMANENTFLAGS \(([^)]*)\)\]", b"".join(response.untagged))
    assert found is not None, response.untagged
    return found.group(1)


def select_with(owner: RawClient, reader: Connector, owner_name: str, rights: str) -> Response:
    """``reader``'s SELECT of the owner's Team once the owner gave it exactly ``rights``."""
    ok(owner, f'SETACL Team "{reader.user.name}" {rights}')
    client = reader.raw()
    response = ok(client, f'SELECT "Other Users/{owner_name}/Team"')
    client.close()
    return response


def test_select_read_only_and_permanentflags_follow_rights(
    connect: Connector, other: Connector
) -> None:
    alice = team(connect, count=1)
    me = connect.user.name
    flags = b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
    expected = {  # RFC 4314 5.2: READ-WRITE with any of i, e, s, w, t; 4: a flag per right
        "lr": ("READ-ONLY", b""),
        "lri": ("READ-WRITE", b""),
        "lre": ("READ-WRITE", b""),
        "lrs": ("READ-WRITE", b"\\Seen"),
        "lrt": ("READ-WRITE", b"\\Deleted"),
        "lrw": ("READ-WRITE", b"\\Answered \\Flagged \\Draft \\*"),
        "lrswt": ("READ-WRITE", b"\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*"),
    }
    for rights, (code, allowed) in expected.items():
        response = select_with(alice, other, me, rights)
        assert (response.code, permanent(response)) == (code, allowed), rights
        assert response.data("FLAGS") == [flags], rights  # FLAGS lists them all, always
    owner = ok(alice, "SELECT Team")
    assert owner.code == "READ-WRITE" and permanent(owner).endswith(b"\\*")

    # read-only: nothing changes, whatever the command; \Recent is claimed by nobody
    ok(alice, f'SETACL Team "{other.user.name}" lr')
    bob = other.raw()
    ok(bob, f"SELECT {shared_name(connect)}")
    for command in ("STORE 1 +FLAGS (\\Seen)", "EXPUNGE", "MOVE 1 INBOX"):
        refused(bob, command, b"READ-ONLY")
    # a keyword announced later keeps the list to what the rights allow
    ok(alice, f'SETACL Team "{other.user.name}" lrs')
    ok(bob, f"SELECT {shared_name(connect)}")
    ok(alice, "STORE 1 +FLAGS ($Work)")
    fetched = ok(bob, "FETCH 1 FLAGS")
    assert b"$Work" in fetched.data("FLAGS")[0], fetched.untagged
    assert permanent(fetched) == b"\\Seen", fetched.untagged


# -- LIST of the shared namespace --------------------------------------------------------------


def listed(client: RawClient, owner: Connector) -> list[bytes]:
    """The names LIST shows under ``Other Users/<owner>/``."""
    lines = ok(client, f'LIST "" "Other Users/{owner.user.name}/*"').data("LIST")
    return sorted(line.rsplit(b"/", 1)[1].strip(b'"') for line in lines)


def test_shared_listing_follows_setacl_rename_delete(connect: Connector, other: Connector) -> None:
    alice = team(connect, count=0)
    ok(alice, "CREATE Team/Sub")
    bob = other.raw()
    ok(alice, f'SETACL Team/Sub "{other.user.name}" lr')
    ok(alice, f'SETACL Team "{other.user.name}" lr')
    assert listed(bob, connect) == [b"Sub", b"Team"]
    ok(alice, 'RENAME Team "Crew"')  # the inferior goes along, with its list
    assert listed(bob, connect) == [b"Crew", b"Sub"]
    assert b"Crew/Sub" in b"".join(ok(bob, 'LIST "" "Other Users/*"').data("LIST"))
    ok(alice, f'DELETEACL Crew "{other.user.name}"')
    assert listed(bob, connect) == [b"Crew", b"Sub"]  # Crew is Sub's \Noselect parent now
    assert b"\\Noselect" in ok(bob, f'LIST "" "Other Users/{connect.user.name}/Crew"').untagged[0]
    ok(alice, "DELETE Crew/Sub")
    assert listed(bob, connect) == []
    ok(alice, "CREATE Crew/Sub")  # a new mailbox of the old name shares nothing
    assert listed(bob, connect) == []


def test_memory_shared_listing_costs_what_it_shows() -> None:
    """``shared_mailboxes`` reads the index, not every mailbox of every account: the same
    Python lines run with 1 or 300 other accounts that share nothing (counted, not timed)."""
    from twisted.internet.task import Clock

    from mailserv.backends.memory import MemoryBackend

    def lines_run(bystanders: int) -> int:
        backend = MemoryBackend(Clock())
        owner = resolve(backend.account("alice"))
        resolve(owner.create("Team"))
        resolve(owner.set_acl("Team", "bob", "lr"))
        for n in range(bystanders):
            account = resolve(backend.account(f"user{n}"))
            resolve(account.create("Private"))
            resolve(account.set_acl("Private", f"user{n + 1}", "lr"))  # not bob
        bob = resolve(backend.account("bob"))
        count = 0

        def tracer(frame: FrameType, event: str, arg: object) -> object:
            nonlocal count
            count += event == "line"
            return tracer

        sys.settrace(tracer)
        try:
            found = resolve(bob.shared_mailboxes("bob"))
        finally:
            sys.settrace(None)
        assert [(e.owner, e.name) for e in found] == [("alice", "Team")]
        return count

    assert lines_run(300) == lines_run(1)


# -- NOTIFY and IMAP URLs: another user's mailbox needs r -------------------------------------


def test_notify_tells_nothing_of_a_mailbox_without_read(
    connect: Connector, other: Connector
) -> None:
    alice = team(connect, count=1)
    ok(alice, "CREATE Open")
    ok(alice, f'SETACL Team "{other.user.name}" l')  # listed, not readable
    ok(alice, f'SETACL Open "{other.user.name}" lr')
    bob = other.raw()
    tree = f'"Other Users/{connect.user.name}"'
    response = ok(bob, f"NOTIFY SET STATUS (SUBTREE {tree} (MessageNew MessageExpunge))")
    initial = b"".join(response.untagged)
    assert b"/Open" in initial and b"/Team" not in initial, initial

    start_idle(bob)
    assert append_to(connect, "Team").ok
    assert append_to(connect, "Open").ok
    # the Team change came first: had it been told, its STATUS would be before Open's
    seen = wait_for(bob, rb'^\* STATUS "Other Users/[^/]+/Open" \(MESSAGES 1 ')
    assert not any(b"/Team" in line for line in seen), seen
    ok(alice, f'SETACL Team "{other.user.name}" lr')
    assert append_to(connect, "Team").ok
    wait_for(bob, rb'^\* STATUS "Other Users/[^/]+/Team" \(MESSAGES 3 ')
    assert end_idle(bob).ok


def test_catenate_url_into_another_users_mailbox_needs_read(
    connect: Connector, other: Connector
) -> None:
    alice = team(connect, count=1)
    ok(alice, f'SETACL Team "{other.user.name}" l')
    bob = other.raw()
    url = f"/Other%20Users/{connect.user.name}/Team/;UID=1"
    refused(bob, f'APPEND INBOX CATENATE (URL "{url}")', b"BADURL " + url.encode())
    ok(alice, f'SETACL Team "{other.user.name}" lr')
    assert ok(bob, f'APPEND INBOX CATENATE (URL "{url}")').code.startswith("APPENDUID")
