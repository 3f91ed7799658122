"""A ManageSieve client on a plain socket, for what a client library would never send
(and for connections from another loopback address, which sievelib cannot open)."""

from __future__ import annotations

import socket

from bench.harness import HOST

HANG = 30.0


class Raw:
    """A plain socket to ``port`` (from ``source``, a loopback address, if given); the
    greeting (capabilities, then OK, or a BYE alone) read into ``greeting``."""

    def __init__(self, port: int, source: str | None = None, admitted: bool = True) -> None:
        bind = (source, 0) if source else None
        self.sock = socket.create_connection((HOST, port), timeout=HANG, source_address=bind)
        self.buffer = b""
        self.greeting = self.until_status()
        if admitted:
            assert self.greeting[-1].startswith(b"OK"), self.greeting

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed; had {self.buffer!r}"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def until_status(self) -> list[bytes]:
        lines = [self.line()]
        while not lines[-1].startswith((b"OK", b"NO", b"BYE")):
            lines.append(self.line())
        return lines

    def ask(self, command: bytes) -> bytes:
        self.sock.sendall(command + b"\r\n")
        return self.until_status()[-1]

    def closed(self) -> bool:
        """Whether the server closed the connection (after what it sent)."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return True
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()
