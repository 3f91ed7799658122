"""One mailbox held in process memory.

Everything is kept so that the calls made on every command stay cheap: ``status()`` reads
counters maintained as messages come and go (the kit's :class:`Tally`), and ``fetch()`` is
one dict lookup per UID.  The dict keyed by UID also serves as the sorted UID list: a dict
keeps insertion order and a new UID is always the largest, so the keys ascend unsorted.
Listeners, modseqs and the planning of STORE and EXPUNGE are the kit's too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from zope.interface import implementer

from mailserv.backends.kit import Listened, ListenerSet, ModseqLog, Tally, expungeable, plan_store
from mailserv.interfaces import (
    RECENT,
    AppendResult,
    Changes,
    CopyResult,
    FlagChange,
    IMailbox,
    MailboxStatus,
    MessageMeta,
    StoreMode,
    StoreResult,
)
from mailserv.message.info import MessageInfo
from mailserv.message.parse import parse_message

if TYPE_CHECKING:
    from mailserv.backends.memory.account import MemoryAccount


@implementer(IMailbox)
class MemoryMailbox(Listened):
    """The one object every session of the process shares for a mailbox name."""

    def __init__(
        self, name: str, uidvalidity: int, account: MemoryAccount, attributes: frozenset[str]
    ) -> None:
        self.name = name
        self.uidvalidity = uidvalidity
        self.attributes = attributes  # special-use, e.g. {"\\Sent"}
        self._account = account  # resolves COPY/MOVE destinations
        self._meta: dict[int, MessageMeta] = {}  # keys ascending (see above)
        self._raw: dict[int, bytes] = {}  # the only copy of each message's bytes
        self._uidnext = 1
        self.tally = Tally()
        self.modseqs = ModseqLog()
        self.listeners = ListenerSet()

    async def status(self) -> MailboxStatus:
        return self.tally.status(
            self.uidvalidity, self._uidnext, len(self._meta), self.modseqs.highest
        )

    async def uids(self) -> tuple[int, ...]:
        """A snapshot: later appends and expunges do not show through it."""
        return tuple(self._meta)

    async def fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        return self._fetch(uids)

    def _fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        meta = self._meta
        return [meta[uid] for uid in uids if uid in meta]

    async def content(self, uid: int) -> bytes:
        return self._raw[uid]

    async def changes_since(self, modseq: int) -> Changes:
        return self.modseqs.changes(self._meta.values(), modseq)

    async def claim_recent(self) -> list[int]:
        return self.tally.claim()

    async def append(
        self, message: bytes, flags: frozenset[str], internaldate: datetime | None, origin: object
    ) -> AppendResult:
        """Parse once, here; FETCH and SEARCH read the stored ``MessageInfo`` afterwards."""
        info, when = parse_message(message), internaldate or datetime.now(UTC)
        uid = self._insert(message, info, flags - {RECENT}, when, self.modseqs.bump())
        self.listeners.added(self, [uid], origin)
        return AppendResult(self.uidvalidity, uid)

    async def store(
        self,
        uids: Sequence[int],
        mode: StoreMode,
        flags: frozenset[str],
        origin: object,
        unchangedsince: int | None = None,
    ) -> StoreResult:
        """One new modseq for the messages whose flags really change; the others keep theirs."""
        plan, failed = plan_store(self._fetch(uids), mode, flags - {RECENT}, unchangedsince)
        if not plan:
            return StoreResult([], failed)
        modseq = self.modseqs.bump()
        for m, new in plan:
            self.tally.reflag(m.flags, new)
            self._meta[m.uid] = MessageMeta(m.uid, new, m.internaldate, m.size, modseq, m.info)
        changed = [FlagChange(m.uid, new, modseq) for m, new in plan]
        self.listeners.flags_changed(self, changed, origin)
        return StoreResult(changed, failed)

    async def copy(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        """The copies share this mailbox's bytes and parsed info: nothing is duplicated."""
        return self.transfer(uids, self._account.lookup(destination), origin, move=False)

    async def move(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        return self.transfer(uids, self._account.lookup(destination), origin, move=True)

    def transfer(
        self, uids: Sequence[int], target: MemoryMailbox, origin: object, move: bool
    ) -> CopyResult:
        """COPY, or MOVE (COPY, then one expunge), at once."""
        sources = self._fetch(sorted(set(uids)))
        if not sources:
            return CopyResult(target.uidvalidity, [])
        modseq = target.modseqs.bump()
        pairs = [
            (m.uid, target._insert(self._raw[m.uid], m.info, m.flags, m.internaldate, modseq))
            for m in sources
        ]
        target.listeners.added(target, [new for _, new in pairs], origin)
        if move:
            self._remove([old for old, _ in pairs], origin)
        return CopyResult(target.uidvalidity, pairs)

    async def expunge(self, uids: Sequence[int] | None, origin: object) -> list[int]:
        candidates = self._meta.values() if uids is None else self._fetch(sorted(set(uids)))
        gone = [m.uid for m in expungeable(candidates)]
        self._remove(gone, origin)
        return gone

    def expunge_all(self) -> None:
        """The account deleted this mailbox: tell whoever still has it selected."""
        self._remove(list(self._meta), None)

    def _insert(
        self, raw: bytes, info: MessageInfo, flags: frozenset[str], date: datetime, modseq: int
    ) -> int:
        """Store a message under a new UID; ``modseq`` is taken from ``self.modseqs``."""
        uid = self._uidnext
        self._uidnext += 1
        self._meta[uid] = MessageMeta(uid, flags, date, len(raw), modseq, info)
        self._raw[uid] = raw
        self.tally.add(uid, flags, len(raw))
        return uid

    def _remove(self, uids: list[int], origin: object) -> None:
        """Drop ``uids`` (all present, ascending) under one new modseq and tell listeners."""
        if not uids:
            return
        modseq = self.modseqs.bump()
        for uid in uids:
            meta = self._meta.pop(uid)
            del self._raw[uid]
            self.tally.remove(uid, meta.flags, meta.size)
        self.modseqs.expunged(uids, modseq)
        self.listeners.expunged(self, uids, origin)
