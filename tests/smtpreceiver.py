"""A local SMTP receiver for the outgoing-mail tests: Twisted's SMTP server in a subprocess
that records what it accepts, one ``<n>.json`` (``{"from": ..., "to": ...}``, written
last) and ``<n>.eml`` per recipient, under a directory.

Recipients whose local part starts with ``refuse`` get 550, ``later`` 451.

``python tests/smtpreceiver.py DIR PORT`` serves on 127.0.0.1:PORT and prints ``ready``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HANG = 30.0


@dataclass
class Received:
    sender: str
    recipient: str
    message: bytes


@dataclass
class SMTPReceiver:
    """The receiver process on ``port`` recording under ``root``."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"tcp:127.0.0.1:{self.port}:timeout=5"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.root), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == b"ready", line + self.proc.stdout.read()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(HANG)
            self.proc = None

    def received(self) -> list[Received]:
        found = []
        for envelope in sorted(self.root.glob("*.json"), key=lambda p: int(p.stem)):
            given = json.loads(envelope.read_text())
            data = envelope.with_suffix(".eml").read_bytes()
            found.append(Received(given["from"], given["to"], data))
        return found

    def wait_for(self, count: int) -> list[Received]:
        """The first ``count`` messages, once they came (the hang bound fails the test)."""
        deadline = time.monotonic() + HANG
        while time.monotonic() < deadline:
            found = self.received()
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} messages expected, got {self.received()}")


def _serve(root: str, port: int) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import succeed
    from twisted.mail import smtp
    from zope.interface import implementer

    numbers = itertools.count(1)

    @implementer(smtp.IMessage)
    class Recorded:
        def __init__(self, sender: str, recipient: str) -> None:
            self.sender, self.recipient = sender, recipient
            self.lines: list[bytes] = []

        def lineReceived(self, line: bytes) -> None:
            self.lines.append(line.removesuffix(b"\r"))

        def eomReceived(self) -> Any:
            base = os.path.join(root, str(next(numbers)))
            with open(base + ".eml", "wb") as f:
                f.write(b"".join(line + b"\r\n" for line in self.lines))
            with open(base + ".json.tmp", "w") as f:
                json.dump({"from": self.sender, "to": self.recipient}, f)
            os.rename(base + ".json.tmp", base + ".json")
            return succeed(None)

        def connectionLost(self) -> None:
            pass

    @implementer(smtp.IMessageDelivery)
    class Delivery:
        def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> None:
            return None

        def validateFrom(self, helo: Any, origin: Any) -> Any:
            return origin

        def validateTo(self, user: Any) -> Any:
            recipient = str(user.dest)
            if recipient.startswith("refuse"):
                raise smtp.SMTPBadRcpt(user)
            if recipient.startswith("later"):
                raise smtp.SMTPBadRcpt(user, 451, "4.2.0 Try again later")
            return lambda: Recorded(str(user.orig), recipient)

    class Factory(smtp.SMTPFactory):
        protocol = smtp.ESMTP

        def buildProtocol(self, addr: Any) -> Any:
            built = super().buildProtocol(addr)
            built.delivery = Delivery()
            return built

    factory = Factory()
    reactor.listenTCP(port, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    print("ready", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
