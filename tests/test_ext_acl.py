"""ACL (RFC 4314) and shared mailboxes: two users on one mailbox over real sockets.

What the store keeps (the lists, the owner's mailbox reached by another user, its events
heard by both) runs on every backend that keeps ACLs; what the engine answers by itself
(the commands' syntax, RFC examples, NAMESPACE) runs on one.  The proxy keeps no ACLs:
it offers neither the commands nor the namespace."""

from __future__ import annotations

import pytest
from imapserver import Connector, all_bad, ok
from test_protocol_sync import end_idle, start_idle, wait_for
from zope.interface.interface import InterfaceClass

from bench import messages
from bench.harness import RawClient, ServerProcess
from mailserv import interfaces
from mailserv.imap.shared import ROUTED, SharedAccount


@pytest.fixture
def keeps_acls(server: ServerProcess) -> None:
    if server.backend.name == "proxy":
        pytest.skip("the proxy keeps no access control lists")


@pytest.fixture
def other(shared_connect: Connector, keeps_acls: None) -> Connector:
    """A second user of the same server (the module's: each test shares a new owner's
    mailbox with it, so its own mailboxes are left as they are but for its INBOX)."""
    ok(shared_connect.raw(), "NOOP")  # the account exists once its user has logged in
    return shared_connect


def shared_name(owner: Connector, mailbox: str = "Team") -> str:
    return f'"Other Users/{owner.user.name}/{mailbox}"'


def team(owner: Connector, count: int = 2) -> RawClient:
    """The owner's "Team" with ``count`` messages, and the owner's client."""
    client = owner.raw()
    ok(client, "CREATE Team")
    owner.append([messages.plain(subject=f"team {n}") for n in range(count)], "Team")
    return client


def inbox_count(client: RawClient) -> int:
    (line,) = ok(client, "STATUS INBOX (MESSAGES)").data("STATUS")
    return int(line.rstrip(b")\r\n").rsplit(b" ", 1)[1])


def refused(client: RawClient, command: str, code: bytes = b"NOPERM") -> bytes:
    response = client.command(command)
    assert response.status == "NO", (command, response.line)
    assert b"[" + code + b"]" in response.line, response.line
    return response.line


def test_rights_denied_then_granted(connect: Connector, other: Connector) -> None:
    alice = team(connect)
    bob = other.raw()
    name = shared_name(connect)
    refused(bob, f"SELECT {name}", b"NONEXISTENT")  # no right at all: not even there
    assert not ok(bob, f'LIST "" "Other Users/{connect.user.name}/*"').data("LIST")

    ok(alice, f'SETACL Team "{other.user.name}" lr')
    listed = b"".join(ok(bob, 'LIST "" "Other Users/*"').data("LIST"))
    assert f"Other Users/{other.user.name}".encode() not in listed
    assert f"Other Users/{connect.user.name}/Team".encode() in listed
    assert ok(bob, f"SELECT {name}").code == "READ-ONLY"  # RFC 4314 5.2: may change nothing
    ok(bob, "FETCH 1 BODY[]")  # reads, but sets no \\Seen without s
    assert b"\\Seen" not in ok(bob, "FETCH 1 FLAGS").data("FETCH")[0]
    response = bob.command_with_literal(f"APPEND {name} ", messages.plain(subject="no"))
    assert response.status == "NO" and b"[NOPERM]" in response.line, response.line
    ok(alice, f'SETACL Team "{other.user.name}" +e')  # e alone makes it READ-WRITE
    assert ok(bob, f"SELECT {name}").code == "READ-WRITE"
    assert b"keep seen (s) right on this mailbox" in refused(bob, "STORE 1 +FLAGS (\\Seen)")
    refused(bob, "STORE 1 +FLAGS (\\Flagged)")
    refused(bob, "STORE 1 +FLAGS (\\Deleted)")
    refused(bob, "MOVE 1 INBOX")

    ok(alice, f'SETACL Team "{other.user.name}" +swite')
    ok(bob, "STORE 1 +FLAGS (\\Seen \\Flagged)")
    response = bob.command_with_literal(f"APPEND {name} ", messages.plain(subject="yes"))
    assert response.ok, response.line
    ok(bob, "STORE 2 +FLAGS (\\Deleted)")
    ok(bob, "EXPUNGE")
    ok(alice, "SELECT Team")
    flags = b" ".join(ok(alice, "FETCH 1:* (FLAGS)").data("FETCH"))
    assert b"\\Seen" in flags and b"\\Flagged" in flags
    assert len(ok(alice, "FETCH 1:* (FLAGS)").data("FETCH")) == 2  # 2 + 1 appended - 1

    # COPY to bob's own INBOX crosses accounts: the message is bob's, alice's INBOX untouched
    before = inbox_count(bob)
    copied = ok(bob, "COPY 1 INBOX")
    assert copied.code is not None and copied.code.startswith("COPYUID"), copied.line
    assert inbox_count(bob) == before + 1
    assert inbox_count(alice) == 0
    ok(bob, "MOVE 1 INBOX")
    assert inbox_count(bob) == before + 2
    assert b"MESSAGES 1" in ok(alice, "STATUS Team (MESSAGES)").data("STATUS")[0]

    # rights taken away while selected: the mailbox stays open, the next change is refused
    ok(alice, f'SETACL Team "{other.user.name}" l')
    refused(bob, "STORE 1 +FLAGS (\\Flagged)")
    refused(bob, "EXPUNGE")
    refused(bob, f"SELECT {name}")


def test_shared_mailbox_changes_heard_live(connect: Connector, other: Connector) -> None:
    alice = team(connect, count=1)
    ok(alice, f'SETACL Team "{other.user.name}" lrswite')
    bob = other.raw()
    ok(bob, f"SELECT {shared_name(connect)}")
    ok(alice, "SELECT Team")
    start_idle(alice)
    response = bob.command_with_literal(
        f"APPEND {shared_name(connect)} ", messages.plain(subject="live")
    )
    assert response.ok, response.line
    wait_for(alice, rb"^\* 2 EXISTS")
    ok(bob, "STORE 1 +FLAGS (\\Flagged \\Deleted)")
    wait_for(alice, rb"^\* 1 FETCH .*\\Flagged")
    ok(bob, "EXPUNGE")
    wait_for(alice, rb"^\* 1 EXPUNGE")
    assert end_idle(alice).ok
    # and the other way round: bob idles, the owner changes the mailbox
    ok(bob, "NOOP")
    start_idle(bob)
    ok(alice, "STORE 1 +FLAGS (\\Answered)")
    wait_for(bob, rb"^\* 1 FETCH .*\\Answered")
    assert end_idle(bob).ok


def test_mailbox_rights_create_delete_rename(connect: Connector, other: Connector) -> None:
    alice = team(connect, count=0)
    bob = other.raw()
    ok(alice, f'SETACL Team "{other.user.name}" lr')
    child = shared_name(connect, "Team/Sub")
    refused(bob, f"CREATE {child}")
    ok(alice, f'SETACL Team "{other.user.name}" +k')
    ok(bob, f"CREATE {child}")
    # the child took its parent's list (RFC 4314 5.1.1)
    assert other.user.name.encode() in ok(alice, "GETACL Team/Sub").data("ACL")[0]
    refused(bob, f"RENAME {child} {shared_name(connect, 'Team/Moved')}")
    refused(bob, f"DELETE {child}")
    ok(alice, f'SETACL Team/Sub "{other.user.name}" +x')
    ok(bob, f"RENAME {child} {shared_name(connect, 'Team/Moved')}")
    refused(bob, f"RENAME {shared_name(connect, 'Team/Moved')} Mine", b"CANNOT")
    ok(bob, f"DELETE {shared_name(connect, 'Team/Moved')}")
    names = b" ".join(ok(alice, 'LIST "" "Team*"').data("LIST"))
    assert b"Team/Sub" not in names and b"Team/Moved" not in names, names


@pytest.mark.one_backend(not_on=("proxy",))  # the commands' answers are the engine's
def test_rfc_4314_commands(connect: Connector, other: Connector) -> None:
    alice = team(connect, count=0)
    try:
        _rfc_4314_commands(connect, other, alice)
    finally:  # "anyone" would show Team in every user's LIST of the shared server
        ok(connect.raw(), "DELETEACL Team anyone")


def _rfc_4314_commands(connect: Connector, other: Connector, alice: RawClient) -> None:
    me, bob = connect.user.name, other.user.name
    assert ok(alice, "MYRIGHTS Team").data("MYRIGHTS") == [b"Team lrswipkxteacd"]
    ok(alice, f'SETACL Team "{bob}" lrwc')  # obsolete c reads as k
    ok(alice, "SETACL Team anyone l")
    line = ok(alice, "GETACL Team").data("ACL")[0]
    assert f"{bob} lrwkc".encode() in line and b"anyone l" in line
    assert f"{me} lrswipkxteacd".encode() in line  # the owner always has every right
    ok(alice, f'SETACL Team "{bob}" -wk')
    ok(alice, f'SETACL Team "{bob}" +d')  # d reads as x, t and e
    assert f"{bob} lrxted".encode() in ok(alice, "GETACL Team").data("ACL")[0]
    assert ok(alice, f'LISTRIGHTS Team "{bob}"').data("LISTRIGHTS") == [
        f'Team {bob} "" l r s w i p k x t e a'.encode()
    ]
    assert ok(alice, f'LISTRIGHTS Team "{me}"').data("LISTRIGHTS") == [
        f"Team {me} lrswipkxtea".encode()
    ]
    client = other.raw()
    assert ok(client, f"MYRIGHTS {shared_name(connect)}").data("MYRIGHTS") == [
        f"{shared_name(connect)} lrxted".encode()
    ]
    mine = f'"Other Users/{me}/*"'
    listed = ok(client, f'LIST "" {mine} RETURN (MYRIGHTS STATUS (MESSAGES))')  # RFC 8440
    assert listed.data("MYRIGHTS") == [f"{shared_name(connect)} lrxted".encode()]
    assert listed.data("STATUS") == [f"{shared_name(connect)} (MESSAGES 0)".encode()]
    refused(client, f"GETACL {shared_name(connect)}")  # no a
    refused(client, f'SETACL {shared_name(connect)} "{bob}" +a')
    # negative rights take away what anyone gives
    ok(alice, f'SETACL Team "-{bob}" r')
    assert ok(client, f"MYRIGHTS {shared_name(connect)}").data("MYRIGHTS") == [
        f"{shared_name(connect)} lxted".encode()
    ]
    refused(client, f"SELECT {shared_name(connect)}")
    assert not ok(client, f'LIST "" {mine} RETURN (STATUS (MESSAGES))').data("STATUS")  # no r
    ok(alice, f'DELETEACL Team "-{bob}"')
    ok(alice, f'DELETEACL Team "{bob}"')
    assert bob.encode() not in ok(alice, "GETACL Team").data("ACL")[0]
    refused(alice, f'SETACL Team "{me}" l', b"CANNOT")
    refused(alice, f'DELETEACL Team "{me}"', b"CANNOT")
    refused(alice, 'CREATE "Other Users"', b"CANNOT")
    refused(alice, "GETACL Nothing", b"NONEXISTENT")
    refused(alice, "MYRIGHTS Nothing", b"NONEXISTENT")
    all_bad(
        alice,
        [
            "GETACL",
            "SETACL Team someone",
            "SETACL Team someone lrz",
            'SETACL Team "" lr',
            "DELETEACL Team",
            "LISTRIGHTS Team",
            "MYRIGHTS Team extra",
        ],
    )
    response = alice.command("SETACL Team someone lrz")
    assert b"Unknown right 'z'" in response.line, response.line


@pytest.mark.one_backend(not_on=("proxy",))  # NAMESPACE and CAPABILITY are the engine's
def test_namespace_and_capability(connect: Connector, other: Connector) -> None:
    client = connect.raw()
    assert ok(client, "NAMESPACE").data("NAMESPACE") == [b'(("" "/")) (("Other Users/" "/")) NIL']
    words = ok(client, "CAPABILITY").data("CAPABILITY")[0].split()
    assert {b"ACL", b"RIGHTS=texk", b"LIST-MYRIGHTS"} <= set(words)


def test_shared_account_passes_on_every_optional_account_interface() -> None:
    """Each optional interface next to ``IAccount`` (but the ACL one it uses itself) is one
    that SharedAccount routes, so wrapping an account for shared mailboxes takes nothing
    away from its sessions (MULTIAPPEND, OBJECTID, the store's quotas and usage)."""
    optional = {
        iface
        for iface in vars(interfaces).values()
        if isinstance(iface, InterfaceClass)
        and "Optional, next to ``IAccount``" in (iface.__doc__ or "")
    }
    assert interfaces.IQuotaAccount in optional
    assert optional - {interfaces.IAclAccount} == set(ROUTED)
    for iface in ROUTED:
        assert all(callable(getattr(SharedAccount, name, None)) for name in iface.names())
