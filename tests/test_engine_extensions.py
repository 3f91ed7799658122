"""The extension registry: a new extension is one declaration, registered in one tuple.

``XPING`` below is what a brand-new extension module holds: a command, a capability
offered only after login, an ENABLE name, a STATUS item, a FETCH item and modifier, a
SEARCH key and a SELECT parameter.  The server is driven over
Twisted's in-memory transport, as in test_engine_plaintext.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailserv.auth.portal import build_portal
from mailserv.backends.memory import factory as memory
from mailserv.imap.arguments import number
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.extensions import BUILT_IN
from mailserv.imap.factory import IMAPServerFactory
from mailserv.imap.fetchatt import FetchAttribute, Renderer
from mailserv.imap.registry import (
    Capability,
    Extension,
    FetchModifier,
    Registry,
    SearchCriterion,
    SelectParameter,
    StatusItem,
)
from mailserv.imap.replies import Reply
from mailserv.imap.search.parse import KeyReader
from mailserv.imap.session import Session, State
from mailserv.interfaces import MessageMeta
from mailserv.search import SearchKey, SizeCompare
from mailserv.syntax.tokens import Command, Token


async def xping(session: Session, command: Command) -> Reply:
    session.write(b"* XPING pong\r\n")
    return Reply("XPING done")


def no_argument(section: str | None, partial: tuple[int, int] | None) -> None:
    return None


def double_size(view: object, argument: object) -> Renderer:
    return lambda meta, raw: b"XSIZE2 %d" % (2 * meta.size)


def larger(value: Token | None) -> Callable[[MessageMeta], bool]:
    assert value is not None
    least = number(value)
    return lambda meta: meta.size > least


def tiny(reader: KeyReader, name: str, depth: int) -> SearchKey:
    return SizeCompare(False, number(reader.next_token(f"{name} needs a number")))


def enable_xping(session: Session, value: Token | None) -> None:
    session.enable(["XPING"])


XPING = Extension(
    "XPING",
    capabilities=(Capability(b"XPING", lambda s: s.state is not State.NOT_AUTHENTICATED),),
    commands=(CommandSpec("XPING", xping, AUTH),),
    status_items=(StatusItem("XPINGS", lambda counts: 7),),
    enable=frozenset({"XPING"}),
    fetch_items=(FetchAttribute("XSIZE2", no_argument, double_size),),
    fetch_modifiers=(FetchModifier("XLARGER", larger),),
    search_keys=(SearchCriterion("XTINY", tiny),),
    select_parameters=(SelectParameter("XPING", enable_xping),),
)


class Client:
    def __init__(self, extensions: tuple[Extension, ...] = BUILT_IN) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
        portal = build_portal(memory.build({}, ".", Clock()), checker)
        self.clock = Clock()
        factory = IMAPServerFactory(portal, clock=self.clock, extensions=extensions)
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        self.protocol.makeConnection(self.transport)
        self.greeting = self.transport.value()

    def send(self, line: bytes) -> bytes:
        self.transport.clear()
        self.protocol.dataReceived(line + b"\r\n")
        self.clock.advance(0)  # the reactor turns: work that gave way goes on (a loaded machine)
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


def test_an_extension_adds_fetch_search_and_select_parts() -> None:
    client = Client((*BUILT_IN, XPING))
    assert b"a OK" in client.send(b"a LOGIN alice secret")
    for n, body in enumerate((b"short", b"a much longer body, past thirty bytes")):
        message = b"Subject: x\r\n\r\n" + body
        line = b"b%d APPEND INBOX {%d+}\r\n%s" % (n, len(message), message)
        assert b"OK [APPENDUID" in client.send(line)
    assert client.send(b"c SELECT INBOX (BOGUS)").startswith(b"c BAD Unknown SELECT parameter")
    assert b"c OK [READ-WRITE]" in client.send(b"c SELECT INBOX (xping)")
    assert client.send(b"d ENABLE XPING").startswith(b"* ENABLED\r\n"), "enabled by SELECT"
    reply = client.send(b"e FETCH 1:* (XSIZE2)")
    assert reply.startswith(b"* 1 FETCH (XSIZE2 38)\r\n* 2 FETCH (XSIZE2 102)\r\n"), reply
    reply = client.send(b"f FETCH 1:* (RFC822.SIZE) (XLARGER 30)")
    assert reply.startswith(b"* 2 FETCH (RFC822.SIZE 51)\r\nf OK"), reply
    assert client.send(b"g SEARCH XTINY 30").startswith(b"* SEARCH 1\r\ng OK")
    assert client.send(b"h SEARCH OR XTINY 1 UID 2").startswith(b"* SEARCH 2\r\nh OK")


def test_the_default_server_does_not_speak_it() -> None:
    client = Client()
    assert b"b OK" in client.send(b"b LOGIN alice secret")
    assert client.send(b"c XPING").startswith(b"c BAD Unknown command XPING")
    assert client.send(b"d ENABLE XPING").startswith(b"* ENABLED\r\n")
    assert client.send(b"e STATUS INBOX (XPINGS)").startswith(b"e BAD Unknown STATUS item")
    assert client.send(b"f SELECT INBOX (XPING)").startswith(b"f BAD Unknown SELECT parameter")
    assert b"g OK" in client.send(b"g SELECT INBOX")
    assert client.send(b"h UID FETCH 1:* XSIZE2").startswith(b"h BAD Unknown FETCH item XSIZE2")
    assert client.send(b"i SEARCH XTINY 1").startswith(b"i BAD Unknown search key XTINY")


def test_a_name_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="command XPING is declared twice"):
        Registry.build((XPING, Extension("other", commands=XPING.commands)))
    with pytest.raises(ValueError, match="STATUS item XPINGS"):
        Registry.build((XPING, Extension("other", status_items=XPING.status_items)))
    body = FetchAttribute("BODY", no_argument, double_size)
    with pytest.raises(ValueError, match="FETCH item BODY is declared twice"):
        Registry.build((Extension("other", fetch_items=(body,)),))
    with pytest.raises(ValueError, match="SEARCH key OR is declared twice"):
        Registry.build((Extension("other", search_keys=(SearchCriterion("OR", tiny),)),))
    with pytest.raises(ValueError, match="upper case"):
        Registry.build((Extension("other", search_keys=(SearchCriterion("xtiny", tiny),)),))
