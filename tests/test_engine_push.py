"""A reply leaves for the socket when it is complete, not at the reactor's next look at the
sockets: that look comes after the sliced work due first (another session's THREAD of 100k
made every answer wait one more slice).  A server in this process, on the real reactor,
and a client in a thread; each write of the server is looked at again from the very next
reactor turn: by then nothing may be left in the transport's buffer."""

from __future__ import annotations

import socket
from typing import Any

from inprocess import InProcessServerTests
from twisted.internet import defer, reactor, threads


class RepliesLeaveAtOnceTests(InProcessServerTests):
    def test_nothing_waits_in_the_buffer_after_a_reply(self) -> defer.Deferred[None]:
        left: list[tuple[bytes, int]] = []
        sampling = [True]
        build = self.parts.factory.buildProtocol

        def watched(addr: Any) -> Any:
            protocol = build(addr)
            connected = protocol.makeConnection

            def make_connection(transport: Any) -> None:
                write = transport.write

                def noted(data: bytes) -> None:
                    write(data)
                    if sampling[0]:
                        look = lambda: left.append((data[:20], transport._tempDataLen))  # noqa: E731
                        reactor.callLater(0, look)  # type: ignore[attr-defined]

                transport.write = noted
                connected(transport)

            protocol.makeConnection = make_connection
            return protocol

        self.parts.factory.buildProtocol = watched  # type: ignore[method-assign]
        address: Any = self.port.getHost()

        def client() -> None:
            with socket.create_connection((address.host, address.port), timeout=30) as sock:
                reader = sock.makefile("rb")

                def until(prefix: bytes) -> None:
                    while not reader.readline().startswith(prefix):
                        pass

                until(b"* OK")
                for line, answer in [
                    (b'a LOGIN ann "pw ann"', b"a OK"),
                    (b"b SELECT INBOX", b"b OK"),
                    (b"c NOOP", b"c OK"),
                    (b"d IDLE", b"+"),  # a continuation: the client waits for it
                    (b"DONE", b"d OK"),
                ]:
                    sock.sendall(line + b"\r\n")
                    until(answer)
                sampling[0] = False
                sock.sendall(b"e LOGOUT\r\n")
                until(b"e OK")

        async def run() -> None:
            await threads.deferToThread(client)
            seen = [data for data, _ in left]
            self.assertTrue(any(data.startswith(b"c OK") for data in seen), seen)
            self.assertTrue(any(data.startswith(b"+") for data in seen), seen)
            self.assertEqual([entry for entry in left if entry[1]], [])

        return defer.Deferred.fromCoroutine(run())
