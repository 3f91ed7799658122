"""An IMAP session over an SQL backend whose transactions run inline, in process (no socket,
no reactor), and a count of the transactions run: what the tests of how many transactions a
command costs drive."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailserv.auth.portal import build_portal
from mailserv.backends.sql import SqlBackendFactory, inline_database
from mailserv.backends.sql.db import InlineDatabase
from mailserv.imap.factory import IMAPServerFactory
from mailserv.testing import resolve

Send = Callable[[bytes], bytes]


def inline_session(url: str, data_dir: Path) -> tuple[Send, Callable[[], None]]:
    """``send`` (a command line, its literal included: the responses) of a session logged in
    as alice, and what ends it and stops the backend."""
    clock = Clock()
    options = {"url": url}
    if url.startswith("sqlite"):
        options["sqlite-sync"] = "normal"
    backend = SqlBackendFactory(database=inline_database).build(options, str(data_dir), clock)
    resolve(backend.start())
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
    protocol = IMAPServerFactory(build_portal(backend, checker), clock=clock).buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
    protocol.makeConnection(transport)

    def send(line: bytes) -> bytes:
        transport.clear()
        protocol.dataReceived(line + b"\r\n")
        clock.advance(0)
        return transport.value()

    def close() -> None:
        send(b"z LOGOUT")
        resolve(backend.stop())

    assert b"a OK" in send(b"a LOGIN alice secret")
    return send, close


def count_transactions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the transaction functions run from now on (``monkeypatch.undo()`` ends
    the count)."""
    ran: list[str] = []
    real = InlineDatabase.call

    def counted(self: InlineDatabase, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        ran.append(fn.__name__)
        return real(self, fn, *args, **kw)

    monkeypatch.setattr(InlineDatabase, "call", counted)
    return ran
