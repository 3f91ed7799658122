"""Plain data passed between a mailbox (reactor thread) and its disk side (I/O tasks)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from mailserv.backends.maildir.textrow import TextRow
from mailserv.message.info import MessageInfo


@dataclass(slots=True)
class Entry:
    """One message as the mailbox knows it.  Mutated only by the task holding the lane."""

    uid: int
    base: str
    path: str  # relative to the mailbox directory: "cur/<base>:2,<letters>" or "new/<base>"
    flags: frozenset[str]
    keep: str  # info letters we do not map (kept through flag changes)
    modseq: int
    size: int  # with CRLF line ends
    stamp: int  # internal date: seconds since the epoch
    tz: int  # and the offset it was given in, minutes east of UTC
    info: MessageInfo | None = None  # loaded from the index on first FETCH
    sort: tuple[object, ...] | None = None
    """Every SORT and THREAD key (``SORT_KEYS`` order), once one was asked for."""

    @property
    def date(self) -> datetime:
        """The internal date (made when asked: a mailbox loads without a datetime per
        message)."""
        return file_date(self.stamp, self.tz)

    @property
    def day(self) -> int:
        """The internal date's calendar day in its own offset, in days since the epoch
        (what SEARCH SINCE, BEFORE and ON compare)."""
        return (self.stamp + 60 * self.tz) // DAY


Source = tuple[str, Entry, frozenset[str], MessageInfo]
"""A message to COPY: its file's absolute path, its entry, the copy's flags, its info."""


@dataclass(slots=True)
class Prepared:
    """A message file written to ``tmp/`` (or linked there), waiting for its UID."""

    base: str
    tmp: str  # absolute path
    size: int
    date: datetime
    info: MessageInfo
    blob: bytes | None  # info serialised for the index; None when it must be recomputed
    flags: frozenset[str] = frozenset()
    source_uid: int = 0  # for COPY: the UID it was copied from
    texts: TextRow | None = None  # what SEARCH looks at (None: the index makes it later)


@dataclass(slots=True)
class FlagUpdate:
    uid: int
    path: str
    flags: frozenset[str]
    keep: str
    modseq: int  # 0: path only, the flags did not change


@dataclass
class Delta:
    """What one disk task changed; the mailbox applies it, then tells its listeners."""

    added: list[Entry] = field(default_factory=list)
    updated: list[FlagUpdate] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # UIDs whose files moved under us
    highestmodseq: int = 0
    uidnext: int = 0
    flagged: dict[frozenset[str], list[int]] = field(default_factory=dict)
    """A STORE of many (``MailboxDisk.owe_flags``): the UIDs (ascending) that now have
    each set of flags, all at ``highestmodseq``, their files still at their names (no
    object per message: ``renamer``)."""
    ascending: bool = False
    """``added`` are ascending by UID, above every UID of the mailbox (a delivery of ours):
    they may go in a few at a time, a reader between two steps sees the first of them as
    if they had come one after another (``MailboxState.steps``)."""

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.flagged)


@dataclass
class Snapshot:
    """A loaded mailbox: its index rows, then the changes found on disk since."""

    uidvalidity: int
    entries: list[Entry]
    delta: Delta
    recent_floor: int
    texts_complete: bool = True
    owed: list[int] = field(default_factory=list)
    """UIDs whose files are still to be renamed for their flags (``renamer``)."""
    guid: str = ""
    """The mailbox GUID of ``dovecot-uidlist`` (its RFC 8474 MAILBOXID); '' when none."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = 86400


def file_date(mtime: float, tz_minutes: int = 0) -> datetime:
    """An internal date from a file mtime, in the offset it was originally given in.

    (Adding to the epoch is several times faster than ``fromtimestamp`` with a zone, which
    counts when a large mailbox is loaded.)"""
    when = _EPOCH + timedelta(seconds=int(mtime))
    return when.astimezone(_zone(tz_minutes)) if tz_minutes else when


@functools.lru_cache(maxsize=64)
def _zone(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


def tz_minutes(when: datetime) -> int:
    offset = when.utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def stamp_of(when: datetime) -> tuple[int, int]:
    """An internal date as an ``Entry`` keeps it: (seconds since the epoch, offset)."""
    return int(when.timestamp()), tz_minutes(when)


def shape_of(path: str, base: str) -> str:
    """A message path without its base ("cur/:2,S" for "cur/<base>:2,S"): what the index
    keeps of the names of files owing a rename, the same for most of a mailbox."""
    sub, _, name = path.partition("/")
    return f"{sub}/{name.removeprefix(base)}"


def shaped(shape: str, base: str) -> str:
    """The path of ``base`` in ``shape``."""
    sub, _, rest = shape.partition("/")
    return f"{sub}/{base}{rest}"
