"""LOGINDISABLED for cleartext connections from other hosts.

Every socket a test can open comes from loopback, where plaintext login is allowed, so these
drive the protocol over Twisted's in-memory transport with a non-loopback peer address.
"""

from __future__ import annotations

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailserv.auth.portal import build_portal
from mailserv.backends.memory import factory as memory
from mailserv.imap.factory import IMAPServerFactory
from mailserv.imap.settings import ServerSettings


def connect(settings: ServerSettings, peer: str) -> tuple[StringTransport, object]:
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
    portal = build_portal(memory.build({}, ".", Clock()), checker)
    factory = IMAPServerFactory(portal, settings, clock=Clock())
    protocol = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 50000))
    protocol.makeConnection(transport)
    return transport, protocol


def exchange(transport: StringTransport, protocol: object, line: bytes) -> bytes:
    transport.clear()
    protocol.dataReceived(line + b"\r\n")  # type: ignore[attr-defined]
    return transport.value()


def test_remote_cleartext_refuses_login() -> None:
    transport, protocol = connect(ServerSettings(), "192.0.2.10")
    greeting = transport.value()
    assert b"LOGINDISABLED" in greeting
    assert b"AUTH=PLAIN" not in greeting
    reply = exchange(transport, protocol, b"a LOGIN alice secret")
    assert reply.startswith(b"a NO [PRIVACYREQUIRED]")
    reply = exchange(transport, protocol, b"b AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")
    assert reply.startswith(b"b NO [PRIVACYREQUIRED]")


def test_remote_cleartext_allowed_when_configured() -> None:
    transport, protocol = connect(ServerSettings(allow_plaintext_auth=True), "192.0.2.10")
    greeting = transport.value()
    assert b"LOGINDISABLED" not in greeting
    assert b"AUTH=PLAIN" in greeting
    reply = exchange(transport, protocol, b"a LOGIN alice secret")
    assert b"a OK" in reply


def test_loopback_cleartext_allowed() -> None:
    transport, protocol = connect(ServerSettings(), "127.0.0.1")
    assert b"LOGINDISABLED" not in transport.value()
    assert b"a OK" in exchange(transport, protocol, b"a LOGIN alice secret")
