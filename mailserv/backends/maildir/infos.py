"""The parsed messages (``MessageInfo``) behind a maildir mailbox's FETCH results.

An entry's info is loaded on first use: from the index (one query per batch), or, when its
row has none, by parsing the file (then the index is given it, in the lane).  Loaded and
delivered infos stay on their entries within a budget of the whole backend
(:class:`KeptInfos`); past it the longest kept are dropped, so a command that reads infos
takes its own references to them (``MaildirMailbox._with_infos``) and never reads an
entry's ``info`` again after a wait."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from mailserv.backends.maildir import sortrow
from mailserv.backends.maildir.filenames import saved_seconds
from mailserv.backends.maildir.records import Entry, file_date
from mailserv.interfaces import SORT_KEYS, MessageMeta, SortKeys
from mailserv.message.info import NO_INFO, MessageInfo
from mailserv.message.lazyinfo import LazyInfo, is_current
from mailserv.message.parse import parse_message
from mailserv.message.sortcolumns import FIELDS, KEY_CHUNK

if TYPE_CHECKING:
    from mailserv.backends.maildir.disk import MailboxDisk
    from mailserv.backends.maildir.mailbox import MaildirMailbox

_log = Logger()


class KeptInfos:
    """The entries holding an info, in the order they got it, at most ``limit`` of them:
    keeping more drops the oldest ones' (a FETCH of every header of a mailbox of 100k
    kept 256 MB until the mailbox was closed).  An entry may be counted twice (given an
    info again after losing it); an expunged one until it is pushed out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: deque[Entry] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def keep(self, entries: Iterable[Entry]) -> None:
        held = self._held
        held.extend(entry for entry in entries if entry.info is not None)
        while len(held) > self.limit:
            held.popleft().info = None


def load_infos(box: MaildirMailbox, entries: Iterable[Entry]) -> None:
    """Give ``entries`` their infos (reactor thread)."""
    wanted = list(entries)
    if not wanted:
        return
    stored = box.disk.index.infos([e.uid for e in wanted])
    for entry in wanted:
        found = stored.get(entry.uid)
        if found is not None and is_current(found.info):
            entry.info = found.lazy()  # decoded when a field is read
        else:
            _reparse(box, entry)


def _reparse(box: MaildirMailbox, entry: Entry) -> None:
    try:
        raw = box.disk.read(entry.path)
    except FileNotFoundError:
        return
    entry.info = info = parse_message(raw)
    uid = entry.uid

    async def remember() -> None:
        async with box.lane:
            if not box.closed and box.has(uid):
                await box.io(box.disk.store_info, uid, info)

    Deferred.fromCoroutine(remember()).addErrback(
        lambda f: _log.failure("Indexing {name} UID {uid} failed", f, name=box.name, uid=uid)
    )


class NamedMeta(MessageMeta):
    """A maildir message's ``MessageMeta``: its save date is read from the file's base name
    (:func:`~mailserv.backends.maildir.filenames.saved_seconds`) only when asked, by FETCH
    SAVEDATE and the SAVED* searches; every other FETCH makes no datetime for it."""

    __slots__ = ("base",)
    base: str

    def __init__(self, entry: Entry, info: MessageInfo) -> None:
        # A frozen dataclass's fields are set so in its own __init__ (not ``savedate``:
        # the property below stands for it).
        setattr_ = object.__setattr__
        setattr_(self, "uid", entry.uid)
        setattr_(self, "flags", entry.flags)
        setattr_(self, "internaldate", entry.date)
        setattr_(self, "size", entry.size)
        setattr_(self, "modseq", entry.modseq)
        setattr_(self, "info", info)
        setattr_(self, "base", entry.base)

    @property
    def savedate(self) -> datetime | None:
        seconds = saved_seconds(self.base)
        return None if seconds is None else file_date(seconds)


def metas(entries: Sequence[Entry], infos: Sequence[MessageInfo | None]) -> list[MessageMeta]:
    """FETCH's view of entries with their ``infos`` (those without one left out)."""
    return [NamedMeta(e, info) for e, info in zip(entries, infos, strict=True) if info is not None]


def flag_metas(entries: Sequence[Entry]) -> list[MessageMeta]:
    """FETCH's view of entries for a caller that reads no info (none is loaded)."""
    return [NamedMeta(e, NO_INFO if e.info is None else e.info) for e in entries]


_READS = tuple(FIELDS[name] for name in SORT_KEYS)
COLUMN_CHUNK = 4096
"""Values of a column gathered between two turns the thread gives the reactor."""


def sort_keys(
    disk: MailboxDisk, known: Mapping[int, Entry], uids: Sequence[int], names: Sequence[str]
) -> tuple[SortKeys, list[tuple[int, bytes]]]:
    """An I/O task: SORT's and THREAD's keys ``names`` of the entries of ``uids`` in
    ``known`` (looked up here: 100k lookups were milliseconds of the reactor's), from the
    keys an entry keeps, else the index's ``sorting`` column (``sortrow``), else the entry's
    info, the index's record or the file (a message gone is left out).  Also the
    ``sorting`` values of the rows that had none (written before it was kept), for the
    caller to store.

    Each entry keeps all its keys once they were read (``Entry.sort``: a few hundred
    bytes, no objects for the collector to walk), and what was decoded for them dies at
    once: a SORT of 100k decoded them on the reactor thread (turns of 90-155 ms) and kept
    the decoded infos; holding them all here until the end made the collector's full
    passes walk them (22-24 ms each)."""
    at = [SORT_KEYS.index(name) for name in names]
    present: list[int] = []
    rows: list[tuple[object, ...]] = []
    owed: list[tuple[int, bytes]] = []
    for start in range(0, len(uids), KEY_CHUNK):
        found = map(known.get, uids[start : start + KEY_CHUNK])  # (one look: it may change)
        part = [entry for entry in found if entry is not None]
        lacking = [e.uid for e in part if e.sort is None]
        kept_rows = disk.load_sorting(lacking) if lacking else {}
        missing = set(lacking).difference(kept_rows)
        wanted = [e.uid for e in part if e.uid in missing and e.info is None]
        stored = disk.load_infos(wanted) if wanted else {}
        for entry in part:
            keys = entry.sort
            if keys is None:
                value = kept_rows.get(entry.uid)
                if value is not None:
                    keys = sortrow.keys(value, float(entry.stamp), entry.size)
                if keys is None:
                    kept = entry.info  # (``KeptInfos`` may drop it meanwhile: then the file)
                    info = _transient(kept) if kept is not None else stored.get(entry.uid)
                    if info is None:
                        try:
                            info = parse_message(disk.read(entry.path))
                        except FileNotFoundError:
                            continue
                    if value is None:
                        owed.append((entry.uid, sortrow.dump(info)))
                    view = NamedMeta(entry, info)
                    keys = tuple(read(view) for read in _READS)
                entry.sort = keys
            present.append(entry.uid)
            rows.append(keys)
        time.sleep(0)  # the reactor thread's turn (the interpreter lock)
    columns: dict[str, list[object]] = {}
    for name, i in zip(names, at, strict=True):
        column = columns[name] = []
        for start in range(0, len(rows), COLUMN_CHUNK):
            column.extend(row[i] for row in rows[start : start + COLUMN_CHUNK])
            time.sleep(0)
    return SortKeys(present, columns), owed


def _transient(info: MessageInfo) -> MessageInfo:
    """A kept info that is still an undecoded record, as a copy to decode here: the kept
    one stays light, and no other thread sees it change."""
    record = info.kept_record() if isinstance(info, LazyInfo) else None
    return info if record is None else LazyInfo(record)
