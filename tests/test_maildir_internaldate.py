"""A maildir message's INTERNALDATE keeps the offset APPEND gave it (RFC 3501 6.3.11) when
another process sharing the mailbox sees the message first through its files: ``mailserv
restore`` or a second worker delivering while the server watches.

The other process's view is a second ``MailboxDisk`` on the same directory, scanning as the
server does on a file event (with hints, no lock); it scans at the moment the delivering
side has renamed its files into ``cur/`` and is about to return, the moment a watcher can
see them.  The index row (which holds the offset) must be there by then, else the watcher
parses the file and takes its mtime, in UTC."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailserv.backends.maildir.disk import MailboxDisk
from mailserv.backends.maildir.filenames import BaseNames, split
from mailserv.backends.maildir.pending import Look
from mailserv.backends.maildir.records import Entry, FlagUpdate

WHEN = datetime(2021, 3, 5, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
SEEN = frozenset({"\\Seen"})


def message(n: int) -> bytes:
    return f"From: a@example.org\r\nSubject: note {n}\r\n\r\nbody {n}\r\n".encode()


class Side:
    """One process's disk side of the mailbox and the entries it knows (as its mailbox
    state would hold them: the deltas of its scans applied)."""

    def __init__(self, directory: Path) -> None:
        self.disk = MailboxDisk(str(directory), False, BaseNames())
        self.known: dict[str, Entry] = {}
        self.apply(self.disk.load(lambda: 1234).delta.added)

    def apply(self, added: list[Entry], updated: Sequence[FlagUpdate] = ()) -> None:
        self.known.update((entry.base, entry) for entry in added)
        by_uid = {entry.uid: entry for entry in self.known.values()}
        for update in updated:
            entry = by_uid[update.uid]
            entry.path, entry.flags, entry.keep = update.path, update.flags, update.keep

    def watch(self) -> None:
        """A scan as one after inotify events for the files now in ``cur/`` and ``new/``."""
        hints: dict[str, set[str]] = {}
        for sub in ("new", "cur"):
            for name in os.listdir(self.disk.path(sub)):
                base = split(name)[0]
                entry = self.known.get(base)
                if entry is None or entry.path != f"{sub}/{name}":
                    hints.setdefault(base, set()).add(f"{sub}/{name}")
        if hints:
            delta = self.disk.scan(self.known, Look(hints, False, False))
            self.apply(delta.added, delta.updated)


@pytest.fixture
def sides(tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    box = tmp_path / "box"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    server = Side(box)
    restorer = Side(box)
    yield server, restorer
    server.disk.close()
    restorer.disk.close()


def deliver(side: Side, count: int, flags: frozenset[str] = frozenset()) -> list[Entry]:
    prepared = [side.disk.prepare(message(n), flags, WHEN) for n in range(count)]
    added = side.disk.deliver(prepared).added
    side.apply(added)
    return added


def test_a_watcher_sees_the_offset_of_another_process_delivery(
    sides: tuple[Side, Side],
) -> None:
    server, restorer = sides
    synced = restorer.disk.uidlist.sync

    def renamed_then_watched() -> None:
        # The files are in cur/ now; the server's watcher may scan before we go on.
        synced()
        server.watch()

    restorer.disk.uidlist.sync = renamed_then_watched  # type: ignore[method-assign]
    added = deliver(restorer, 3, SEEN)
    restorer.disk.uidlist.sync = synced  # type: ignore[method-assign]
    server.watch()  # the events that came later: nothing more to learn
    assert sorted(e.uid for e in server.known.values()) == [e.uid for e in added]
    for entry in server.known.values():
        assert entry.date == WHEN and entry.date.utcoffset() == timedelta(hours=2)
        assert entry.flags == SEEN
    rows = server.disk.index.stored_rows([e.uid for e in added])
    assert {row.tz for row in rows.values()} == {120}


def test_a_flag_change_by_another_program_keeps_the_offset(sides: tuple[Side, Side]) -> None:
    """The delivered file renamed (a flag set by Dovecot or mbsync) before the server looked:
    the server takes the new flags, and the date and offset from the index row."""
    server, restorer = sides
    [entry] = deliver(restorer, 1)
    path = restorer.disk.path(entry.path)
    os.rename(path, path + "S")
    server.watch()
    [seen] = server.known.values()
    assert (seen.uid, seen.flags, seen.date) == (entry.uid, SEEN, WHEN)
    assert seen.date.utcoffset() == timedelta(hours=2)
    row = server.disk.index.stored_rows([entry.uid])[entry.uid]
    assert (row.flags, row.tz) == (SEEN, 120) and row.modseq > entry.modseq
    # The delivering side learns of the flag change from the same row.
    restorer.watch()
    assert restorer.known[entry.base].flags == SEEN
