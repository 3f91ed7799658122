"""File events of the watcher, waiting to be compared with a mailbox's state.

Events are queued as they arrive and turned into *hints* (the bases to look at and the names
they were seen under) inside the mailbox's lane, where the echoes of our own renames are
recognised and dropped."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mailserv.backends.maildir import filenames
from mailserv.backends.maildir.records import Entry
from mailserv.backends.maildir.watch import FLAGS_NOTICE, KEYWORDS

MAX_QUEUED_EVENTS = 100_000
"""Beyond this many unprocessed events a full scan is cheaper (and memory stays bounded)."""
ECHO_CHECK = 1000
"""Events a command compares with the state before it takes the lane (:meth:`PendingEvents.
drop_echoes`); more are left to the lane's scan, which takes them all once."""


@dataclass(frozen=True, slots=True)
class Look:
    """What a scan is to look at."""

    hints: dict[str, set[str]]
    full: bool
    keywords: bool
    """``dovecot-keywords`` changed."""
    indexed: bool = False
    """Another process changed flags in the index without renaming the files yet."""

    def __bool__(self) -> bool:
        return bool(self.hints) or self.full or self.keywords or self.indexed


@dataclass(slots=True)
class PendingEvents:
    events: list[tuple[str, bool]] = field(default_factory=list)
    hints: dict[str, set[str]] = field(default_factory=dict)
    rescan: bool = False
    keywords: bool = False
    indexed: bool = False

    def note(self, relative: str | None, appeared: bool) -> None:
        """One event: ``relative`` appeared or went (None: the watcher lost track)."""
        if relative is None or len(self.events) >= MAX_QUEUED_EVENTS:
            self.events.clear()
            self.rescan = True
        elif relative == KEYWORDS:
            self.keywords = True
        elif relative == FLAGS_NOTICE:
            self.indexed = True
        else:
            self.events.append((relative, appeared))

    def __bool__(self) -> bool:
        return bool(self.events or self.hints or self.rescan or self.keywords or self.indexed)

    def drop_echoes(self, by_base: Mapping[str, Entry]) -> None:
        """Forget the events that agree with ``by_base``: the echoes of our own changes
        once they are applied (a file appeared where an entry has it, or went from where
        none has it).  Only while no change or scan is half applied (the lane is free): an
        event may agree with a state a scan under way is about to change.  More
        than ``ECHO_CHECK`` are left as they are (each command that comes would compare
        them all again)."""
        if len(self.events) > ECHO_CHECK:
            return
        self.events = [
            (relative, appeared)
            for relative, appeared in self.events
            if not _echo(relative, appeared, by_base)
        ]

    def take(self, by_base: Mapping[str, Entry], full: bool = False) -> Look:
        """Everything queued as one ``Look``, dropping the echoes of our own changes
        (events that agree with ``by_base``)."""
        hints = self.hints
        for relative, appeared in self.events:
            if not _echo(relative, appeared, by_base):
                hints.setdefault(_base(relative), set()).add(relative)
        look = Look(hints, full or self.rescan, self.keywords, self.indexed)
        self.clear()
        return look

    def clear(self) -> None:
        self.events = []
        self.hints = {}
        self.rescan = self.keywords = self.indexed = False


def _base(relative: str) -> str:
    return filenames.split(relative[4:])[0]


def _echo(relative: str, appeared: bool, by_base: Mapping[str, Entry]) -> bool:
    """Whether the event agrees with ``by_base``: what we did ourselves, or a name we
    already let go of."""
    entry = by_base.get(_base(relative))
    return appeared == (entry is not None and entry.path == relative)
