"""One mailbox held in process memory: the pattern a backend plugin copies.

Each message is a plain mutable record of the mailbox's own (:class:`Message`), in a dict
keyed by UID; STORE changes the records' flags and modseq in place, and ``fetch()`` makes
the engine's read-only ``MessageMeta`` from them when asked (kept until the record next
changes), so a ``STORE 1:*`` over 100k messages makes no object per message (nor work for
the garbage collector); a ``MessageMeta`` given out never changes.  The dict also serves
as the sorted UID list: a dict keeps insertion order and a new UID is always the largest,
so the keys ascend unsorted.  ``status()`` reads counters maintained as messages
come and go (the kit's :class:`Tally`); listeners, modseqs, the sets of UIDs by flag and by
day, the folded address and subject texts and the word index of BODY and TEXT behind
SEARCH, and the planning of STORE and EXPUNGE are the kit's too.

Every change holds the mailbox's lane (the kit's :class:`Lane`) and goes through the
messages in batches, pausing between them when its time slice is used up: ``STORE 1:*``
over 100k messages, or a COPY or EXPUNGE of as many, never holds up other sessions for more
than a few ms, and no other change comes in between.  Reads of many messages are cut the
same way; they take no lane.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from zope.interface import implementer

from mailserv.backends.kit import (
    Lane,
    Listened,
    ListenerSet,
    ModseqLog,
    Tally,
    TimeSlices,
    expungeable,
    flagsets,
    new_mailbox_id,
    plan_store,
)
from mailserv.backends.kit.fieldtexts import FoldedFields
from mailserv.backends.kit.textindex import TextIndex
from mailserv.interfaces import (
    RECENT,
    SEEN,
    AppendResult,
    Changes,
    CopyResult,
    FlagChangeColumns,
    IFirstUnseen,
    ISearchableMailbox,
    MailboxStatus,
    MessageMeta,
    NewMessage,
    StoreMode,
    StoreResult,
)
from mailserv.message.info import MessageInfo
from mailserv.message.parse import parse_message

if TYPE_CHECKING:
    from mailserv.backends.memory.account import MemoryAccount
    from mailserv.search import SearchProgram

CHANGE_BATCH = 200
"""Messages a COPY adds or an EXPUNGE removes between two pauses: each is a new record or
a dropped one, with its counts, sets of UIDs and texts (about 10 microseconds: a thousand
a piece held the reactor 10 ms at 100k messages)."""


@dataclass(slots=True, eq=False)
class Message:
    """What the mailbox keeps of one message.  ``flags`` (one frozenset shared by the
    messages that have the same) and ``modseq`` change on STORE (:meth:`reflag`); the rest
    never does."""

    uid: int
    flags: frozenset[str]
    modseq: int
    internaldate: datetime
    raw: bytes  # the only copy of the message's bytes
    info: MessageInfo  # parsed once, at delivery
    saved: datetime  # SAVEDATE
    shown: MessageMeta | None = None
    """The last ``meta()``, kept until the record changes: a SEARCH or FETCH of every
    message makes no new object for those that have not changed since the last one."""

    def meta(self) -> MessageMeta:
        """The engine's view of it now (a later STORE does not change this one)."""
        if self.shown is None:
            self.shown = MessageMeta(
                self.uid,
                self.flags,
                self.internaldate,
                len(self.raw),
                self.modseq,
                self.info,
                self.saved,
            )
        return self.shown

    def reflag(self, flags: frozenset[str], modseq: int) -> None:
        self.flags = flags
        self.modseq = modseq
        self.shown = None


@implementer(ISearchableMailbox, IFirstUnseen)
class MemoryMailbox(Listened):
    """The one object every session of the process shares for a mailbox name."""

    def __init__(
        self, name: str, uidvalidity: int, account: MemoryAccount, attributes: frozenset[str]
    ) -> None:
        self.name = name
        self.uidvalidity = uidvalidity
        self.attributes = attributes  # special-use, e.g. {"\\Sent"}
        self.mailboxid = new_mailbox_id()  # moves with the object on RENAME
        self.acl: dict[str, str] = {}  # RFC 4314 identifier -> rights; moves with it too
        self._account = account  # resolves COPY/MOVE destinations
        self._messages: dict[int, Message] = {}  # keys ascending (see above)
        self._listed: tuple[int, ...] | None = None
        """``uids()``'s answer, shared by every SELECT until a message comes or goes."""
        self._uidnext = 1
        self._flagsets: dict[frozenset[str], frozenset[str]] = {}
        """One frozenset per distinct set of flags, shared by the messages that have it."""
        self.tally = Tally()
        self._having: flagsets.Having = {}  # SEARCH of flags and dates: see kit.flagsets
        self._on_day: flagsets.OnDay = {}
        self._fields = FoldedFields()  # SEARCH FROM/TO/CC/BCC/SUBJECT: see kit.fieldtexts
        self._texts = TextIndex(account.clock)  # SEARCH BODY and TEXT: see kit.textindex
        self.modseqs = ModseqLog()
        self.listeners = ListenerSet()
        self.lane = Lane(account.turns)

    def stop(self) -> None:
        """Gone, or its backend stopped: no more work in the background."""
        self._texts.stop()

    async def status(self) -> MailboxStatus:
        return self.tally.status(
            self.uidvalidity,
            self._uidnext,
            len(self._messages),
            self.modseqs.highest,
            self.mailboxid,
        )

    async def uids(self) -> tuple[int, ...]:
        """A snapshot: later appends and expunges do not show through it (a tuple, made
        once per change of the set of messages, not once per SELECT)."""
        if self._listed is None:
            self._listed = tuple(self._messages)
        return self._listed

    async def fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        """In batches: SELECT and SEARCH ask for every message of the mailbox."""
        found: list[MessageMeta] = []
        async for part in self.lane.slices().batches(uids):
            found += [m.meta() for m in self._records(part)]
        return found

    def _records(self, uids: Sequence[int]) -> list[Message]:
        messages = self._messages
        return [messages[uid] for uid in uids if uid in messages]

    async def content(self, uid: int) -> bytes:
        return self._messages[uid].raw

    async def search(self, query: SearchProgram, uids: Sequence[int]) -> list[int] | None:
        """Flags and internal dates from the sets kept (a few ms at 100k), the address and
        subject fields from their folded texts, BODY and TEXT from the text index; None
        (the engine evaluates) for the rest."""
        known = await self._fields.answer(
            query.key, uids, self._messages, self.lane.slices(), self._texts.matching
        )
        if known is None:
            return None
        known.update(flagsets.unseen_nodes(query.key, self.tally.unseen_uids))
        return flagsets.search(query.key, uids, self._having, self._on_day, self._messages, known)

    async def first_unseen(self) -> int | None:
        """From the UIDs having \\Seen: a pass that stops at the first without."""
        return flagsets.first_without(self._having, SEEN, self._messages)

    async def changes_since(self, modseq: int) -> Changes:
        """HIGHESTMODSEQ is read first: a change made while the messages are read in slices
        has a higher modseq, so the client asks for it again rather than missing it."""
        highest = self.modseqs.highest
        changed: list[MessageMeta] = []
        async for part in self.lane.slices().batches(tuple(self._messages)):
            changed += [m.meta() for m in self._records(part) if m.modseq > modseq]
        return self.modseqs.changes(changed, modseq, highest)

    async def claim_recent(self) -> list[int]:
        return self.tally.claim()

    async def append(
        self, message: bytes, flags: frozenset[str], internaldate: datetime | None, origin: object
    ) -> AppendResult:
        """Parse once, here; FETCH and SEARCH read the stored ``MessageInfo`` afterwards."""
        (result,) = await self.append_many([NewMessage(message, flags, internaldate)], origin)
        return result

    async def append_many(
        self, messages: Sequence[NewMessage], origin: object
    ) -> list[AppendResult]:
        """Parsed first (a batch in time slices: 64 realistic messages are 23 ms of parsing),
        then inserted together: nothing can fail half-way."""
        slices = TimeSlices(self._account.turns)
        parsed = []
        for i, m in enumerate(messages):
            if i:  # between messages: a single APPEND never waits for a turn
                await slices.pause()
            parsed.append((m, parse_message(m.message), m.internaldate))
        now = datetime.now(UTC)
        saved = now.replace(microsecond=0)
        async with self.lane.held():
            modseq = self.modseqs.bump()
            uids = [
                self._insert(m.message, info, m.flags - {RECENT}, when or now, modseq, saved)
                for m, info, when in parsed
            ]
            self.listeners.added(self, uids, origin)
        return [AppendResult(self.uidvalidity, uid) for uid in uids]

    async def store(
        self,
        uids: Sequence[int],
        mode: StoreMode,
        flags: frozenset[str],
        origin: object,
        unchangedsince: int | None = None,
    ) -> StoreResult:
        """One new modseq for the messages whose flags really change; the others keep theirs.

        The records change in place and the changes are told as columns: a ``STORE 1:*``
        makes no object per message."""
        changed: list[int] = []
        now: list[frozenset[str]] = []
        failed: list[int] = []
        moved: dict[tuple[frozenset[str], frozenset[str]], list[int]] = {}
        flags -= {RECENT}
        async with self.lane.held() as slices:
            modseq = self.modseqs.upcoming
            async for part in slices.batches(uids):
                plan, refused = plan_store(self._records(part), mode, flags, unchangedsince)
                failed += refused
                last: frozenset[str] | None = None
                shared = flags
                for m, new in plan:
                    if new is not last:  # plan_store shares the result of equal flags
                        last, shared = new, self._flagsets.setdefault(new, new)
                    old = m.flags
                    self.tally.reflag(old, shared, (m.uid,))
                    # the sets of UIDs by flag follow per pair of old and new flags, below
                    members = moved.get((old, shared))
                    if members is None:
                        members = moved[old, shared] = []
                    members.append(m.uid)
                    m.reflag(shared, modseq)
                    changed.append(m.uid)
                    now.append(shared)
                for (old, new), members in moved.items():
                    flagsets.moved(self._having, members, old, new)
                moved.clear()
            result = FlagChangeColumns(changed, now, [modseq] * len(changed))
            if changed:
                self.modseqs.bump()
                self.listeners.flags_changed(self, result, origin)
        return StoreResult(result, failed)

    async def copy(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        """The copies share this mailbox's bytes and parsed info: nothing is duplicated."""
        return await self.transfer(uids, self._account.lookup(destination), origin, move=False)

    async def move(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        return await self.transfer(uids, self._account.lookup(destination), origin, move=True)

    async def transfer(
        self, uids: Sequence[int], target: MemoryMailbox, origin: object, move: bool
    ) -> CopyResult:
        """COPY, or MOVE (COPY, then one expunge), in the target's lane, then (MOVE) in
        ours: never both at once (see the kit's lane)."""
        pairs: list[tuple[int, int]] = []
        async with target.lane.held() as slices:
            modseq = target.modseqs.upcoming
            saved = datetime.now(UTC).replace(microsecond=0)
            async for part in slices.batches(sorted(set(uids)), CHANGE_BATCH):
                for m in self._records(part):
                    copy = target._insert(m.raw, m.info, m.flags, m.internaldate, modseq, saved)
                    pairs.append((m.uid, copy))
            if pairs:
                target.modseqs.bump()
                target.listeners.added(target, [new for _, new in pairs], origin)
        if move and pairs:
            async with self.lane.held() as slices:
                await self._remove(
                    [old for old, _ in pairs if old in self._messages], origin, slices
                )
        return CopyResult(target.uidvalidity, pairs)

    async def expunge(self, uids: Sequence[int] | None, origin: object) -> list[int]:
        gone: list[int] = []
        async with self.lane.held() as slices:
            async for part in slices.batches(
                tuple(self._messages) if uids is None else sorted(set(uids))
            ):
                gone += [m.uid for m in expungeable(self._records(part))]
            await self._remove(gone, origin, slices)
        return gone

    async def expunge_all(self) -> None:
        """The account deleted this mailbox: tell whoever still has it selected."""
        async with self.lane.held() as slices:
            await self._remove(tuple(self._messages), None, slices)

    def _insert(
        self,
        raw: bytes,
        info: MessageInfo,
        flags: frozenset[str],
        date: datetime,
        modseq: int,
        saved: datetime,
    ) -> int:
        """Store a message under a new UID; ``modseq`` is taken from ``self.modseqs``,
        ``saved`` is its SAVEDATE."""
        uid = self._uidnext
        self._uidnext += 1
        flags = self._flagsets.setdefault(flags, flags)
        self._messages[uid] = Message(uid, flags, modseq, date, raw, info, saved)
        self._listed = None
        self._fields.changed()
        self._texts.added(uid, raw, info)
        self.tally.add(uid, flags, len(raw))
        flagsets.reflag(self._having, uid, frozenset(), flags)
        flagsets.add_day(self._on_day, uid, flagsets.date_of(date.date()))
        return uid

    async def _remove(self, uids: Sequence[int], origin: object, slices: TimeSlices) -> None:
        """Drop ``uids`` (all present, ascending) under one new modseq and tell listeners;
        the lane is held."""
        if not uids:
            return
        async for part in slices.batches(uids, CHANGE_BATCH):
            self._listed = None
            for uid in part:
                m = self._messages.pop(uid)
                self.tally.remove(uid, len(m.raw))
                flagsets.reflag(self._having, uid, m.flags, frozenset())
                flagsets.undate(self._on_day, uid, flagsets.date_of(m.internaldate.date()))
                self._fields.removed(uid)
            self._texts.removed(part)
        self.modseqs.expunged(uids, self.modseqs.bump())
        self.listeners.expunged(self, uids, origin)
