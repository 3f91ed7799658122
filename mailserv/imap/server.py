"""The IMAP server protocol: frames input, runs commands in order, writes responses.

Commands are parsed as soon as they arrive (so a synchronizing literal gets its ``+`` at
once) and run one at a time, in order, each to its tagged reply: pipelined commands are
answered in order even when the backend answers late; a command whose spec says so
(APPEND) runs together with the same commands queued right after it, each still answered
on its own (``CommandSpec.batching``).  Untagged updates from other sessions are flushed
when a command ends, or at once while IDLE.

Flow control both ways: while ``max_pipelined`` commands (or ``max_queued_bytes``) wait,
input is left unparsed in the framer and the transport stops reading, so a client that
pipelines without limit is slowed by TCP, never refused; while the transport's write
buffer is full (a client that does not read), no further command starts.  A command's
responses go out in one write when it ends (big FETCH output in 64 KiB writes).
"""

from __future__ import annotations

import ipaddress
import time
import zlib
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IDelayedCall, IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from mailserv import errors
from mailserv.imap import capabilities
from mailserv.imap.commands import Batching, CommandSpec
from mailserv.imap.compression import PER_TURN, DeflatingTransport, Inflater
from mailserv.imap.framer import CommandFramer, ContinueLiteral, Frame, FrameError, Line
from mailserv.imap.hangup import hang_up, set_no_delay
from mailserv.imap.replies import Bad, CommandFailure, Reply, backend_text, tagged
from mailserv.imap.session import State
from mailserv.quota import QuotaLimits
from mailserv.syntax.errors import ParseError
from mailserv.syntax.lexer import parse_command
from mailserv.syntax.tokens import Command

if TYPE_CHECKING:
    from mailserv.imap.factory import IMAPServerFactory
    from mailserv.imap.notify import Notifier
    from mailserv.imap.view import SelectedView
    from mailserv.interfaces import IAccount

_log = Logger()

_WRITE_CHUNK = 64 * 1024
"""Output held for one write at most; a command's responses beyond it go out as they come."""
PUMP_SLICE = 0.002
"""Seconds one connection's input is read on in a reactor turn while its commands complete
at once (the rest waits for a later turn, after the reactor polled the other sockets).  A
memory backend's import of pipelined APPENDs: another client's NOOP waited p99 41 ms when
all the input that had come was run in one turn, 22 ms with a 4 ms slice, 13 ms with 2 and
8 ms with 1; the import lost a tenth of its rate with 1 ms, nothing measurable with 2."""


@implementer(IPushProducer)
class IMAPServerProtocol(Protocol, TimeoutMixin):
    """One client connection; implements :class:`mailserv.imap.session.Session`."""

    def __init__(self, factory: IMAPServerFactory) -> None:
        self.factory = factory
        self.services = factory.services
        self.settings = self.services.settings
        self._commands = self.services.registry.commands
        s = self.settings
        self.framer = CommandFramer(
            s.max_line, s.max_literal, s.max_command_size, s.max_literal_plus
        )
        self.state = State.NOT_AUTHENTICATED
        self.account: IAccount | None = None
        self.username: str | None = None
        self.quota_limits: QuotaLimits | None = None
        self.selected: SelectedView | None = None
        self.enabled: set[str] = set()
        self.auth_failures = 0
        self._logout: Callable[[], object] | None = None
        self._queue: deque[tuple[Command | FrameError | ParseError, int]] = deque()
        self._queued_bytes = 0
        """Bytes of the commands in ``_queue`` (parsed, not started)."""
        self._transport_paused = False
        self._stalled = False
        """Parsing stopped because the queue was full; input waits in the framer."""
        self._running = False
        self._reading_paused = False
        self._out: list[bytes] = []
        self._out_size = 0
        self._corked = False
        """While a command runs, its responses are gathered for one write."""
        self._hangup_call: IDelayedCall | None = None
        """Set once the connection is closing (after BYE): the abort after close_timeout."""
        self._deadline_call: IDelayedCall | None = None
        self._bye_pending: bytes | None = None
        """A BYE to say (and close) when the running command ends (server shutdown)."""
        self._line_waiter: defer.Deferred[bytes] | None = None
        self._write_paused = False
        self._drain_waiters: list[defer.Deferred[None]] = []
        self._tls_started = False
        self._inflater: Inflater | None = None
        """COMPRESS=DEFLATE is on: the client's compressed input, inflated as it is read."""
        self.idling = False
        self.notifier: Notifier | None = None
        """NOTIFY SET's watcher: it writes between commands; flushed after each command."""
        self._closing = False
        """Set by LOGOUT: close once the tagged OK is out."""
        self._pump_call: IDelayedCall | None = None
        self.on_close: Callable[[], None] | None = None
        """Called once when the connection is gone (the factory's count of connections)."""
        self.listener = "imap"
        """Where the connection came in: ``imap`` or ``imaps`` (TLS from the first byte)."""

    # -- connection ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        if ISSLTransport.providedBy(self.transport):
            self.listener = "imaps"
        set_no_delay(self.transport)
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self.setTimeout(self.settings.preauth_timeout)
        caps = b" ".join(capabilities.for_session(self))
        self.write(b"* OK [CAPABILITY " + caps + b"] mailserv ready\r\n")

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.setTimeout(None)
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            on_close()
        self.state = State.LOGOUT
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        for call in (self._hangup_call, self._deadline_call):
            if call is not None and call.active():
                call.cancel()
        self._queue.clear()
        self._queued_bytes = 0
        self._out.clear()
        self._out_size = 0
        if self._line_waiter is not None:
            waiter, self._line_waiter = self._line_waiter, None
            waiter.errback(Failure(ConnectionError("connection lost")))
        self._release_drain_waiters()
        if self.notifier is not None:
            self.notifier.close()
        if self.selected is not None:
            self.selected.close()
            self.selected = None
        if self._logout is not None:
            logout, self._logout = self._logout, None
            try:
                logout()
            except Exception:
                _log.failure("Error while logging out {user}", user=self.username)

    def timeoutConnection(self) -> None:
        if self._running and self._line_waiter is None and not self._write_paused:
            # The client waits for one of our commands to end (a slow login, a slow
            # backend): it is not idle.  A client that does not read is.
            self.setTimeout(self.timeOut)
            return
        self.bye("Autologout; idle for too long")

    @property
    def ended(self) -> bool:
        """Whether the session is over: closing after BYE, or the connection lost (the
        state may change while a command awaits)."""
        return self.state is State.LOGOUT

    @property
    def metrics_state(self) -> str:
        """The ``state`` label of the connections gauge (idle: in IDLE)."""
        if self.idling:
            return "idle"
        return _STATE_LABELS[self.state]

    @property
    def secure(self) -> bool:
        """Whether the connection is encrypted (implicit TLS or after STARTTLS)."""
        return self._tls_started or ISSLTransport.providedBy(self.transport)

    @property
    def tls_connection(self) -> SSL.Connection | None:
        if not self.secure or self.transport is None:
            return None
        handle = getattr(self.transport, "getHandle", lambda: None)()
        return handle if isinstance(handle, SSL.Connection) else None

    @property
    def peer(self) -> str:
        return str(getattr(self.transport.getPeer(), "host", "unknown"))  # type: ignore[union-attr]

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.peer).is_loopback
        except ValueError:
            return False

    @property
    def plaintext_auth_allowed(self) -> bool:
        return self.secure or self.loopback or self.settings.allow_plaintext_auth

    # -- output -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send ``data``; while a command runs it waits for the command's end (or 64 KiB)."""
        if self.transport is None or self._hangup_call is not None:
            return
        if not self._corked or len(data) >= _WRITE_CHUNK:
            self.flush_output()
            self.transport.write(data)
            if not self._corked:
                self._push()  # an IDLE update, a continuation request: the client waits
            return
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= _WRITE_CHUNK:
            self.flush_output()

    def flush_output(self) -> None:
        """Hand what the running command wrote so far to the transport, in one write."""
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        if self.transport is not None:
            self.transport.write(data)

    def _push(self) -> None:
        """Send what the transport holds now, when a reply or an update is complete.  It
        would otherwise wait for the reactor's next look at the sockets, after the sliced
        work of other sessions due first: another session's THREAD of 100k held this
        session's answers one slice longer, 6.5 ms (p50) instead of 2.8.  Only plain
        states: a connection closing, or whose client does not read, is left to the
        reactor, and so is a compressed one (its ``DeflatingTransport`` flushes later)."""
        low = self.transport
        for _ in range(3):  # TLS's protocol wrapper, then the socket
            if isinstance(low, FileDescriptor):
                break
            low = getattr(low, "transport", None)
        if (
            isinstance(low, FileDescriptor)
            and low.connected
            and not low.disconnecting
            and not low.producerPaused
            and low._tempDataLen
        ):
            low.doWrite()  # an error is the reactor's to see at its next look

    def pauseProducing(self) -> None:
        self._write_paused = True

    def resumeProducing(self) -> None:
        self._write_paused = False
        self._release_drain_waiters()

    def stopProducing(self) -> None:
        self._release_drain_waiters()

    def _release_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    async def drain(self) -> None:
        """Wait while the client is slower than we write (large FETCH responses)."""
        self.flush_output()
        while self._write_paused and self.state is not State.LOGOUT:
            waiter: defer.Deferred[None] = defer.Deferred()
            self._drain_waiters.append(waiter)
            await waiter

    # -- input --------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._hangup_call is not None:
            return  # BYE said: what the client still sends is read and dropped
        self.resetTimeout()
        if self._inflater is not None:
            self._inflater.received(data)
        else:
            self.framer.feed(data)
        self._pump()

    def _blocked(self) -> bool:
        """Whether parsing must wait: an exclusive command runs, or the queue is full."""
        s = self.settings
        return (
            self._reading_paused
            or len(self._queue) >= max(1, s.max_pipelined)
            or self._queued_bytes >= max(1, s.max_queued_bytes)
        )

    def _pump(self) -> None:
        """Parse and queue what the input holds, as far as the queue takes it."""
        self._stalled = False
        inflated = 0
        now = self.services.turns.now
        began = now()
        while self.state is not State.LOGOUT:
            if self._blocked():
                self._stalled = True
                break
            if now() - began >= PUMP_SLICE:
                # Commands that completed at once (a memory backend's APPENDs) ran for a
                # slice: the rest of the input waits for the next turn, other clients first.
                self._stalled = True
                self._schedule_pump()
                break
            event = self.framer.next_event()
            if event is None:
                if inflated >= PER_TURN:  # a turn's share: go on in the next one
                    self._stalled = True
                    self._schedule_pump()
                    break
                fed = self._inflate_more()
                if not fed:
                    break
                inflated += fed
                continue
            if isinstance(event, Line):
                self._deliver_line(event.raw)
            elif isinstance(event, ContinueLiteral):
                self._write_now(b"+ Ready for literal data\r\n")
            elif isinstance(event, FrameError):
                if event.fatal:
                    self._fatal(event)
                    return
                if self._line_waiter is not None:
                    waiter, self._line_waiter = self._line_waiter, None
                    waiter.errback(Failure(Bad(event.text)))
                else:
                    self._enqueue(event, 0)
            elif isinstance(event, Frame):
                self._take_frame(event.raw)
        self._regulate_reading()

    def _regulate_reading(self) -> None:
        """Stop reading from the socket while unparsed input piles up behind a full queue
        (memory stays bounded by bytes, whatever the client sends); read again once the
        queue takes more."""
        if self.transport is None or self._hangup_call is not None:
            return
        pending = self.framer.pending + (self._inflater.backlog if self._inflater else 0)
        hold = self._stalled and pending > self.settings.max_line
        if hold and not self._transport_paused:
            self._transport_paused = True
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        elif not hold and self._transport_paused:
            self._transport_paused = False
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def _inflate_more(self) -> int:
        """Feed the framer the next chunk of compressed input, inflated; its size."""
        if self._inflater is None:
            return 0
        try:
            data = self._inflater.inflate()
        except zlib.error:
            self.bye("Corrupt compressed data")
            return 0
        self.framer.feed(data)
        return len(data)

    def _take_frame(self, raw: bytes) -> None:
        try:
            command: Command | ParseError = parse_command(raw)
        except ParseError as exc:
            command = exc
        if isinstance(command, Command):
            spec = self._commands.get(command.name)
            if spec is not None and spec.exclusive:
                self._reading_paused = True
        self._enqueue(command, len(raw))

    def _enqueue(self, item: Command | FrameError | ParseError, size: int) -> None:
        """Queue a command; ``size`` counts toward ``max_queued_bytes``."""
        self._queue.append((item, size))
        self._queued_bytes += size
        if not self._running:
            self._run_queue()

    def _fatal(self, event: FrameError) -> None:
        if event.tag:
            self.write(tagged(event.tag.encode(), b"BAD", event.text, _code(event.code)))
        self.bye(event.text)

    def _deliver_line(self, raw: bytes) -> None:
        if self._line_waiter is not None:
            waiter, self._line_waiter = self._line_waiter, None
            waiter.callback(raw)
        else:
            self._write_now(b"* BAD Unexpected continuation line\r\n")

    def _write_now(self, data: bytes) -> None:
        """Write outside the running command's batch (the client waits for it)."""
        self.flush_output()
        corked, self._corked = self._corked, False
        self.write(data)
        self._corked = corked

    async def read_line(self) -> bytes:
        """The next raw line from the client (for IDLE's DONE and SASL responses).

        What the command wrote so far goes out first; while waiting, writes (IDLE's
        updates) go out at once.
        """
        self.flush_output()
        self._push()
        corked, self._corked = self._corked, False
        self.framer.set_line_mode(True)
        self._line_waiter = defer.Deferred()
        waiter = self._line_waiter
        self._reading_paused = False
        self._schedule_pump()
        in_flight = self.factory.in_flight
        in_flight.end()  # waiting for the client is not running
        try:
            return await waiter
        finally:
            in_flight.begin()
            self._corked = corked
            self._reading_paused = True
            self.framer.set_line_mode(False)

    # -- dispatch -----------------------------------------------------------------------

    def _run_queue(self) -> None:
        self._running = True
        d = defer.Deferred.fromCoroutine(self._drain_queue())
        d.addErrback(lambda f: _log.failure("Command loop failed", f))

    async def _drain_queue(self) -> None:
        in_flight = self.factory.in_flight
        try:
            while self._queue and self.state is not State.LOGOUT:
                if self._write_paused:
                    # The client does not read: start nothing more until it does, so
                    # output cannot pile up; the queue fills and reading stops.
                    await self.drain()
                    if self.ended:
                        break
                item, size = self._queue.popleft()
                self._queued_bytes -= size
                joined = self._joining(item)
                if self._stalled:
                    self._schedule_pump()
                self.resetTimeout()  # a client whose commands wait in the queue is not idle
                self._corked = True
                in_flight.begin()
                try:
                    if joined:
                        await self._execute_together(joined)
                    else:
                        await self._execute(item)
                finally:
                    in_flight.end()
                    self._corked = False
                    self.flush_output()
                    if not self._queue:
                        self._push()
                if self._bye_pending is not None and not self.ended:
                    self._say_bye(self._bye_pending)
        finally:
            self._running = False
        if self.state is not State.LOGOUT and (self._reading_paused or self._stalled):
            self._reading_paused = False
            self._schedule_pump()

    def _schedule_pump(self) -> None:
        """Read on from the next reactor turn: no recursion however much was pipelined."""
        if self._pump_call is None or not self._pump_call.active():
            self._pump_call = self.services.clock.callLater(0, self._pump)

    def _joining(self, item: Command | FrameError | ParseError) -> list[Command]:
        """``item`` and the commands queued right after it that its spec runs together
        with it (taken from the queue); empty when it runs alone."""
        spec = self._commands.get(item.name) if isinstance(item, Command) else None
        if spec is None or spec.batching is None or self.state not in spec.states:
            return []
        assert isinstance(item, Command)
        key = None if item.uid else self._batch_key(spec.batching, item)
        joined = [item]
        while key is not None and self._queue:
            head, size = self._queue[0]
            if not isinstance(head, Command) or head.name != item.name or head.uid:
                break
            if self._batch_key(spec.batching, head) != key:
                break
            self._queue.popleft()
            self._queued_bytes -= size
            joined.append(head)
        return joined if len(joined) > 1 else []

    def _batch_key(self, batching: Batching, command: Command) -> Hashable | None:
        """``batching.key`` of ``command``; None (it runs alone, and answers for itself)
        should the key fail."""
        try:
            return batching.key(self, command)
        except Exception:
            _log.failure("Batching key of {name} failed", name=command.name)
            return None

    async def _execute_together(self, commands: list[Command]) -> None:
        """Commands of one :class:`~mailserv.imap.commands.Batching` run as one, each
        answered in order; one by one when the spec's ``run`` declines."""
        spec = self._commands[commands[0].name]
        assert spec.batching is not None
        started = time.perf_counter()
        try:
            replies = await spec.batching.run(self, commands)
        except Exception:
            _log.failure("Commands {name} failed for {user}", name=spec.name, user=self.username)
            self.services.metrics.backend_error("internal")
            for command in commands:
                self._finish(tagged(command.tag.encode(), b"NO", "Internal server error, logged",
                                    b"SERVERBUG"))  # fmt: skip
            return
        if replies is None:
            for command in commands:
                await self._execute(command)
            return
        await self._flush(spec, commands[0], started)
        share = (time.perf_counter() - started) / len(commands)
        for command, reply in zip(commands, replies, strict=True):
            text = reply.text or f"{command.name} completed"
            self._finish(tagged(command.tag.encode(), b"OK", text, reply.code))
            self.services.metrics.command(spec.name, False, b"OK", share)

    async def _execute(self, item: Command | FrameError | ParseError) -> None:
        if isinstance(item, FrameError):
            tag = item.tag.encode() if item.tag else b"*"
            status = b"NO" if item.code == "TOOBIG" else b"BAD"
            self.write(tagged(tag, status, item.text, _code(item.code)))
            return
        if isinstance(item, ParseError):
            tag = item.tag.encode() if item.tag else b"*"
            self.write(tagged(tag, b"BAD", item.text))
            return
        tag = item.tag.encode()
        spec = self._commands.get(item.name)
        if spec is None:
            self.write(tagged(tag, b"BAD", f"Unknown command {item.name[:40]}"))
            return
        if self.state not in spec.states:
            self.write(tagged(tag, b"BAD", f"{item.name} not allowed in {self.state.value} state"))
            return
        if item.uid and not spec.uid:
            self.write(tagged(tag, b"BAD", f"UID {item.name} is not a command"))
            return
        started = time.perf_counter()
        status = await self._run_handler(tag, spec, item, started)
        self.services.metrics.command(spec.name, item.uid, status, time.perf_counter() - started)

    async def _run_handler(
        self, tag: bytes, spec: CommandSpec, command: Command, started: float
    ) -> bytes:
        """Run the command to its tagged reply (``started``: its ``time.perf_counter()``);
        the reply's status (for the metrics)."""
        try:
            reply = await spec.handler(self, command) or Reply()
        except CommandFailure as exc:
            await self._flush(spec, command, started)
            self._finish(tagged(tag, exc.status, exc.text, exc.code))
            return exc.status
        except ParseError as exc:
            self._finish(tagged(tag, b"BAD", exc.text))
            return b"BAD"
        except errors.BackendError as exc:
            self.services.metrics.backend_error(type(exc).__name__)
            await self._flush(spec, command, started)
            text = backend_text(exc)
            self._finish(tagged(tag, b"NO", text, _code(exc.code)))
            return b"NO"
        except Exception as exc:
            if isinstance(exc, ConnectionError) and self.ended:
                return b"BYE"  # the connection went while the command waited for the client
            _log.failure("Command {name} failed for {user}", name=command.name, user=self.username)
            self.services.metrics.backend_error("internal")
            self._finish(tagged(tag, b"NO", "Internal server error, logged", b"SERVERBUG"))
            return b"NO"
        if reply.sent:
            return b"OK"
        await self._flush(spec, command, started)
        text = reply.text or f"{'UID ' if command.uid else ''}{command.name} completed"
        self._finish(tagged(tag, b"OK", text, reply.code))
        return b"OK"

    def _finish(self, line: bytes) -> None:
        if self.state is State.LOGOUT and not self._closing:
            return
        self.write(line)
        if self._closing:
            self.end()

    async def _flush(self, spec: CommandSpec, command: Command, started: float) -> None:
        """What the command's end reports: the changes made before it ``started``, at least."""
        if self._closing:
            return  # after BYE (LOGOUT) only the tagged reply follows
        if self.selected is not None and self.state is State.SELECTED:
            await self.selected.flush(expunges=spec.expunge_ok or command.uid, since=started)
        if self.notifier is not None:
            self.notifier.follow_selected()
            await self.notifier.flush()

    # -- state changes used by handlers -------------------------------------------------

    def logged_in(self, username: str, account: IAccount, logout: Callable[[], object]) -> None:
        if self.ended:
            logout()  # the connection went while the password was checked
            return
        self.username = username
        self.account = account
        self.quota_limits = None
        self._logout = logout
        self.state = State.AUTHENTICATED
        self.setTimeout(self.settings.idle_timeout)

    def start_tls(self) -> None:
        """Switch to TLS after the tagged OK; anything the client pipelined is dropped.

        Over TLS 1.3 the server sends session tickets once it has the client's Finished; a
        client that reads in one thread while another writes (imaplib2, under offlineimap)
        can lose the first command it writes after the handshake when the tickets reach its
        reader at that moment, and both sides then wait.  ``settings.starttls_tls13`` off
        caps STARTTLS at TLS 1.2, after which nothing follows the handshake.  (Implicit TLS
        is not affected: there the greeting follows the tickets, and clients read it first.)
        """
        self.flush_output()
        self.framer.discard_buffer()
        self.transport.startTLS(self.services.tls)  # type: ignore[union-attr]
        if not self.settings.starttls_tls13:
            # No ClientHello has been read yet: this connection's own options still apply.
            self.transport.getHandle().set_options(SSL.OP_NO_TLSv1_3)  # type: ignore[union-attr]
        self._tls_started = True

    @property
    def compressed(self) -> bool:
        return self._inflater is not None

    def start_compression(self) -> None:
        """DEFLATE both ways from now (after the tagged OK); what the client sent after
        the command is compressed too."""
        self.flush_output()
        self._inflater = Inflater()
        self._inflater.received(self.framer.take_unread())
        if self.transport is not None:
            self.transport = DeflatingTransport(self.transport, self.services.clock)

    def end(self) -> None:
        """Stop reading, drop queued commands, close after what is written: TLS
        close_notify and TCP FIN at once, the connection aborted if it lingers beyond
        ``close_timeout``."""
        self.state = State.LOGOUT
        self._queue.clear()
        self._queued_bytes = 0
        self.flush_output()
        if self.transport is None or self._hangup_call is not None:
            return
        if isinstance(self.transport, DeflatingTransport):
            self.transport = self.transport.detach()  # the close is TLS's or TCP's
        if self._transport_paused:
            # Read again: the peer's close_notify or FIN ends the connection sooner.
            self._transport_paused = False
            self.transport.resumeProducing()  # type: ignore[attr-defined]
        self._hangup_call = hang_up(
            self.transport, self.services.clock, self.settings.close_timeout, producing=True
        )

    def disconnect(self, text: str) -> None:
        """Say BYE now; the connection closes after the running command's tagged reply."""
        self.write(_bye_line(text))
        self._closing = True

    def note_auth_failure(self) -> int:
        self.auth_failures += 1
        return self.auth_failures

    def enable(self, names: Iterable[str]) -> list[str]:
        newly = [name for name in dict.fromkeys(names) if name not in self.enabled]
        self.enabled.update(newly)
        return newly

    def set_idling(self, idling: bool) -> None:
        self.idling = idling

    def bye(self, text: str) -> None:
        """Say BYE and close now (autologout, fatal input)."""
        self._say_bye(_bye_line(text))

    def _say_bye(self, line: bytes) -> None:
        self._bye_pending = None
        self._write_now(line)
        self.end()

    def shutdown(self, text: str = "Server shutting down") -> None:
        """The server stops: BYE and close, at once if no command runs (or it waits for
        the client, as IDLE does), else when the running command ends.  The connection
        is aborted ``close_timeout`` from now whatever happens."""
        if self._hangup_call is not None:
            return
        if not self._running or self._line_waiter is not None:
            self.bye(text)
            return
        self._bye_pending = _bye_line(text)
        self._queue.clear()
        self._queued_bytes = 0
        self._reading_paused = True
        if self._deadline_call is None and self.transport is not None:
            self._deadline_call = self.services.clock.callLater(
                self.settings.close_timeout,
                self.transport.abortConnection,  # type: ignore[attr-defined]
            )

    def deselect(self) -> None:
        if self.selected is not None:
            self.selected.close()
            self.selected = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def select(self, view: SelectedView) -> None:
        self.deselect()
        self.selected = view
        self.state = State.SELECTED


_STATE_LABELS = {
    State.NOT_AUTHENTICATED: "not_authenticated",
    State.AUTHENTICATED: "authenticated",
    State.SELECTED: "selected",
    State.LOGOUT: "logout",
}


def _bye_line(text: str) -> bytes:
    return b"* BYE " + text.encode("utf-8", "replace") + b"\r\n"


def _code(code: str | None) -> bytes | None:
    return code.encode("ascii") if code else None
