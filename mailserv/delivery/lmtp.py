"""The LMTP service (RFC 2033): an MTA hands messages over, one reply per recipient.

Commands: LHLO, MAIL FROM (``SIZE=``, ``BODY=7BIT|8BITMIME``), RCPT TO, DATA, RSET, NOOP,
QUIT; HELO and EHLO are refused with 500 as RFC 2033 4.1 recommends.  Advertised:
PIPELINING, ENHANCEDSTATUSCODES, SIZE (the server's APPENDLIMIT, ``max_literal``) and
8BITMIME.  After the message's final dot the server answers once per recipient accepted at
RCPT, in their order (RFC 2033 4.2), each as :class:`mailserv.delivery.deliver.Deliverer`
decided.

Bounds: a command line of ``MAX_COMMAND_LINE`` octets, a message of ``max_literal``
(552 5.3.4, the rest of it read and dropped), ``MAX_RECIPIENTS`` per transaction,
``preauth_timeout`` seconds of silence (LMTP has no sign-in; the MTA is trusted by where
it connects from: bind the listener to loopback or a unix socket; silence is answered
``421 4.4.2`` and the connection closed), ``MAX_ERRORS`` bad commands.  Connections count
against ``max_connections`` and ``max_connections_per_address`` together with the IMAP
server's (the same counter: with ``--workers``, the master's); one over a bound is told
``421 4.3.2`` and closed.  While a command waits for the store (a user lookup, the deliveries) the
connection is not read (TCP backpressure); pipelined commands wait in the buffer.

The message is unstuffed and searched for its final dot as it arrives (:class:`_Message`),
each read's worth at a time, so a big message never holds the reactor for longer than one
read takes to scan: at the final dot only what came last is looked at.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from mailserv.delivery.deliver import TOO_BIG, Deliverer, Outcome, Recipient
from mailserv.imap.admission import ConnectionCounter, IConnectionLimits, Refused, admitted
from mailserv.imap.settings import ServerSettings

__all__ = ["LMTPFactory", "LMTPServer"]

_log = Logger()

MAX_COMMAND_LINE = 4096
"""Octets in one command line (RFC 5321 4.5.3.1.4 asks for at least 512)."""
MAX_RECIPIENTS = 1000
"""Recipients in one transaction (RFC 5321 4.5.3.1.8 asks for at least 100)."""
MAX_ERRORS = 20
"""Bad commands on one connection before it is closed."""
JOIN_IN_THREAD = 1 << 20
"""Octets of text from which a message's pieces are joined in a thread."""
_END = b"\r\n.\r\n"
"""The line of a single dot that ends DATA, with the end of the line before it."""
EMPTY = Outcome(554, "5.6.0", "Empty message")


class LMTPFactory(ServerFactory):
    """One :class:`LMTPServer` per connection, all delivering through ``deliverer``;
    ``limits`` counts the connections (pass the IMAP factory's, so both count together;
    default: a count of this factory's own)."""

    def __init__(
        self,
        deliverer: Deliverer,
        settings: ServerSettings,
        clock: IReactorTime,
        hostname: str | None = None,
        limits: IConnectionLimits | None = None,
    ) -> None:
        self.deliverer = deliverer
        self.settings = settings
        self.clock = clock
        self.hostname = hostname or socket.gethostname() or "localhost"
        self.ids = itertools.count(1)
        self.connections: IConnectionLimits = limits or ConnectionCounter(settings)

    def buildProtocol(self, addr: Any) -> Protocol:
        return admitted(self.connections, addr, self._decided)

    def _decided(self, address: str, refusal: str | None) -> Protocol:
        if refusal is not None:
            _log.info(
                "Refused an LMTP connection from {address}: {why}", address=address, why=refusal
            )
            close_timeout = self.settings.close_timeout
            return Refused(refusal, self.clock, close_timeout, prefix=b"421 4.3.2 ")
        protocol = LMTPServer(self, address)
        protocol.factory = self
        return protocol


class _Transaction:
    """One mail transaction: MAIL FROM's sender and the recipients RCPT accepted."""

    def __init__(self, sender: str) -> None:
        self.sender = sender
        self.recipients: list[Recipient] = []


class LMTPServer(Protocol, TimeoutMixin):
    def __init__(self, factory: LMTPFactory, address: str) -> None:
        self.lmtp = factory
        self._address = address
        """Where the connection comes from, as it was counted (released when it closes)."""
        self.max_message = factory.settings.max_literal
        self._buffer = bytearray()
        self._message: _Message | None = None
        """In DATA: the message so far."""
        self._skipping = False
        """Dropping a too long command line up to its end."""
        self._busy = False
        self._closed = False
        self._greeted: str | None = None
        self._transaction: _Transaction | None = None
        self._errors = 0
        self._peer = ""

    # -- connection ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self._peer = str(getattr(peer, "host", None) or getattr(peer, "name", None) or "local")
        self.setTimeout(self.lmtp.settings.preauth_timeout)
        self._send(f"220 {self.lmtp.hostname} LMTP mailserv ready\r\n")

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        """TimeoutMixin's clock: the factory's."""
        return self.lmtp.clock.callLater(period, func)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self.setTimeout(None)
        self.lmtp.connections.release(self._address)

    def timeoutConnection(self) -> None:
        self._send("421 4.4.2 Idle too long; closing the connection\r\n")
        self._close()

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self._message is not None and not self._busy:
            self._message_part(data)
        else:
            self._buffer += data
        self._drain()

    def _send(self, text: str | bytes) -> None:
        if self._closed or self.transport is None:
            return
        self.transport.write(text.encode("utf-8", "replace") if isinstance(text, str) else text)

    def _close(self) -> None:
        self._closed = True
        if self.transport is not None:
            self.transport.loseConnection()

    # -- input --------------------------------------------------------------------------

    def _drain(self) -> None:
        """Handle what is buffered, until a command has to wait for the store."""
        while not self._busy and not self._closed and self._message is None:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_COMMAND_LINE:
                    del self._buffer[:]
                    if not self._skipping:
                        self._skipping = True
                        self._error("500 5.5.2 Line too long")
                return
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > MAX_COMMAND_LINE:
                self._error("500 5.5.2 Line too long")
                continue
            self._command(line)

    def _message_part(self, data: bytes) -> None:
        """In DATA: take ``data`` in; at the final dot, hand the message on."""
        message = self._message
        assert message is not None
        if not message.take(data):
            return
        self._message = None
        self._buffer[:0] = message.rest
        if message.oversize:
            self._wait(self._finish([], 0, TOO_BIG))
        elif message.size == 0:
            self._wait(self._finish([], 0, EMPTY))
        else:
            self._wait(self._finish(message.pieces, message.size, None))

    def _wait(self, work: Awaitable[None]) -> None:
        """Run ``work``; while it waits, read nothing (the buffer keeps what came)."""

        async def run() -> None:
            await work

        done = Deferred.fromCoroutine(run())
        if done.called:
            done.addErrback(self._internal_error)
            return
        self._busy = True
        self.setTimeout(None)
        self.transport.pauseProducing()  # type: ignore[union-attr]
        done.addErrback(self._internal_error)
        done.addBoth(self._resume)

    def _resume(self, _: object) -> None:
        self._busy = False
        if self._closed:
            return
        self.setTimeout(self.lmtp.settings.preauth_timeout)
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self._drain()

    def _internal_error(self, failure: Failure) -> None:
        _log.failure("LMTP command failed; closing the connection", failure)
        self._send("421 4.3.0 Internal error; closing the connection\r\n")
        self._close()

    def _error(self, reply: str) -> None:
        self._errors += 1
        self._send(reply + "\r\n")
        if self._errors >= MAX_ERRORS:
            self._send("421 4.7.0 Too many errors; closing the connection\r\n")
            self._close()

    # -- commands -----------------------------------------------------------------------

    def _command(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._error("500 5.5.2 Command line is not UTF-8")
            return
        verb, _, argument = text.partition(" ")
        handler = self._handlers().get(verb.upper())
        if handler is None:
            if verb.upper() in ("HELO", "EHLO"):
                self._error("500 5.5.1 This is LMTP (RFC 2033): say LHLO")
            else:
                self._error("500 5.5.2 Command unrecognized")
            return
        handler(argument.strip())

    def _handlers(self) -> dict[str, Callable[[str], None]]:
        return {
            "LHLO": self._lhlo,
            "MAIL": self._mail,
            "RCPT": self._rcpt,
            "DATA": self._data,
            "RSET": self._rset,
            "NOOP": self._noop,
            "QUIT": self._quit,
            "VRFY": self._vrfy,
        }

    def _lhlo(self, argument: str) -> None:
        if not argument:
            self._error("501 5.5.4 LHLO needs the client's name")
            return
        # It goes into the Received header: printable ASCII only, and not too long.
        self._greeted = "".join(c if " " < c < "\x7f" else "?" for c in argument[:255])
        self._transaction = None
        self._send(
            f"250-{self.lmtp.hostname}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
            f"250-SIZE {self.max_message}\r\n250 8BITMIME\r\n"
        )

    def _mail(self, argument: str) -> None:
        if self._greeted is None:
            self._error("503 5.5.1 Say LHLO first")
            return
        if self._transaction is not None:
            self._error("503 5.5.1 Nested MAIL command")
            return
        parsed = _path(argument, "FROM:")
        if parsed is None:
            self._error("501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=8BITMIME]")
            return
        sender, params = parsed
        for name, value in params.items():
            if name == "SIZE":
                if not value.isdigit():
                    self._error("501 5.5.4 SIZE takes a number")
                    return
                if int(value) > self.max_message:
                    self._error(f"552 5.3.4 Message too big (the limit is {self.max_message})")
                    return
            elif name == "BODY":
                if value.upper() not in ("7BIT", "8BITMIME"):
                    self._error("501 5.5.4 BODY is 7BIT or 8BITMIME")
                    return
            else:
                self._error(f"555 5.5.4 Unsupported parameter {name}")
                return
        self._transaction = _Transaction(sender)
        self._send("250 2.1.0 Sender OK\r\n")

    def _rcpt(self, argument: str) -> None:
        transaction = self._transaction
        if transaction is None:
            self._error("503 5.5.1 Need MAIL before RCPT")
            return
        parsed = _path(argument, "TO:")
        if parsed is None or not parsed[0]:
            self._error("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        address, params = parsed
        if params:
            self._error(f"555 5.5.4 Unsupported parameter {next(iter(params))}")
            return
        if len(transaction.recipients) >= MAX_RECIPIENTS:
            self._send("452 4.5.3 Too many recipients\r\n")
            return
        self._wait(self._resolve(transaction, address))

    async def _resolve(self, transaction: _Transaction, address: str) -> None:
        try:
            recipient = await self.lmtp.deliverer.resolve(address)
        except Exception:  # noqa: BLE001 - the user store failed: the MTA tries again later
            _log.failure("Looking up the recipient {address} failed", address=address)
            self._send("451 4.3.0 Cannot look the recipient up now; try again later\r\n")
            return
        if recipient is None:
            self._send(f"550 5.1.1 <{address}>: no such user here\r\n")
            return
        transaction.recipients.append(recipient)
        self._send("250 2.1.5 Recipient OK\r\n")

    def _data(self, argument: str) -> None:
        transaction = self._transaction
        if transaction is None:
            self._error("503 5.5.1 Need MAIL before DATA")
            return
        if not transaction.recipients:
            self._error("503 5.5.1 No valid recipients")
            return
        self._message = _Message(self._trace(transaction.sender), self.max_message)
        self._send("354 2.0.0 Send the message; end with <CRLF>.<CRLF>\r\n")
        early, self._buffer = self._buffer, bytearray()
        if early:
            self._message_part(bytes(early))

    async def _finish(self, pieces: list[bytes], size: int, refused: Outcome | None) -> None:
        """Deliver the message (its ``pieces``, ``size`` octets of text after the trace
        headers) to each recipient, or answer ``refused`` for each."""
        transaction = self._transaction
        self._transaction = None
        assert transaction is not None
        recipients = transaction.recipients
        if refused is not None:
            outcomes: list[Outcome] = [refused] * len(recipients)
        else:
            message = await _joined(pieces, size)
            deliverer = self.lmtp.deliverer
            outcomes = await gatherResults(
                [
                    Deferred.fromCoroutine(deliverer.deliver(r, message, transaction.sender))
                    for r in recipients
                ]
            )
        self._send(b"".join(outcome.reply() for outcome in outcomes))

    def _trace(self, sender: str) -> bytes:
        """Return-Path (RFC 5321 4.4, added at final delivery) and Received headers (made
        at DATA; the message's text follows them)."""
        number = next(self.lmtp.ids)
        return (
            f"Return-Path: <{sender}>\r\n"
            f"Received: from {self._greeted} ({self._peer})\r\n"
            f"\tby {self.lmtp.hostname} (mailserv) with LMTP id {number};\r\n"
            f"\t{formatdate(localtime=True)}\r\n"
        ).encode("utf-8", "replace")

    def _rset(self, argument: str) -> None:
        self._transaction = None
        self._send("250 2.0.0 OK\r\n")

    def _noop(self, argument: str) -> None:
        self._send("250 2.0.0 OK\r\n")

    def _vrfy(self, argument: str) -> None:
        self._send("252 2.5.0 Cannot verify; send the message and RCPT will say\r\n")

    def _quit(self, argument: str) -> None:
        self._send(f"221 2.0.0 {self.lmtp.hostname} closing the connection\r\n")
        self._close()


class _Message:
    """DATA's text, taken in as it arrives: each line's leading dot removed (RFC 5321
    4.5.2), up to the line of a single dot.  The work done for each piece is proportional
    to its length: what was taken in before is not looked at again.

    The text is kept, in pieces, after ``head`` (the trace headers); past ``limit`` octets
    it is dropped (``oversize``) while the final dot is still looked for.
    """

    def __init__(self, head: bytes, limit: int) -> None:
        assert head.endswith(b"\r\n")
        self.pieces = [head[:-2]]
        self.size = -2
        """Octets of the text kept (the head's last CRLF, kept first, brings it to 0)."""
        self._limit = limit
        self._carry = b"\r\n"
        """What was not decided yet: the start of a line that may be the final dot.  At
        first, the head's last CRLF: the text's first line starts a line too."""
        self.oversize = False
        self.rest = b""
        """Once the final dot came: what followed it (the next commands)."""

    def take(self, data: bytes) -> bool:
        """Take ``data`` in; True once the final dot came (``rest`` holds what followed)."""
        buf = self._carry + data
        end = buf.find(_END)
        if end >= 0:  # the CRLF before the dot ends the text
            self._keep(buf[: end + 2])
            self.rest = buf[end + len(_END) :]
            return True
        # Keep back an end that may have begun: what the next read decides.
        hold = next((n for n in range(len(_END) - 1, 0, -1) if buf.endswith(_END[:n])), 0)
        self._carry = buf[len(buf) - hold :]
        self._keep(buf[: len(buf) - hold])
        return False

    def _keep(self, lines: bytes) -> None:
        """Keep ``lines`` (none of them the final dot, whole up to where the next begins)."""
        if self.oversize:
            return
        lines = lines.replace(b"\r\n.", b"\r\n")
        self.size += len(lines)
        if self.size > self._limit:
            self.oversize = True
            del self.pieces[1:]
            return
        self.pieces.append(lines)


async def _joined(pieces: list[bytes], size: int) -> bytes:
    """One message of its pieces; a big one joined in a thread (``bytes.join`` lets the
    reactor's thread run meanwhile), as a copy of ``JOIN_IN_THREAD`` octets takes ~1 ms."""
    if size < JOIN_IN_THREAD:
        return b"".join(pieces)
    joined: bytes = await deferToThread(b"".join, pieces)
    return joined


def _path(argument: str, keyword: str) -> tuple[str, dict[str, str]] | None:
    """``FROM:<address> PARAM=value ...`` → (address, {PARAM: value}); None if malformed."""
    if argument[: len(keyword)].upper() != keyword:
        return None
    rest = argument[len(keyword) :].lstrip()
    if not rest.startswith("<"):
        return None
    close = rest.find(">")
    if close < 0:
        return None
    address = rest[1:close]
    if any(c in address for c in "<> \t") or any(ord(c) < 32 for c in address):
        return None
    params: dict[str, str] = {}
    for word in rest[close + 1 :].split():
        name, _, value = word.partition("=")
        params[name.upper()] = value
    return address, params
