"""NOTIFY (RFC 5465): one session told of changes to many mailboxes, by two real sessions."""

from __future__ import annotations

import re

import pytest
from imapserver import Connector
from test_protocol_sync import end_idle, ok, start_idle, wait_for
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from bench import messages
from bench.harness import RawClient
from mailserv.auth.portal import build_portal
from mailserv.backends.memory import factory as memory
from mailserv.imap.factory import IMAPServerFactory
from mailserv.imap.settings import ServerSettings


def quiet(client: RawClient, command: str) -> list[bytes]:
    """Run ``command``; its untagged responses."""
    return ok(client, command).untagged


def test_status_of_watched_mailboxes_while_idle_and_after_noop(connect: Connector) -> None:
    watcher = connect.raw()
    ok(watcher, "CREATE Other")
    response = ok(
        watcher,
        "NOTIFY SET STATUS (INBOXES (MessageNew MessageExpunge)) (PERSONAL (MessageNew))",
    )
    initial = b"".join(response.untagged)
    assert re.search(rb"\* STATUS INBOX \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+ UNSEEN 0\)", initial)
    assert b"* STATUS Other (MESSAGES 0 " in initial
    actor = connect.raw()

    start_idle(watcher)
    actor.command_with_literal("APPEND INBOX ", messages.plain(subject="one"))
    wait_for(watcher, rb"^\* STATUS INBOX \(MESSAGES 1 UIDNEXT 2 ")
    actor.command_with_literal("APPEND Other ", messages.plain(subject="two"))
    wait_for(watcher, rb"^\* STATUS Other \(MESSAGES 1 UIDNEXT 2 ")
    assert end_idle(watcher).ok

    actor.command_with_literal("APPEND Other ", messages.plain(subject="three"))
    watcher.send("n1 NOOP\r\n")
    wait_for(watcher, rb"^\* STATUS Other \(MESSAGES 2 UIDNEXT 3 ")
    assert watcher.read_until_tagged("n1").ok

    ok(watcher, "NOTIFY NONE")
    actor.command_with_literal("APPEND INBOX ", messages.plain(subject="four"))
    ok(actor, "NOOP")
    assert not any(b"STATUS" in line for line in quiet(watcher, "NOOP"))


def test_selected_message_new_sends_the_fetch_items(connect: Connector) -> None:
    watcher = connect.selected()
    ok(
        watcher,
        "NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)])"
        " MessageExpunge))",
    )
    actor = connect.raw()
    start_idle(watcher)
    actor.command_with_literal("APPEND INBOX ", messages.plain(subject="hello there"))
    seen = wait_for(watcher, rb"^\* 1 FETCH \(UID 1 BODY\[HEADER\.FIELDS \(SUBJECT\)\]")
    assert any(line.startswith(b"* 1 EXISTS") for line in seen), seen
    assert b"hello there" in seen[-1]
    assert end_idle(watcher).ok
    # Outside IDLE: with the next command's updates, after EXISTS.
    actor.command_with_literal("APPEND INBOX ", messages.plain(subject="again"))
    untagged = quiet(watcher, "NOOP")
    assert [line[:9] for line in untagged[:1]] == [b"* 2 EXIST"], untagged
    assert any(line.startswith(b"* 2 FETCH (UID 2 BODY[") and b"again" in line for line in untagged)


@pytest.mark.one_backend
def test_mailbox_names_of_other_sessions(connect: Connector) -> None:
    watcher = connect.raw()
    ok(watcher, "NOTIFY SET (PERSONAL (MessageNew MailboxName SubscriptionChange))")
    actor = connect.raw()
    ok(actor, "CREATE Fresh")
    ok(actor, "SUBSCRIBE Fresh")
    ok(actor, "RENAME Fresh Renamed")
    ok(actor, "DELETE Renamed")
    ok(actor, "CREATE Kept")
    actor.command_with_literal("APPEND Kept ", messages.plain())  # watched since CREATE
    untagged = b"".join(quiet(watcher, "NOOP"))
    if b"STATUS Kept" not in untagged:
        untagged += b"".join(wait_for(watcher, rb"^\* STATUS Kept \(MESSAGES 1 "))
    assert untagged.index(b'* LIST () "/" Fresh\r\n') < untagged.index(
        b'* LIST (\\Subscribed) "/" Fresh\r\n'
    )
    assert b'* LIST () "/" Renamed ("OLDNAME" (Fresh))\r\n' in untagged
    assert b'* LIST (\\NonExistent) "/" Renamed\r\n' in untagged
    # Its own changes: the tagged OK told it.
    assert not any(b"LIST" in line for line in quiet(watcher, "CREATE Mine"))
    assert not any(b"LIST" in line for line in quiet(watcher, "NOOP"))


REFUSED = [
    ("NOTIFY", "BAD"),
    ("NOTIFY MAYBE", "BAD"),
    ("NOTIFY SET", "BAD"),
    ("NOTIFY SET STATUS", "BAD"),
    ("NOTIFY NONE extra", "BAD"),
    ("NOTIFY SET (BOGUS (MessageNew))", "BAD"),
    ("NOTIFY SET (INBOXES)", "BAD"),
    ("NOTIFY SET (INBOXES MessageNew)", "BAD"),
    ("NOTIFY SET (INBOXES ())", "BAD"),
    ("NOTIFY SET (INBOXES (MessageNew MessageNew))", "BAD"),
    ("NOTIFY SET (INBOXES (FlagChange))", "BAD"),
    ("NOTIFY SET (INBOXES (MessageNew)) (INBOXES (MessageExpunge))", "BAD"),
    ("NOTIFY SET (SELECTED (MessageNew)) (SELECTED-DELAYED (MessageNew))", "BAD"),
    ("NOTIFY SET (PERSONAL (MessageNew (UID)))", "BAD"),
    ("NOTIFY SET (SELECTED (MessageNew (BODY[])))", "BAD"),
    ("NOTIFY SET (SELECTED (MailboxName))", "BAD"),
    ("NOTIFY SET (MAILBOXES (MessageNew))", "BAD"),
    ("NOTIFY SET (SUBTREE () (MessageNew))", "BAD"),
    ("NOTIFY SET (INBOXES (AnnotationChange))", "NO [BADEVENT"),
    ("NOTIFY SET (PERSONAL (MailboxMetadataChange))", "NO [BADEVENT"),
    ("NOTIFY SET (PERSONAL (ServerMetadataChange))", "NO [BADEVENT"),
    ("NOTIFY SET (PERSONAL (Whatever))", "NO [BADEVENT"),
]


@pytest.mark.one_backend
def test_refused(connect: Connector) -> None:
    client = connect.raw()
    for command, answer in REFUSED:
        line = client.command(command).line.decode()
        assert line.split(" ", 1)[1].startswith(answer), (command, line)
        if answer.startswith("NO"):
            assert "(MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)" in line
    assert ok(client, "NOOP").ok  # the session goes on
    anonymous = connect.raw(login=False)
    response = anonymous.command("NOTIFY NONE")
    assert response.status == "BAD" and b"not allowed" in response.line, response.line


class Engine:
    """One session driven in this process over Twisted's in-memory transport."""

    def __init__(self, settings: ServerSettings) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
        self.clock = Clock()
        portal = build_portal(memory.build({}, ".", self.clock), checker)
        factory = IMAPServerFactory(portal, settings=settings, clock=self.clock)
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        self.protocol.makeConnection(self.transport)

    def send(self, line: bytes) -> bytes:
        self.transport.clear()
        self.protocol.dataReceived(line + b"\r\n")
        for _ in range(5):
            self.clock.advance(0)
        return self.transport.value()


def test_the_limit_refuses_and_overflows() -> None:
    engine = Engine(ServerSettings(max_notify_mailboxes=3))
    assert b"a OK" in engine.send(b"a LOGIN alice secret")
    for name in (b"One", b"Two", b"Three"):
        assert b"OK" in engine.send(b"b CREATE " + name)
    reply = engine.send(b"c NOTIFY SET (PERSONAL (MessageNew))")
    assert reply == b"c NO [LIMIT] Too many mailboxes to watch (limit 3)\r\n"
    assert b"d OK" in engine.send(b"d NOTIFY SET (SUBTREE (One Two) (MessageNew MailboxName))")
    reply = engine.send(b"e CREATE One/Sub")
    assert re.fullmatch(rb"e OK \[MAILBOXID \([\w-]+\)\] CREATE completed\r\n", reply), reply
    reply = engine.send(b"f CREATE Two/Sub")
    assert reply.startswith(b"* OK [NOTIFICATIONOVERFLOW] "), reply
    assert engine.protocol.notifier is None or engine.protocol.notifier.closed
