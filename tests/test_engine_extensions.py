"""The extension registry: a new extension is one declaration, registered in one tuple.

``XPING`` below is what a brand-new extension module holds: a command, a capability
offered only after login, an ENABLE name and a STATUS item.  The server is driven over
Twisted's in-memory transport, as in test_engine_plaintext.
"""

from __future__ import annotations

import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailserv.auth.portal import build_portal
from mailserv.backends.memory import factory as memory
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.extensions import BUILT_IN
from mailserv.imap.factory import IMAPServerFactory
from mailserv.imap.registry import Capability, Extension, Registry, StatusItem
from mailserv.imap.replies import Reply
from mailserv.imap.session import Session, State
from mailserv.imap.tokens import Command


async def xping(session: Session, command: Command) -> Reply:
    session.write(b"* XPING pong\r\n")
    return Reply("XPING done")


XPING = Extension(
    "XPING",
    capabilities=(Capability(b"XPING", lambda s: s.state is not State.NOT_AUTHENTICATED),),
    commands=(CommandSpec("XPING", xping, AUTH),),
    status_items=(StatusItem("XPINGS", lambda counts: 7),),
    enable=frozenset({"XPING"}),
)


class Client:
    def __init__(self, extensions: tuple[Extension, ...] = BUILT_IN) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
        portal = build_portal(memory.build({}, ".", Clock()), checker)
        factory = IMAPServerFactory(portal, clock=Clock(), extensions=extensions)
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        self.protocol.makeConnection(self.transport)
        self.greeting = self.transport.value()

    def send(self, line: bytes) -> bytes:
        self.transport.clear()
        self.protocol.dataReceived(line + b"\r\n")
        return self.transport.value()


def test_a_new_extension_is_one_declaration() -> None:
    client = Client((*BUILT_IN, XPING))
    assert b"XPING" not in client.greeting, "offered only after login"
    assert b"XPING" not in client.send(b"a CAPABILITY")
    assert client.send(b"b XPING").startswith(b"b BAD XPING not allowed")
    assert b"b OK" in client.send(b"b LOGIN alice secret")
    caps = client.send(b"c CAPABILITY").split(b"\r\n")[0]
    assert caps.endswith(b" XPING"), caps
    assert client.send(b"d XPING") == b"* XPING pong\r\nd OK XPING done\r\n"
    assert client.send(b"e ENABLE XPING FOO").startswith(b"* ENABLED XPING\r\n")
    assert client.send(b"f ENABLE XPING").startswith(b"* ENABLED\r\n")
    reply = client.send(b"g STATUS INBOX (MESSAGES XPINGS)")
    assert reply.startswith(b"* STATUS INBOX (MESSAGES 0 XPINGS 7)\r\n"), reply


def test_the_default_server_does_not_speak_it() -> None:
    client = Client()
    assert b"b OK" in client.send(b"b LOGIN alice secret")
    assert client.send(b"c XPING").startswith(b"c BAD Unknown command XPING")
    assert client.send(b"d ENABLE XPING").startswith(b"* ENABLED\r\n")
    assert client.send(b"e STATUS INBOX (XPINGS)").startswith(b"e BAD Unknown STATUS item")


def test_a_name_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="command XPING is declared twice"):
        Registry.build((XPING, Extension("other", commands=XPING.commands)))
    with pytest.raises(ValueError, match="STATUS item XPINGS"):
        Registry.build((XPING, Extension("other", status_items=XPING.status_items)))
