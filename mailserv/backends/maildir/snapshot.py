"""A packed copy of the index's message columns, read at a load instead of the rows.

A mailbox's first load reads every row of its index (UID, base, flags, modseq, size,
internal date): at 100k messages the query and the conversion of its text cost most of the
load.  When a mailbox with many messages is closed (the server stops), the rows are kept
here as well, ``Index.columns``' steps each packed in one row of ``snapshot``: the numbers
as machine integers (``array``), the bases and flags as lines.  The next load takes them
when nothing changed since: every change of a message row takes a new HIGHESTMODSEQ in
the same transaction, so the kept HIGHESTMODSEQ and row count, equal to the index's, say
the copy is exact.  The index stays the truth; the copy is dropped with it on a rebuild."""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS snapshot (part INTEGER PRIMARY KEY, uid BLOB NOT NULL, "
    "modseq BLOB NOT NULL, size BLOB NOT NULL, date BLOB NOT NULL, tz BLOB NOT NULL, "
    "base BLOB NOT NULL, flags BLOB NOT NULL)"
)
KEY = "snapshot"
"""The meta row saying which index state the snapshot copies: "<highestmodseq>:<rows>"."""
_NUMBERS = ("uid", "modseq", "size", "date", "tz")


@dataclass(slots=True)
class Columns:
    """Message rows by column (flags as stored: sorted names, space separated)."""

    uid: list[int]
    base: list[str]
    flags: list[str]
    modseq: list[int]
    size: list[int]
    date: list[int]
    tz: list[int]


def key(db: sqlite3.Connection) -> str:
    """What the index's message rows are now, as the snapshot's key records it."""
    row = db.execute("SELECT value FROM meta WHERE key = 'highestmodseq'").fetchone()
    (count,) = db.execute("SELECT count(*) FROM message").fetchone()
    return f"{row[0] if row else 1}:{count}"


def valid(db: sqlite3.Connection) -> bool:
    """Whether the snapshot copies the rows as they are (inside a read transaction)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (KEY,)).fetchone()
    return row is not None and row[0] == key(db)


def read(db: sqlite3.Connection) -> Iterator[Columns] | None:
    """The kept steps, in order, unpacked as they are taken; None when a part is not as
    ``write`` makes them (then the rows are read).  Check ``valid`` first, in the same
    transaction."""
    parts = db.execute(
        "SELECT uid, modseq, size, date, tz, base, flags FROM snapshot ORDER BY part"
    ).fetchall()
    for part in parts:
        if not all(isinstance(value, bytes) for value in part):
            return None
        count, odd = divmod(len(part[0]), 8)
        if odd or any(len(packed) != len(part[0]) for packed in part[1:5]):
            return None
        if not count or any(lines.count(b"\n") != count - 1 for lines in part[5:]):
            return None
    return _unpack(parts)


def _unpack(parts: list[tuple[bytes, ...]]) -> Iterator[Columns]:
    for part in parts:
        numbers = []
        for packed in part[:5]:
            column = array("q")
            column.frombytes(packed)
            numbers.append(column.tolist())
        uid, modseq, size, date, tz = numbers
        base = part[5].decode("utf-8", "surrogateescape").split("\n")
        flags = part[6].decode("utf-8", "surrogateescape").split("\n")
        yield Columns(uid, base, flags, modseq, size, date, tz)


def write(db: sqlite3.Connection, steps: Iterable[Columns]) -> bool:
    """Replace the snapshot by ``steps`` (inside a write transaction, with ``key`` as it
    is in that transaction); False, leaving none, when a base or flag holds a line end."""
    drop(db)
    for part, step in enumerate(steps):
        lines = []
        for texts in (step.base, step.flags):
            joined = "\n".join(texts)
            if joined.count("\n") != len(texts) - 1:
                drop(db)
                return False
            lines.append(joined.encode("utf-8", "surrogateescape"))
        packed = [array("q", getattr(step, name)).tobytes() for name in _NUMBERS]
        db.execute("INSERT INTO snapshot VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (part, *packed, *lines))
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (KEY, key(db)))
    return True


def drop(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM snapshot")
    db.execute("DELETE FROM meta WHERE key = ?", (KEY,))
