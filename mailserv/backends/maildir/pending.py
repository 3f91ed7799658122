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

    def take(self, by_base: Mapping[str, Entry], full: bool = False) -> Look:
        """Everything queued as one ``Look``, dropping the echoes of our own changes
        (events that agree with ``by_base``)."""
        hints = self.hints
        for relative, appeared in self.events:
            base = filenames.split(relative[4:])[0]
            entry = by_base.get(base)
            if appeared == (entry is not None and entry.path == relative):
                continue  # what we did ourselves, or a name we already let go of
            hints.setdefault(base, set()).add(relative)
        look = Look(hints, full or self.rescan, self.keywords, self.indexed)
        self.clear()
        return look

    def clear(self) -> None:
        self.events = []
        self.hints = {}
        self.rescan = self.keywords = self.indexed = False
