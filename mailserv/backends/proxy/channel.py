"""The channel: the upstream connection that keeps one mailbox selected, and its mirror.

While the mailbox is in use the channel has it selected and IDLEs on it between commands
(NOOP polling when the upstream has no IDLE), so changes made elsewhere arrive within
moments.  Every command about the mailbox runs here, one at a time (:meth:`Channel.run`;
STOREs and NOOPs waiting meanwhile go as one pipelined batch, :meth:`Channel.pipelined`),
so untagged responses come in order and keep the :class:`Mirror` exact: its UID list is
the channel's sequence map.  Changes this process makes are applied from the upstream's
own answers and reported to listeners with the operation's ``origin``.

A dropped channel is reopened and the mirror resynchronised against a fresh listing (the
difference reaches listeners as ordinary events); if that fails, listeners are told the
mailbox is lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailserv import errors
from mailserv.backends.kit import ListenerSet
from mailserv.backends.proxy import wire
from mailserv.backends.proxy.client import CommandFailed, UpstreamProtocol
from mailserv.backends.proxy.mirror import Mirror
from mailserv.backends.proxy.rows import (
    Row,
    adopt_upstream_ids,
    each_row_after,
    fetch_items,
    rows_after,
    select,
)
from mailserv.interfaces import RECENT, FlagChange, IMailbox

if TYPE_CHECKING:
    from mailserv.backends.proxy.user import UserState

_log = Logger()

T = TypeVar("T")

_IDLE_REFRESH = 290.0
_IDLE_DELAY = 0.2
"""Quiet seconds before IDLE: a burst of commands pays no DONE round trip per command,
and news waiting upstream is announced when IDLE starts (a bounded extra delay)."""
_WAKE_DELAY = 0.01
_RECONNECT_DELAYS = (0.0, 0.5, 2.0)


@dataclass
class Operation:
    """One :meth:`Channel.run`: whose changes these are (``origin``), which messages it
    changes the flags of or expunges (``scope``; None: every message an expunge removes),
    whether its removals are its own (``expunge``), and what it brought: its own removed
    UIDs (``gone``) and its flag ``changes``."""

    origin: object = None
    scope: frozenset[int] | None = None
    expunge: bool = False
    gone: list[int] = field(default_factory=list)
    changes: list[FlagChange] = field(default_factory=list)
    parts: list[Operation] | None = None
    """Commands sent together (:meth:`Channel.pipelined`), whose scopes do not meet: a
    message's change is the one's whose scope holds it."""


@dataclass
class _Queued:
    """A command waiting for :meth:`Channel.pipelined`, its operation, its answer, and
    what is told as it goes upstream."""

    args: Sequence[wire.Arg]
    op: Operation
    answer: Deferred[wire.Response]
    sending: Callable[[], None] | None


class Channel:
    """The selected upstream connection of mailbox ``name``; ``source`` is the IMailbox
    that events name, ``listeners`` the ones they go to."""

    def __init__(
        self, user: UserState, name: str, source: IMailbox, listeners: ListenerSet
    ) -> None:
        self.user = user
        self.name = name
        self.source = source
        self.listeners = listeners
        self.mirror: Mirror | None = None
        self.on_removed: Callable[[list[int]], None] = _ignore
        """Told the UIDs that left the mirror."""
        self._conn: UpstreamProtocol | None = None
        self._lock = DeferredLock()
        self._starting: list[Deferred[None]] | None = None
        self._idle: Deferred[Any] | None = None
        self._idle_call: IDelayedCall | None = None
        self._refresh_call: IDelayedCall | None = None
        self._wake_call: IDelayedCall | None = None
        self._release_call: IDelayedCall | None = None
        self._catch_up_needed = False
        self._op: Operation | None = None
        self._queued: list[_Queued] = []
        """Commands waiting to go upstream together (:meth:`pipelined`)."""
        self._draining = False
        self.retired = False
        """Renamed or deleted here: the name is not selected again for this object."""

    @property
    def live(self) -> bool:
        conn = self._conn
        return conn is not None and conn.alive and self.mirror is not None

    @property
    def clock(self) -> Any:
        return self.user.clock

    @property
    def busy(self) -> bool:
        """Live, or on the way: its commands report through the listeners."""
        return self.live or self._starting is not None

    def keep(self) -> None:
        """A listener came: no release; the mailbox goes live (selected upstream)."""
        if self._release_call is not None and self._release_call.active():
            self._release_call.cancel()
        self._release_call = None
        if not self.live and self._starting is None:
            d = Deferred.fromCoroutine(self.go_live())
            d.addErrback(_log_background, self.name)

    def release_soon(self) -> None:
        """Nobody listens: the connection goes back to the pool after ``linger`` seconds."""
        waiting = self._release_call is not None and self._release_call.active()
        if not self.listeners and self._conn is not None and not waiting:
            self._release_call = self.clock.callLater(
                self.user.backend.config.linger, self._release_later
            )

    async def mirrored(self) -> Mirror:
        """The mirror, once the mailbox is live."""
        await self.go_live()
        assert self.mirror is not None
        return self.mirror

    async def go_live(self) -> None:
        if self.live:
            return
        if self.user.closed:
            raise errors.BackendUnavailable("the upstream session ended")
        if self._starting is not None:
            waiter: Deferred[None] = Deferred()
            self._starting.append(waiter)
            await waiter
            return
        self._starting = []
        try:
            await self._start()
        except BaseException as exc:
            waiters, self._starting = self._starting, None
            for waiter in waiters:
                waiter.errback(Failure(exc))
            raise
        waiters, self._starting = self._starting, None
        for waiter in waiters:
            waiter.callback(None)

    async def _start(self) -> None:
        """SELECT upstream, no RENAME or DELETE of the name meanwhile (namelock.py)."""
        async with self.user.locks.opening(self.name):
            if self.retired:
                raise errors.MailboxNotFound(self.name)
            await self._select_and_mirror()

    async def _select_and_mirror(self) -> None:
        user = self.user
        conn = await user.pool.acquire()
        # News the upstream tells while the mailbox is listed (an EXISTS of a message
        # appended by another connection during the UID FETCH) is heard once the mirror is up.
        early: list[wire.Response] = []
        conn.on_untagged = early.append
        try:
            state, rows = await self._select(conn)
        except BaseException:
            if conn.alive and conn.selected is None:
                user.pool.release(conn)
            else:
                user.pool.discard(conn)
            raise
        validity = state.get("UIDVALIDITY", 0)
        condstore = bool({"CONDSTORE", "QRESYNC"} & conn.enabled) and "NOMODSEQ" not in state
        old = self.mirror
        if old is not None and old.uidvalidity != validity:
            self._lost("the mailbox was recreated upstream (UIDVALIDITY changed)")
            old = None
        if old is None:
            listed = {row[0] for row in rows}
            infos = user.infos.load(self.name, validity, listed)
            if "OBJECTID" in conn.capabilities:
                try:
                    changed = await adopt_upstream_ids(conn, infos, listed)
                except BaseException:
                    user.pool.discard(conn)
                    raise
                user.infos.remember(self.name, validity, changed)
            mirror = Mirror(validity, condstore, infos)
            for uid, flags, date, size, modseq in rows:
                mirror.add(uid, flags, date, size, modseq, None, recent=RECENT in flags)
            mirror.discard_events()  # the initial listing is no news
        else:
            mirror = old
            mirror.resync(rows)
        mirror.uidnext = max(mirror.uidnext, state.get("UIDNEXT", 1))
        if condstore and "HIGHESTMODSEQ" in state:
            mirror.note_highest(state["HIGHESTMODSEQ"])
        if old is None:
            mirror.history_from = mirror.highestmodseq
        self.mirror = mirror
        self._conn = conn
        conn.on_untagged = self._on_untagged
        conn.on_lost = self._on_lost
        self._catch_up_needed = False
        if early:
            self._op = Operation()  # no wake-up, no news yet: the catch-up follows at once
            try:
                for response in early:
                    self._on_untagged(response)
                await self._catch_up(conn, None)
            finally:
                self._op = None
            if old is None:
                mirror.discard_events()  # part of the initial listing
        if old is not None:
            mirror.emit(self.source, self.listeners)
        self._schedule_idle()

    async def _select(self, conn: UpstreamProtocol) -> tuple[dict[str, int], list[Row]]:
        try:
            state = await select(conn, self.user.encoded(self.name))
        except CommandFailed as exc:
            raise await self.user.mailbox_error(self.name, exc) from exc
        conn.selected = self.name
        if not state.get("EXISTS"):
            return state, []
        modseq = bool({"CONDSTORE", "QRESYNC"} & conn.enabled) and "NOMODSEQ" not in state
        return state, await rows_after(conn, 0, modseq)

    async def run(
        self, work: Callable[[UpstreamProtocol], Awaitable[T]], op: Operation | None = None
    ) -> T:
        """``work`` on the channel, alone; afterwards new messages are listed and every
        change it brought is told to the listeners.  What it brought is noted in ``op``."""
        while True:
            # Never go live holding the lock: the SELECT waits for a RENAME or DELETE of
            # the name, which waits for this lock to release the channel.
            await self.go_live()
            await self._lock.acquire()
            if self.live:
                break
            self._lock.release()
        try:
            conn = self._conn
            assert conn is not None
            await self._leave_idle()
            self._op = op = op or Operation()
            try:
                result = await work(conn)
                # What the listing of new messages brings besides them (another client's
                # expunges and flag changes) is news for every session, the caller's too.
                self._op = Operation()
                await self._catch_up(conn, op.origin)
            finally:
                self._op = None
                if self.mirror is not None:
                    self.mirror.emit(self.source, self.listeners)
            return result
        finally:
            self._lock.release()
            self._schedule_idle()

    async def pipelined(
        self,
        args: Sequence[wire.Arg],
        op: Operation,
        sending: Callable[[], None] | None = None,
    ) -> wire.Response:
        """Run command ``args`` (one that changes the flags of ``op.scope`` alone, e.g. a
        UID STORE) as :meth:`run` does, sent together with the other such commands waiting
        for the channel meanwhile: the upstream answers a queue of STOREs of many sessions
        in about one round trip.  Commands whose scopes meet go in separate batches, in
        order.  The tagged answer, OK or not; ``sending`` is called as it goes upstream.
        The messages listed after a batch are news for every session (no ``origin``)."""
        assert op.scope is not None and not op.expunge
        answer: Deferred[wire.Response] = Deferred()
        self._queued.append(_Queued(args, op, answer, sending))
        if not self._draining:
            self._draining = True
            d = Deferred.fromCoroutine(self._drain())
            d.addErrback(_log_background, self.name)
        return await answer

    async def _drain(self) -> None:
        try:
            while self._queued:
                batch: list[_Queued] = []
                together = Operation(scope=frozenset(), parts=[])
                try:
                    answers = await self.run(partial(self._send_queued, batch, together), together)
                except BaseException as exc:
                    if not batch:  # the channel failed before sending: every one waiting fails
                        batch, self._queued = self._queued, []
                    failure = Failure(exc)
                    for queued in batch:
                        queued.answer.errback(failure)
                    continue
                for queued, response in zip(batch, answers, strict=True):
                    queued.answer.callback(response)
        finally:
            self._draining = False

    async def _send_queued(
        self, batch: list[_Queued], together: Operation, conn: UpstreamProtocol
    ) -> list[wire.Response]:
        """Taken once the channel is ours, so every command queued meanwhile joins: the
        queue's head while its scopes do not meet, sent together."""
        parts = together.parts
        assert parts is not None
        while self._queued and all(
            part.scope.isdisjoint(self._queued[0].op.scope or ()) for part in parts if part.scope
        ):
            queued = self._queued.pop(0)
            batch.append(queued)
            parts.append(queued.op)
            if queued.sending is not None:
                queued.sending()
        return await conn.pipeline([queued.args for queued in batch])

    async def _catch_up(self, conn: UpstreamProtocol, origin: object) -> None:
        """List the messages an EXISTS announced.  Each joins the mirror as its line
        arrives: the upstream may list a message that another connection has just expunged
        and tell the expunge at the end of the same answer, which must find it there."""

        def listed(row: Row) -> None:
            if self.mirror is not None:
                uid, flags, date, size, modseq = row
                self.mirror.add(uid, flags, date, size, modseq, origin)

        while self._catch_up_needed and self.mirror is not None:
            self._catch_up_needed = False
            await each_row_after(conn, self.mirror.last, self.mirror.condstore, listed)

    def _on_untagged(self, response: wire.Response) -> None:
        mirror = self.mirror
        if mirror is None:
            return
        kind = response.kind
        if kind == "FETCH":
            self._flags_update(mirror, response)
        elif kind == "EXPUNGE" and response.number is not None:
            uid = mirror.uid_at(response.number)
            if uid is not None:
                self._removed(mirror, [uid])
        elif kind == "VANISHED" and response.data:
            if not isinstance(response.data[0], list):  # (EARLIER) belongs to a resync
                try:
                    self._removed(mirror, wire.uid_ranges(wire.to_text(response.data[-1])))
                except ValueError:
                    _log.warn("Unparsable VANISHED from upstream")
        elif kind == "EXISTS" and response.number is not None:
            if response.number > len(mirror.uids):
                self._catch_up_needed = True
                if self._op is None:
                    self._wake()
        elif kind == "OK" and response.code == "HIGHESTMODSEQ" and response.code_data:
            value = response.code_data[0]
            if isinstance(value, int):
                mirror.note_highest(value)
        elif kind == "OK" and response.code == "UIDVALIDITY" and response.code_data:
            changed = response.code_data[0] != mirror.uidvalidity
            if changed and self._conn is not None:
                self._conn.abort("UIDVALIDITY changed")
        if self._op is None:
            mirror.emit(self.source, self.listeners)

    def _flags_update(self, mirror: Mirror, response: wire.Response) -> None:
        items = fetch_items(response)
        if items is None or "FLAGS" not in items:
            return
        uid = items.get("UID")
        if not isinstance(uid, int):
            uid = mirror.uid_at(response.number or 0)
            if uid is None:
                return
        op = self._op
        if op is not None and op.parts is not None:  # the command of a batch that changes it
            op = next((part for part in op.parts if part.scope and uid in part.scope), None)
        ours = op is not None and op.scope is not None and uid in op.scope
        origin = op.origin if op is not None and ours else None
        change = mirror.set_flags(
            uid, wire.flag_set(items["FLAGS"]), wire.modseq_of(items.get("MODSEQ")), origin
        )
        if change is not None and op is not None and ours:
            op.changes.append(change)

    def _removed(self, mirror: Mirror, uids: Sequence[int]) -> None:
        """An expunge's removals are its own (its session tells them with its answer) when
        in its ``scope``, or all of them without one (EXPUNGE); the upstream may tell in the
        same answer messages another connection expunged, which are news for every session."""
        op = self._op
        if op is None or not op.expunge:
            gone = mirror.remove(uids, None)
        else:
            scope = op.scope
            ours = uids if scope is None else [uid for uid in uids if uid in scope]
            theirs = [] if scope is None else [uid for uid in uids if uid not in scope]
            gone = mirror.remove(ours, op.origin)
            op.gone.extend(gone)
            gone += mirror.remove(theirs, None)
        self.on_removed(gone)

    # -- IDLE -----------------------------------------------------------------------------

    def _schedule_idle(self) -> None:
        if self._idle is not None or not self.live or self.user.closed:
            return
        if self._idle_call is not None and self._idle_call.active():
            return
        self._idle_call = self.clock.callLater(_IDLE_DELAY, self._idle_soon)

    def _idle_soon(self) -> None:
        self._idle_call = None
        d = Deferred.fromCoroutine(self._enter_idle())
        d.addErrback(lambda f: _log.failure("Entering IDLE upstream failed", f))

    async def _enter_idle(self) -> None:
        conn = self._conn
        if self._lock.locked or not self.live or self._idle is not None or conn is None:
            return
        if "IDLE" not in conn.capabilities:
            self._wake(self.user.backend.config.poll)
            return
        await self._lock.acquire()
        try:
            if self._conn is not conn or not conn.alive or self._idle is not None:
                return
            try:
                done = await conn.start_idle()
            except CommandFailed:
                self._wake(self.user.backend.config.poll)
                return
            except errors.BackendUnavailable:
                return
            done.addErrback(lambda _: None)
            self._idle = done
            self._refresh_call = self.clock.callLater(_IDLE_REFRESH, self._wake, 0)
        finally:
            self._lock.release()

    async def _leave_idle(self) -> None:
        done, self._idle = self._idle, None
        if self._refresh_call is not None and self._refresh_call.active():
            self._refresh_call.cancel()
        self._refresh_call = None
        if done is None:
            return
        conn = self._conn
        if conn is not None and conn.alive:
            conn.done()
            await done
        if conn is None or not conn.alive:
            raise errors.BackendUnavailable("upstream connection lost")

    def _wake(self, delay: float = _WAKE_DELAY) -> None:
        """Run an empty command soon: it ends IDLE and lists what arrived (or polls)."""
        if self._wake_call is not None and self._wake_call.active():
            return

        def run() -> None:
            self._wake_call = None
            if not self.live:
                return

            async def nothing(conn: UpstreamProtocol) -> None:
                if not self._catch_up_needed:
                    await conn.command(b"NOOP")

            d = Deferred.fromCoroutine(self.run(nothing))
            d.addErrback(_log_background, self.name)

        self._wake_call = self.clock.callLater(delay, run)

    # -- losing and releasing the channel -------------------------------------------------

    def _on_lost(self, reason: str) -> None:
        conn, self._conn = self._conn, None
        self._idle = None
        if self.user.closed:
            return
        if conn is not None:
            self.user.pool.discard(conn)
        _log.warn(
            "Upstream connection of {user}/{name} lost: {reason}",
            user=self.user.username,
            name=self.name,
            reason=reason,
        )
        if self.listeners:
            d = Deferred.fromCoroutine(self._reconnect(reason))
            d.addErrback(_log_background, self.name)
        else:
            self.mirror = None

    async def _reconnect(self, reason: str) -> None:
        for delay in _RECONNECT_DELAYS:
            if delay:
                await deferLater(self.clock, delay)
            if self.live or self.user.closed:
                return
            try:
                await self.go_live()
                return
            except (errors.MailboxNotFound, errors.MailboxNotSelectable):
                self._lost("the mailbox no longer exists upstream")
                return
            except errors.BackendError as exc:
                reason = str(exc)
        self._lost(f"upstream connection lost and not re-established: {reason}")

    def _lost(self, reason: str) -> None:
        """The mirror cannot be kept: tell every listener (their views are void, the clients
        get BYE); later commands get ``NO [UNAVAILABLE]`` until the mailbox can be reopened."""
        self.mirror = None
        if self.listeners:
            _log.warn(
                "Mailbox {name} of {user} lost: {reason}",
                name=self.name,
                user=self.user.username,
                reason=reason,
            )
        self.listeners.lost(self.source, reason)

    def evictable(self) -> bool:
        return self._conn is not None and not self.listeners and not self._lock.locked

    def _release_later(self) -> None:
        self._release_call = None
        if self.listeners:
            return
        d = Deferred.fromCoroutine(self.release())
        d.addErrback(_log_background, self.name)

    async def release(self) -> None:
        """Give the channel back to the pool (UNSELECT) and forget the mirror."""
        conn = self._conn
        if conn is None:
            return
        await self._lock.acquire()
        try:
            if self._conn is not conn:
                return
            try:
                await self._leave_idle()
            except errors.BackendError:
                pass
            self._conn = None
            self.mirror = None
            conn.on_lost = None
            conn.on_untagged = None
            if conn.alive and "UNSELECT" in conn.capabilities:
                try:
                    await conn.command(b"UNSELECT")
                    conn.selected = None
                    self.user.pool.release(conn)
                    return
                except (CommandFailed, errors.BackendError):
                    pass
            self.user.pool.discard(conn)
        finally:
            self._lock.release()

    async def shutdown(self) -> None:
        """The user's upstream session ends: log the channel out."""
        for call in (self._idle_call, self._refresh_call, self._wake_call, self._release_call):
            if call is not None and call.active():
                call.cancel()
        conn, self._conn = self._conn, None
        self.mirror = None
        if conn is not None:
            conn.on_lost = None
            conn.on_untagged = None
            if self._idle is not None and conn.alive:
                conn.done()
            conn.close()

    async def gone(self) -> None:
        """The mailbox was deleted or renamed: release it and tell its listeners."""
        mirror = self.mirror
        await self.release()
        if mirror is not None and mirror.uids and self.listeners:
            mirror.remove(list(mirror.uids), None)
            mirror.emit(self.source, self.listeners)


def _log_background(failure: Failure, name: str) -> None:
    if failure.check(errors.BackendError):
        _log.info("Upstream work on {name} failed: {why}", name=name, why=failure.getErrorMessage())
        return
    _log.failure("Upstream work on {name} failed", failure, name=name)


def _ignore(uids: list[int]) -> None:
    pass
