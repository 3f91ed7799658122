"""One mailbox held in process memory.

Everything is kept so that the calls made on every command stay cheap: ``status()`` reads
counters maintained as messages come and go, and ``fetch()`` is one dict lookup per UID.
The dict keyed by UID also serves as the sorted UID list: a dict keeps insertion order and
a new UID is always the largest, so the keys are ascending without any sorting.  Listeners
and modseqs are the kit's (:class:`ListenerSet`, :class:`ModseqLog`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from zope.interface import implementer

from mailserv.backends.kit import ListenerSet, ModseqLog
from mailserv.interfaces import (
    DELETED,
    RECENT,
    SEEN,
    AppendResult,
    Changes,
    CopyResult,
    FlagChange,
    IMailbox,
    IMailboxListener,
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
class MemoryMailbox:
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
        self._unclaimed: set[int] = set()  # \Recent to whichever session claims them first
        self._unseen = self._size = 0
        self.modseqs = ModseqLog()
        self.listeners = ListenerSet()

    async def status(self) -> MailboxStatus:
        """O(1): ``recent`` counts the messages no session has claimed yet."""
        return MailboxStatus(
            uidvalidity=self.uidvalidity,
            uidnext=self._uidnext,
            messages=len(self._meta),
            unseen=self._unseen,
            recent=len(self._unclaimed),
            highestmodseq=self.modseqs.highest,
            size=self._size,
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
        return Changes(
            changed=[m for m in self._meta.values() if m.modseq > modseq],
            vanished=self.modseqs.vanished_since(modseq),
            highestmodseq=self.modseqs.highest,
        )

    async def claim_recent(self) -> list[int]:
        claimed = sorted(self._unclaimed)
        self._unclaimed.clear()
        return claimed

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
        """Messages whose flags end up the same keep their modseq and are not reported."""
        flags = flags - {RECENT}
        modseq = self.modseqs.highest + 1  # taken only if something changes
        changed: list[FlagChange] = []
        failed: list[int] = []
        for meta in self._fetch(uids):
            if unchangedsince is not None and meta.modseq > unchangedsince:
                failed.append(meta.uid)
                continue
            new = mode.apply(meta.flags, flags)
            if new != meta.flags:
                self._unseen += (SEEN in meta.flags) - (SEEN in new)
                self._meta[meta.uid] = MessageMeta(
                    meta.uid, new, meta.internaldate, meta.size, modseq, meta.info
                )
                changed.append(FlagChange(meta.uid, new, modseq))
        if changed:
            self.modseqs.bump()
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
        candidates = self._meta if uids is None else sorted(set(uids))
        meta = self._meta
        gone = [uid for uid in candidates if uid in meta and DELETED in meta[uid].flags]
        self._remove(gone, origin)
        return gone

    def add_listener(self, listener: IMailboxListener) -> None:
        self.listeners.add(listener)

    def remove_listener(self, listener: IMailboxListener) -> None:
        self.listeners.remove(listener)

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
        self._unclaimed.add(uid)
        self._size += len(raw)
        self._unseen += SEEN not in flags
        return uid

    def _remove(self, uids: list[int], origin: object) -> None:
        """Drop ``uids`` (all present, ascending) under one new modseq and tell listeners."""
        if not uids:
            return
        modseq = self.modseqs.bump()
        for uid in uids:
            meta = self._meta.pop(uid)
            del self._raw[uid]
            self._size -= meta.size
            self._unseen -= SEEN not in meta.flags
        self.modseqs.expunged(uids, modseq)
        self._unclaimed.difference_update(uids)
        self.listeners.expunged(self, uids, origin)
