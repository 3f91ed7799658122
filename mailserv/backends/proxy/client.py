"""A compact IMAP client protocol on Twisted: one command at a time, untagged data routed.

Why our own rather than ``twisted.mail.imap4.IMAP4Client``: we need UID-only commands with
CONDSTORE/QRESYNC data, IDLE that stays open between our commands, LITERAL+, ESEARCH, and
the raw bytes of ``BODY[]`` without a second parse; the Twisted client decodes every
response into its own structures and offers none of these.  This module frames responses
(lines and literals, with bounds), parses them with :mod:`wire`, and hands every untagged
response to the running command's handler, else to ``on_untagged``.  A command that sees
no data from the upstream for ``timeout`` seconds fails with ``BackendUnavailable`` and
drops the connection, so a hung upstream costs a bounded wait.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailserv.backends.proxy import wire
from mailserv.backends.proxy.wire import Arg, Literal, Response
from mailserv.errors import BackendUnavailable, BinaryNotStored
from mailserv.slicing import Turns

_log = Logger()

_LITERAL_END = re.compile(rb"~?\{(\d+)\}$")
MAX_LINE = 1 << 22
"""Longest response line we accept without literals (a SEARCH of many UIDs fits)."""
MAX_LITERAL = 1 << 30
CHECK_EVERY = 32
"""Responses dispatched between two looks at the clock."""

Handler = Callable[[Response], bool]
"""Sees an untagged response during a command; True when it consumed it."""


class CommandFailed(Exception):
    """The upstream answered NO or BAD; ``response`` is the tagged line."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"{response.kind} {response.text}")
        self.response = response


class _Pending:
    __slots__ = ("continuation", "done", "handler", "tag")

    def __init__(self, tag: str, handler: Handler | None) -> None:
        self.tag = tag
        self.handler = handler
        self.done: Deferred[Response] = Deferred()
        self.continuation: Deferred[Response] | None = None


class UpstreamProtocol(Protocol):
    """One connection to the upstream server."""

    def __init__(
        self, clock: IReactorTime, timeout: float, label: str, turns: Turns | None = None
    ) -> None:
        self.clock = clock
        self.turns = turns if turns is not None else Turns(clock)
        """The reactor's turns, whose budget big answers are handled in (the backend's,
        shared with the sessions' long commands)."""
        self.timeout = timeout
        self.label = label
        self.capabilities: frozenset[str] = frozenset()
        self.enabled: frozenset[str] = frozenset()
        self.greeting: Deferred[Response] = Deferred()
        self.on_untagged: Callable[[Response], None] | None = None
        self.on_lost: Callable[[str], None] | None = None
        self.lost_reason: str | None = None
        self.selected: str | None = None
        """The upstream mailbox name selected on this connection (set by its users)."""
        self._tags = (f"p{n}" for n in itertools.count(1))
        self._lock = DeferredLock()
        self._pending: _Pending | None = None
        self._pipelined: dict[str, _Pending] = {}
        """Commands of :meth:`pipeline` not answered yet, by tag."""
        self._buffer = b""
        self._parts: list[bytes] = []
        self._literals: list[bytes] = []
        self._need = 0
        self._chunks: list[bytes] = []
        self._watchdog: IDelayedCall | None = None
        self._later: Deferred[None] | None = None
        """Set while a big input waits for a later turn: the rest is in ``_buffer``."""
        self._bye: str | None = None
        self._closing = False

    # -- connection -----------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Commands are small and answered one by one: Nagle's algorithm would hold a
        command back until the previous segment is acknowledged (up to a delayed ACK)."""
        transport: object = self.transport
        while transport is not None:
            set_no_delay = getattr(transport, "setTcpNoDelay", None)
            if callable(set_no_delay):
                set_no_delay(True)
                break
            transport = getattr(transport, "transport", None)  # under a TLS wrapper
        self._arm()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._disarm()
        if self._later is not None:  # what arrived before the loss is answered first
            later, self._later = self._later, None
            later.cancel()
            self._consume(sliced=False)
        text = self._bye or _describe(reason)
        self.lost_reason = text
        error = BackendUnavailable(f"upstream connection lost: {text}")
        if not self.greeting.called:
            self.greeting.errback(Failure(error))
        pending, self._pending = self._pending, None
        if pending is not None:
            if pending.continuation is not None and not pending.continuation.called:
                pending.continuation.errback(Failure(error))
            if not pending.done.called:
                pending.done.errback(Failure(error))
        pipelined, self._pipelined = self._pipelined, {}
        for waiting in pipelined.values():
            waiting.done.errback(Failure(error))
        if self.on_lost is not None:
            self.on_lost(text)

    @property
    def alive(self) -> bool:
        return self.lost_reason is None and self.transport is not None and not self._closing

    def close(self) -> None:
        """Close (from the next reactor turn: never inside the transport's own callbacks)."""
        self._closing = True
        self.clock.callLater(0, self._close, False)

    def abort(self, reason: str) -> None:
        """Drop the connection at once, failing what waits on it with ``reason``."""
        self._bye = self._bye or reason
        self._closing = True
        self.clock.callLater(0, self._close, True)

    def _close(self, abort: bool) -> None:
        if self.transport is None or self.lost_reason is not None:
            return
        if abort:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        else:
            self.transport.loseConnection()

    async def logout(self) -> None:
        """LOGOUT, then close; errors are of no interest at that point."""
        if not self.alive:
            return
        try:
            await self.command(b"LOGOUT")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.close()

    # -- the watchdog ---------------------------------------------------------------------

    def _arm(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.reset(self.timeout)
        else:
            self._watchdog = self.clock.callLater(self.timeout, self._expired)

    def _disarm(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def _expired(self) -> None:
        self._watchdog = None
        _log.warn(
            "Upstream {label} sent nothing for {timeout} s; dropping the connection",
            label=self.label,
            timeout=self.timeout,
        )
        self.abort(f"no answer within {self.timeout:g} s")

    # -- input ----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._watchdog is not None:
            self._arm()
        self._buffer = self._buffer + data if self._buffer else data
        if self._later is None:
            self._consume()

    def _consume(self, sliced: bool = True) -> None:
        """Frame and dispatch what is buffered.  A big answer (a STORE or FETCH of 100k
        messages is megabytes of FETCH lines) is handled within the budget of the reactor's
        ``turns``: the rest waits for a later turn, the transport paused, while the reactor
        serves everyone else.  The budget is the turn's, not the call's: under TLS one read
        from the socket arrives as a call per TLS record (16-39 calls for 64 KiB), and every
        call with a slice of its own held the reactor for tens of milliseconds."""
        turns = self.turns
        if sliced and self._buffer and not turns.fits(turns.now()):
            self._wait_for_turn()
            return
        data, self._buffer = self._buffer, b""
        pos = 0
        size = len(data)
        count = 0
        while pos < size:
            if self._need:
                take = min(self._need, size - pos)
                self._chunks.append(data[pos : pos + take])
                pos += take
                self._need -= take
                if self._need:
                    break
                self._literals.append(b"".join(self._chunks))
                self._chunks = []
                continue
            end = data.find(b"\r\n", pos)
            if end < 0:
                if size - pos > MAX_LINE:
                    self.abort("response line too long")
                    return
                self._buffer = data[pos:]
                break
            line = data[pos:end]
            pos = end + 2
            self._parts.append(line)
            if line.endswith(b"}"):
                match = _LITERAL_END.search(line)
                if match is not None:
                    need = int(match.group(1))
                    if need > MAX_LITERAL:
                        self.abort("literal too large")
                        return
                    if need == 0:
                        self._literals.append(b"")
                    self._need = need
                    continue
            parts, literals = self._parts, self._literals
            self._parts, self._literals = [], []
            try:
                self._dispatch(wire.parse(parts, literals))
            except wire.ResponseError as exc:
                self.abort(f"unparsable response ({exc})")
                return
            count += 1
            if sliced and count % CHECK_EVERY == 0 and pos < size and not turns.fits(turns.now()):
                self._buffer = data[pos:]
                self._wait_for_turn()
                return

    def _wait_for_turn(self) -> None:
        """Go on with ``_buffer`` in a later turn; read nothing more meanwhile."""
        self._later = later = self.turns.wait()
        later.addCallbacks(self._go_on, lambda _: None)  # cancelled: the connection went
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def _go_on(self, _: object = None) -> None:
        self._later = None
        self._consume()
        if self._later is None and self.transport is not None and self.lost_reason is None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def _dispatch(self, response: Response) -> None:
        pending = self._pending
        tag = response.tag
        if tag == "*":
            kind = response.kind
            if kind == "CAPABILITY":
                self.capabilities = _names(response.data)
            elif kind == "BYE":
                self._bye = f"upstream said BYE: {response.text}"
            elif kind in ("OK", "PREAUTH") and not self.greeting.called:
                if response.code == "CAPABILITY":
                    self.capabilities = _names(response.code_data)
                self._disarm()
                self.greeting.callback(response)
                return
            elif kind == "ENABLED":
                self.enabled = self.enabled | _names(response.data)
            if pending is not None and pending.handler is not None and pending.handler(response):
                return
            if self.on_untagged is not None:
                self.on_untagged(response)
            return
        if tag == "+":
            if pending is not None and pending.continuation is not None:
                waiter, pending.continuation = pending.continuation, None
                waiter.callback(response)
            return
        if pending is None or tag != pending.tag:
            waiting = self._pipelined.pop(tag, None)
            if waiting is not None:
                if not self._pipelined:
                    self._disarm()
                waiting.done.callback(response)
                return
            _log.warn("Upstream {label}: unexpected tagged response", label=self.label)
            return
        self._pending = None
        self._disarm()
        if response.code == "CAPABILITY":
            self.capabilities = _names(response.code_data)
        pending.done.callback(response)

    # -- commands -------------------------------------------------------------------------

    async def command(self, *args: Arg, handler: Handler | None = None) -> Response:
        """Send ``args`` joined by spaces; the tagged OK, or CommandFailed for NO/BAD."""
        return await self.exchange(*args, replies=(), handler=handler)

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Response]:
        """Send ``commands`` together (no literals, no untagged handlers: what they bring
        goes to ``on_untagged``) and wait for every tagged answer; each command's answer,
        OK or not, in order.  The upstream works through them without a round trip
        between two."""
        await self._lock.acquire()
        try:
            if not self.alive:
                raise BackendUnavailable(f"upstream connection lost: {self.lost_reason}")
            waiting = []
            lines = []
            for args in commands:
                if any(isinstance(arg, Literal) for arg in args):
                    raise ValueError("a pipelined command has no literal")
                pending = _Pending(next(self._tags), None)
                waiting.append(pending)
                lines.append(_line(pending.tag, args))
            self._pipelined.update((pending.tag, pending) for pending in waiting)
            self._write(b"".join(lines))
            try:
                return [await pending.done for pending in waiting]
            except BaseException:  # the connection was lost: each of them fails alike
                for pending in waiting:
                    pending.done.addErrback(lambda _: None)
                raise
        finally:
            self._lock.release()

    async def exchange(
        self, *args: Arg, replies: Sequence[bytes], handler: Handler | None = None
    ) -> Response:
        """A command that answers continuations (``+``) with ``replies``, one line each."""
        await self._lock.acquire()
        try:
            pending = await self._send(args, handler, expect_continuation=bool(replies))
            for index, reply in enumerate(replies):
                if index:
                    await self._continue(pending)
                self._write(reply + b"\r\n")
            response = await pending.done
        finally:
            self._lock.release()
        if response.kind != "OK":
            raise CommandFailed(response)
        return response

    async def start_idle(self, handler: Handler | None = None) -> Deferred[Response]:
        """Send IDLE and wait for the continuation; the Deferred fires after :meth:`done`.

        The command lock is held until the IDLE ends, so other commands wait for it.
        """
        await self._lock.acquire()
        try:
            pending = await self._send((b"IDLE",), handler, expect_continuation=True)
        except BaseException:
            self._lock.release()
            raise
        self._disarm()  # an idle upstream is silent by design

        def finished(result: Any) -> Any:
            self._lock.release()
            return result

        pending.done.addBoth(finished)
        return pending.done

    def done(self) -> None:
        """End a running IDLE."""
        if self.alive:
            self.transport.write(b"DONE\r\n")  # type: ignore[union-attr]
            self._arm()

    async def _send(
        self, args: Sequence[Arg], handler: Handler | None, expect_continuation: bool = False
    ) -> _Pending:
        if not self.alive:
            raise BackendUnavailable(f"upstream connection lost: {self.lost_reason}")
        binary = "BINARY" in self.capabilities
        if not binary and any(isinstance(a, Literal) and b"\x00" in a.data for a in args):
            raise BinaryNotStored("The upstream server cannot store content with NUL octets")
        pending = _Pending(next(self._tags), handler)
        self._pending = pending
        try:
            plus = "LITERAL+" in self.capabilities
            chunk = [pending.tag.encode()]
            glue = False  # no space after "(" nor before ")"
            for arg in args:
                space = b"" if glue else b" "
                if isinstance(arg, Literal):
                    glue = False
                    if binary and b"\x00" in arg.data:
                        space += b"~"  # a literal8 (RFC 3516) keeps the NULs
                    if plus:
                        chunk.append(space + b"{%d+}\r\n" % len(arg.data) + arg.data)
                        continue
                    chunk.append(space + b"{%d}\r\n" % len(arg.data))
                    self._write(b"".join(chunk))
                    await self._continue(pending)
                    chunk = [arg.data]
                else:
                    if arg.startswith(b")"):
                        space = b""
                    chunk.append(space + arg)
                    glue = arg.endswith(b"(")
            chunk.append(b"\r\n")
            if expect_continuation:
                self._write(b"".join(chunk))
                await self._continue(pending)
            else:
                self._write(b"".join(chunk))
        except BaseException:
            pending.done.addErrback(lambda _: None)
            raise
        return pending

    async def _continue(self, pending: _Pending) -> None:
        """Wait for ``+``; a tagged answer instead (a refusal) ends the command."""
        either: Deferred[Response | None] = Deferred()
        pending.continuation = Deferred()

        def plus(result: object) -> None:
            if not either.called:
                if isinstance(result, Failure):
                    either.errback(result)
                else:
                    either.callback(None)

        def tagged(result: object) -> object:
            if not either.called:
                if isinstance(result, Failure):
                    either.errback(result)
                else:
                    either.callback(result)  # type: ignore[arg-type]
            return result

        pending.continuation.addBoth(plus)
        pending.done.addBoth(tagged)
        refusal = await either
        if refusal is not None:
            raise CommandFailed(refusal)

    def _write(self, data: bytes) -> None:
        self._arm()
        self.transport.write(data)  # type: ignore[union-attr]


def _line(tag: str, args: Sequence[Arg]) -> bytes:
    """A command line of atoms, strings and lists (no literals)."""
    chunk = [tag.encode()]
    glue = False
    for arg in args:
        assert not isinstance(arg, Literal)
        chunk.append(arg if glue or arg.startswith(b")") else b" " + arg)
        glue = arg.endswith(b"(")
    chunk.append(b"\r\n")
    return b"".join(chunk)


def _names(values: Sequence[object]) -> frozenset[str]:
    return frozenset(str(v).upper() for v in values if isinstance(v, (str, int)))


def _describe(reason: Failure) -> str:
    """A one-line account of why a connection ended (TLS verification spelled out)."""
    value = reason.value
    name = type(value).__name__
    text = reason.getErrorMessage()
    if name == "VerificationError":
        return f"TLS certificate does not match the host name ({text})"
    if "certificate verify failed" in text or (name == "Error" and "SSL" in repr(value)):
        return f"TLS handshake failed ({text})"
    return text or name
