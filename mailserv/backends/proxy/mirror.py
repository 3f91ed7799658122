"""What mailserv knows of one selected upstream mailbox, kept up to date by its channel.

The mirror holds the upstream's UID list (which is also the channel connection's sequence
map), and per message the flags, internal date, size and mod-sequence, plus the parsed
``MessageInfo`` once it is known.  Every change goes through :meth:`Mirror.add`,
:meth:`Mirror.set_flags` and :meth:`Mirror.remove`, which keep the counters right and queue
listener events; :meth:`Mirror.emit` delivers the queue.  Nothing here does I/O.

When the upstream has no CONDSTORE, mod-sequences are made up here: a counter seeded from
the clock, raised on every change the mirror sees.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from twisted.logger import Logger

from mailserv.backends.kit import ListenerSet, ModseqLog, flagsets
from mailserv.backends.kit.fieldtexts import FoldedFields
from mailserv.interfaces import (
    RECENT,
    SEEN,
    Changes,
    FlagChange,
    IMailbox,
    MailboxStatus,
    MessageMeta,
)
from mailserv.message.info import MessageInfo, Part

if TYPE_CHECKING:
    from mailserv.backends.proxy.rows import Row

_log = Logger()

T = TypeVar("T")

NO_INFO = MessageInfo(
    b"", b"", b"", Part(0, 0, 0, "text/plain", "7bit", None), "", "", "", "", "", None
)
"""Stands in a MessageMeta until the message has been parsed (never handed out)."""


class Mirror:
    """One mailbox's state; ``infos`` is the (UIDVALIDITY-keyed) parsed-message cache."""

    def __init__(self, uidvalidity: int, condstore: bool, infos: dict[int, MessageInfo]) -> None:
        self.uidvalidity = uidvalidity
        self.condstore = condstore
        self.infos = infos
        self.uidnext = 1
        self.modseqs = ModseqLog(1 if condstore else int(time.time() * 1000))
        self.base_modseq = self.modseqs.highest
        self.history_from = self.modseqs.highest
        """Expunges after this modseq are in ``modseqs``; those before were not seen."""
        self.uids: list[int] = []
        self.meta: dict[int, MessageMeta] = {}
        self.unclaimed: set[int] = set()
        self.unparsed: set[int] = set()  # UIDs whose MessageInfo is not known yet
        # SEARCH of flags, internal dates and address/subject fields (see kit.flagsets and
        # kit.fieldtexts), kept as messages come, change and go:
        self.having: flagsets.Having = {}
        self.on_day: flagsets.OnDay = {}
        self.fields = FoldedFields()
        self.size = 0
        self._added: list[tuple[int, object]] = []
        self._flags: list[tuple[FlagChange, object]] = []
        self._gone: list[tuple[int, object]] = []

    @property
    def highestmodseq(self) -> int:
        return self.modseqs.highest

    @highestmodseq.setter
    def highestmodseq(self, value: int) -> None:
        self.modseqs.highest = value

    # -- reading --------------------------------------------------------------------------

    def status(self) -> MailboxStatus:
        return MailboxStatus(
            uidvalidity=self.uidvalidity,
            uidnext=max(self.uidnext, self.uids[-1] + 1 if self.uids else 1),
            messages=len(self.uids),
            unseen=len(self.uids) - len(self.having.get(SEEN, ())),
            recent=len(self.unclaimed),
            highestmodseq=self.highestmodseq,
            size=self.size,
        )

    def uid_at(self, seq: int) -> int | None:
        return self.uids[seq - 1] if 0 < seq <= len(self.uids) else None

    @property
    def last(self) -> int:
        return self.uids[-1] if self.uids else 0

    def present(self, uids: Sequence[int]) -> list[int]:
        """The UIDs of ``uids`` the mailbox holds, ascending, each once."""
        return [uid for uid in sorted(set(uids)) if uid in self.meta]

    def missing_info(self, uids: Sequence[int]) -> list[int]:
        unparsed = self.unparsed
        return [uid for uid in uids if uid in unparsed] if unparsed else []

    def metas(self, uids: Sequence[int]) -> list[MessageMeta]:
        meta = self.meta
        return [meta[uid] for uid in uids if uid in meta]

    def changes_since(self, modseq: int) -> Changes:
        return Changes(
            changed=[m for m in self.meta.values() if m.modseq > modseq],
            vanished=self.modseqs.vanished_since(modseq),
            highestmodseq=self.highestmodseq,
            complete=modseq >= self.history_from,
        )

    def claim_recent(self) -> list[int]:
        claimed = sorted(self.unclaimed)
        self.unclaimed.clear()
        return claimed

    # -- changing -------------------------------------------------------------------------

    def next_modseq(self, upstream: int | None) -> int:
        """The mod-sequence of a change: the upstream's, or a made-up next one."""
        if upstream is not None and self.condstore:
            self.highestmodseq = max(self.highestmodseq, upstream)
            return upstream
        return self.modseqs.bump()

    def note_highest(self, modseq: int) -> None:
        if self.condstore:
            self.highestmodseq = max(self.highestmodseq, modseq)

    def add(
        self,
        uid: int,
        flags: frozenset[str],
        internaldate: datetime,
        size: int,
        modseq: int | None,
        origin: object,
        recent: bool = True,
    ) -> bool:
        """A message at the end of the list; False when it is no newer than the last."""
        if uid <= self.last:
            return False
        info = self.infos.get(uid, NO_INFO)
        flags = flags - {RECENT}
        stamp = modseq if modseq is not None and self.condstore else self.next_modseq(None)
        if self.condstore and modseq is not None:
            self.highestmodseq = max(self.highestmodseq, modseq)
        self.meta[uid] = MessageMeta(uid, flags, internaldate, size, stamp, info)
        self.uids.append(uid)
        self.uidnext = max(self.uidnext, uid + 1)
        self.size += size
        if info is NO_INFO:
            self.unparsed.add(uid)
        flagsets.reflag(self.having, uid, frozenset(), flags)
        flagsets.add_day(self.on_day, uid, flagsets.date_of(internaldate.date()))
        self.fields.changed()
        if recent:
            self.unclaimed.add(uid)
        self._added.append((uid, origin))
        return True

    def set_info(self, uid: int, info: MessageInfo) -> None:
        self.infos[uid] = info
        meta = self.meta.get(uid)
        if meta is not None and meta.info is NO_INFO:
            self.meta[uid] = MessageMeta(
                uid, meta.flags, meta.internaldate, meta.size, meta.modseq, info
            )
            self.unparsed.discard(uid)
            self.fields.removed(uid)  # nothing folded from the stand-in stays

    def set_flags(
        self, uid: int, flags: frozenset[str], modseq: int | None, origin: object
    ) -> FlagChange | None:
        """New flags of a message; the change, or None when nothing changed."""
        meta = self.meta.get(uid)
        if meta is None:
            return None
        flags = flags - {RECENT}
        if flags == meta.flags:
            if modseq is not None and self.condstore and modseq > meta.modseq:
                self.meta[uid] = MessageMeta(
                    uid, flags, meta.internaldate, meta.size, modseq, meta.info
                )
                self.note_highest(modseq)
            return None
        stamp = self.next_modseq(modseq)
        flagsets.reflag(self.having, uid, meta.flags, flags)
        self.meta[uid] = MessageMeta(uid, flags, meta.internaldate, meta.size, stamp, meta.info)
        change = FlagChange(uid, flags, stamp)
        self._flags.append((change, origin))
        return change

    def remove(self, uids: Sequence[int], origin: object) -> list[int]:
        """Drop the given UIDs that are here; those dropped, ascending."""
        gone = sorted(uid for uid in set(uids) if uid in self.meta)
        if not gone:
            return []
        modseq = self.modseqs.bump()
        self.modseqs.expunged(gone, modseq)
        for uid in gone:
            meta = self.meta.pop(uid)
            index = bisect_left(self.uids, uid)
            del self.uids[index]
            self.size -= meta.size
            self.unclaimed.discard(uid)
            self.unparsed.discard(uid)
            flagsets.reflag(self.having, uid, meta.flags, frozenset())
            flagsets.undate(self.on_day, uid, flagsets.date_of(meta.internaldate.date()))
            self.fields.removed(uid)
            self._gone.append((uid, origin))
        return gone

    # -- events ---------------------------------------------------------------------------

    def resync(self, rows: list[Row]) -> None:
        """Come in line with a fresh listing; the differences queue as events."""
        listed = {row[0] for row in rows}
        self.remove([uid for uid in self.uids if uid not in listed], None)
        for uid, flags, date, size, modseq in rows:
            if uid in self.meta:
                self.set_flags(uid, flags, modseq, None)
            else:
                self.add(uid, flags, date, size, modseq, None)

    def discard_events(self) -> None:
        self._added, self._flags, self._gone = [], [], []

    def emit(self, mailbox: IMailbox, listeners: ListenerSet) -> None:
        """Deliver the queued events, grouped by origin: added, flags, then expunged."""
        added, self._added = self._added, []
        flags, self._flags = self._flags, []
        gone, self._gone = self._gone, []
        if not listeners:
            return
        for origin, uids in _grouped(added):
            listeners.added(mailbox, uids, origin)
        for origin, changes in _grouped(flags):
            listeners.flags_changed(mailbox, changes, origin)
        for origin, uids in _grouped(gone):
            listeners.expunged(mailbox, uids, origin)


def _grouped(items: Sequence[tuple[T, object]]) -> list[tuple[object, list[T]]]:
    """Runs of the same origin, in order."""
    out: list[tuple[object, list[T]]] = []
    for value, origin in items:
        if out and out[-1][0] is origin:
            out[-1][1].append(value)
        else:
            out.append((origin, [value]))
    return out
