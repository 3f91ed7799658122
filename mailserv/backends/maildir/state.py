"""What the reactor thread knows of one maildir mailbox, shared by its sessions.

An ``Entry`` per message by UID and by file base, the counts STATUS and SELECT answer from
(``Tally``), the flag spellings seen, UIDNEXT, HIGHESTMODSEQ and the \\Recent floor.  It
changes only by ``apply``, in the mailbox's lane."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mailserv.backends.kit import Tally
from mailserv.backends.maildir.records import Delta, Entry, Snapshot
from mailserv.interfaces import FlagChange, MailboxStatus


@dataclass(slots=True)
class Applied:
    """What ``apply`` changed, for the listeners."""

    added: list[int] = field(default_factory=list)
    changes: list[FlagChange] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)


class MailboxState:
    def __init__(self, uidvalidity: int = 0, floor: int = 1) -> None:
        self.uidvalidity = uidvalidity
        self.entries: dict[int, Entry] = {}
        self.by_base: dict[str, Entry] = {}
        self._ordered = True
        self.uidnext = 1
        self.modseq = 1
        self.floor = floor
        """UIDs from here on are \\Recent for the next session to claim them."""
        self.tally = Tally()
        self.flag_names: set[str] = set()
        """Every flag spelling messages have had since loading (SEARCH's keyword spellings)."""

    @classmethod
    def of(cls, snapshot: Snapshot) -> MailboxState:
        """The state of a freshly read mailbox, without its ``delta`` (an I/O task: the
        state is new, nobody else sees it yet)."""
        state = cls(snapshot.uidvalidity, snapshot.recent_floor)
        entries = state.entries = {entry.uid: entry for entry in snapshot.entries}
        state.by_base = {entry.base: entry for entry in snapshot.entries}
        state._ordered = list(entries) == sorted(entries)
        floor, tally, names = state.floor, state.tally, state.flag_names
        for entry in snapshot.entries:
            tally.add(entry.uid, entry.flags, entry.size, entry.uid >= floor)
            names |= entry.flags
        return state

    def status(self) -> MailboxStatus:
        return self.tally.status(self.uidvalidity, self.uidnext, len(self.entries), self.modseq)

    def uids(self) -> tuple[int, ...]:
        if not self._ordered:
            self.entries = dict(sorted(self.entries.items()))
            self._ordered = True
        return tuple(self.entries)

    def known(self, uids: Iterable[int]) -> list[Entry]:
        """The entries of ``uids`` still here, ascending."""
        entries = self.entries
        return [entries[uid] for uid in sorted(set(uids)) if uid in entries]

    def path_of(self, uid: int) -> str:
        """The file of ``uid`` relative to the mailbox ("" when unknown)."""
        entry = self.entries.get(uid)
        return entry.path if entry is not None else ""

    def apply(self, delta: Delta) -> Applied:
        entries, by_base, tally = self.entries, self.by_base, self.tally
        done = Applied()
        last = next(reversed(entries)) if entries else 0
        for entry in delta.added:
            if entry.uid in entries:
                continue
            if entry.uid < last:
                self._ordered = False
            last = max(last, entry.uid)
            entries[entry.uid] = entry
            by_base[entry.base] = entry
            tally.add(entry.uid, entry.flags, entry.size, entry.uid >= self.floor)
            self.flag_names |= entry.flags
            done.added.append(entry.uid)
        for update in delta.updated:
            known = entries.get(update.uid)
            if known is None:
                continue
            known.path, known.keep = update.path, update.keep
            if update.modseq and update.flags != known.flags:
                tally.reflag(known.flags, update.flags)
                self.flag_names |= update.flags
                known.flags, known.modseq = update.flags, update.modseq
                done.changes.append(FlagChange(known.uid, known.flags, known.modseq))
        for uid in delta.removed:
            gone = entries.pop(uid, None)
            if gone is None:
                continue
            if by_base.get(gone.base) is gone:
                del by_base[gone.base]
            tally.remove(uid, gone.flags, gone.size)
            done.removed.append(uid)
        self.modseq = max(self.modseq, delta.highestmodseq)
        self.uidnext = max(self.uidnext, delta.uidnext)
        done.added.sort()
        return done

    def clear(self) -> None:
        self.entries.clear()
        self.by_base.clear()
        self.tally.clear()
