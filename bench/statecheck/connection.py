"""One raw IMAP connection of the state checker, its responses fed to a Model."""

from __future__ import annotations

import asyncio
import socket
import time

from bench.harness import quote
from bench.statecheck.model import Model
from bench.statecheck.wire import _LITERAL_AT_END, _TAGGED
from bench.statecheck.world import World

READ_LIMIT = 1 << 24
RESPONSE_TIMEOUT = 60.0


class Closed(Exception):
    """The connection ended (or stalled) in the middle of a command."""


class Connection:
    """One raw IMAP connection driven on the event loop, its responses fed to a Model."""

    def __init__(self, world: World, name: str, port: int, user: str, password: str) -> None:
        self.world = world
        self.name = name
        self.port = port
        self.user = user
        self.password = password
        self.model = Model(world, name, user)
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.counter = 0

    async def open(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=READ_LIMIT)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer = writer
        self.reader_task = asyncio.create_task(self._read(reader))
        greeting = await self._next()
        if greeting is None or not greeting.upper().startswith(b"* OK"):
            raise Closed(f"bad greeting {greeting!r}")
        self.model.world.clock += 1
        status = await self.command(f"LOGIN {quote(self.user)} {quote(self.password)}")
        if status != "OK":
            raise Closed("LOGIN failed")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                while True:
                    match = _LITERAL_AT_END.search(line)
                    if match is None:
                        break
                    line += await reader.readexactly(int(match.group(1)))
                    line += await reader.readuntil(b"\r\n")
                self.world.log(self.name, "S:", line)
                await self.queue.put(line)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        await self.queue.put(None)

    async def _next(self, timeout: float = RESPONSE_TIMEOUT) -> bytes | None:
        if not self.queue.empty():  # the common case, without a timer
            return self.queue.get_nowait()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            self.model.bad("", f"no response within {timeout:.0f} s")
            raise Closed("timeout") from None

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.world.log(self.name, "C:", data)
        self.writer.write(data)

    def next_tag(self) -> str:
        self.counter += 1
        return f"{self.name}.{self.counter}"

    async def command(
        self, text: str, literal: bytes | None = None, target: str | None = None
    ) -> str:
        """Send one command (a LITERAL+ literal appended), check every response; status."""
        tag = self.next_tag()
        self.model.begin(tag, text, target)
        if literal is None:
            self.send(f"{tag} {text}\r\n".encode())
        else:
            self.send(f"{tag} {text} {{{len(literal)}+}}\r\n".encode() + literal + b"\r\n")
        return await self._until_tagged(tag)

    async def _until_tagged(self, tag: str) -> str:
        want = tag.encode() + b" "
        while True:
            line = await self._next()
            if line is None:
                self.model.closed()
                raise Closed("closed")
            if line.startswith(want) or _TAGGED.match(line):
                return self.model.tagged(line)
            self.model.untagged(line)

    async def idle(self, seconds: float) -> str:
        tag = self.next_tag()
        self.model.begin(tag, "IDLE")
        self.send(f"{tag} IDLE\r\n".encode())
        while True:
            line = await self._next()
            if line is None:
                self.model.closed()
                raise Closed("closed")
            if line.startswith(b"+"):
                break
            if _TAGGED.match(line):
                return self.model.tagged(line)
            self.model.untagged(line)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(self.queue.get(), left)
            except TimeoutError:
                break
            if line is None:
                self.model.closed()
                raise Closed("closed")
            self.model.untagged(line)
        self.send(b"DONE\r\n")
        return await self._until_tagged(tag)

    async def logout(self) -> None:
        """LOGOUT; then the server must close the connection, sending nothing more."""
        await self.command("LOGOUT")
        try:
            line = await asyncio.wait_for(self.queue.get(), 10)
        except TimeoutError:
            self.model.bad("", "connection still open 10 s after LOGOUT")
            line = None
        if line is not None:
            self.model.bad(line, "data after LOGOUT's tagged OK")
        self.abort()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.reader_task is not None:
            self.reader_task.cancel()
        self.model.state = "closed"
