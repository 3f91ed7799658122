"""Connection counts are bounded, in all and per client address; the refused hear why."""

from __future__ import annotations

import time
from pathlib import Path

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from bench.harness import BackendSpec, RawClient, ServerProcess
from mailserv.auth.portal import build_portal
from mailserv.backends.memory import factory as memory
from mailserv.imap.factory import IMAPServerFactory
from mailserv.imap.settings import ServerSettings


def make_factory(settings: ServerSettings) -> IMAPServerFactory:
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
    return IMAPServerFactory(
        build_portal(memory.build({}, ".", Clock()), checker), settings, clock=Clock()
    )


def connect(factory: IMAPServerFactory, host: str) -> tuple[StringTransport, object]:
    address = IPv4Address("TCP", host, 50000)
    protocol = factory.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return transport, protocol


def test_per_address_and_total_bounds() -> None:
    factory = make_factory(ServerSettings(max_connections=3, max_connections_per_address=2))
    first = connect(factory, "192.0.2.1")
    connect(factory, "192.0.2.1")
    transport, _ = connect(factory, "192.0.2.1")
    assert transport.value() == b"* BYE Too many connections from your address\r\n"
    assert transport.disconnecting
    connect(factory, "192.0.2.2")  # the third in all
    transport, _ = connect(factory, "192.0.2.3")
    assert transport.value() == b"* BYE Too many connections, try again later\r\n"

    first[1].connectionLost(None)  # type: ignore[attr-defined]
    assert factory.connections.total == 2
    transport, _ = connect(factory, "192.0.2.1")
    assert transport.value().startswith(b"* OK ")


def admitted(port: int) -> RawClient:
    """A greeted connection, retrying while the close of an earlier one is not counted."""
    for _ in range(100):
        client = RawClient.connect(port)
        if client.greeting.startswith(b"* OK"):
            return client
        client.close()
        time.sleep(0.05)
    raise AssertionError("no connection admitted")


def test_refused_over_a_real_socket(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data", BackendSpec("memory"), limits={"max_connections_per_address": 2}
    )
    server.start()
    try:
        # The start's readiness probe is counted until the server sees it close.
        kept = [admitted(server.imap_port) for _ in range(2)]
        extra = RawClient.connect(server.imap_port)
        assert extra.greeting == b"* BYE Too many connections from your address\r\n"
        kept.pop().close()
        assert admitted(server.imap_port).greeting.startswith(b"* OK")
    finally:
        server.stop()
