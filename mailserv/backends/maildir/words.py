"""The maildir index's word index, beside its trigram index, for TEXT and BODY of
whole-word needles: see :mod:`mailserv.backends.kit.words` for how it answers.  Here, which
texts it holds.

FTS5 cuts a token at 32 KB: texts with a run of ``LONG_RUN`` characters without white space
(which any such token is) stay out of ``words`` and are listed in ``long_texts``, compared
with ``instr()``.  Texts enter ``words`` with the trigram index (:func:`add`, when they leave
``pending``) and leave it with their ``texts`` row (:func:`drop`).  An index made before this
one gets it filled in the background (:func:`backfill`), from the range of UIDs kept in
``meta`` (``words_next`` to ``words_end``); until that is done (:func:`ready`), SEARCH uses
the trigram index alone.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from mailserv.backends.kit import words as vocabulary
from mailserv.backends.kit.words import is_long

WORDS_TABLES = (
    *vocabulary.tables("texts", "uid"),
    "CREATE TABLE IF NOT EXISTS long_texts (uid INTEGER PRIMARY KEY)",
)

BACKFILL_BATCH = 500
"""Texts a step of the background fill adds (a tenth of a second of the writer's time:
less than a batch of the trigram index takes)."""

_NEXT, _END = "words_next", "words_end"


def create(db: sqlite3.Connection) -> None:
    """Make the tables; an index whose texts predate ``words`` gets the
    range of UIDs the background fill goes through."""
    new = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'words'").fetchone() is None
    for statement in WORDS_TABLES:
        db.execute(statement)
    if not new and db.execute("SELECT 1 FROM texts LIMIT 1").fetchone() is None:
        reset(db)  # the texts were dropped (and are made again): what indexed them goes
    elif new:
        (last,) = db.execute("SELECT max(uid) FROM texts").fetchone()
        if last is not None:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(_NEXT, "0"), (_END, str(last + 1))],
            )


def reset(db: sqlite3.Connection) -> None:
    """Forget every text (the index is rebuilt; inside its transaction)."""
    db.execute("INSERT INTO words (words) VALUES ('delete-all')")
    db.execute("DELETE FROM long_texts")
    db.execute("DELETE FROM meta WHERE key IN (?, ?)", (_NEXT, _END))


def mark_long(db: sqlite3.Connection, uids: Iterable[int]) -> None:
    """Texts just stored that stay out of ``words`` (see the module's notes)."""
    db.executemany("INSERT OR IGNORE INTO long_texts (uid) VALUES (?)", [(u,) for u in uids])


def _backlog(db: sqlite3.Connection) -> tuple[int, int]:
    rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN (?, ?)", (_NEXT, _END)))
    return int(rows.get(_NEXT, 0)), int(rows.get(_END, 0))


def ready(db: sqlite3.Connection) -> bool:
    """Whether ``words`` holds every text out of ``pending`` and ``long_texts``."""
    low, high = _backlog(db)
    return low >= high


_IN_WORDS = (
    "uid NOT IN (SELECT uid FROM pending) AND uid NOT IN (SELECT uid FROM long_texts) "
    "AND NOT (uid >= ? AND uid < ?)"
)
"""Of the ``texts`` rows, those in ``words`` (two marks: the backlog's range)."""


def add(db: sqlite3.Connection, uids: Sequence[int]) -> None:
    """Index the texts of ``uids`` that just left ``pending`` (inside a transaction)."""
    low, high = _backlog(db)
    vocabulary.index(
        db,
        "SELECT uid, header, body FROM texts WHERE uid = ? "
        "AND uid NOT IN (SELECT uid FROM long_texts) AND NOT (uid >= ? AND uid < ?)",
        [(uid, low, high) for uid in uids],
    )


def drop(db: sqlite3.Connection, uids: Sequence[int]) -> None:
    """Before the ``texts`` rows of ``uids`` go: take them out of ``words`` (an external-
    content index re-reads them from ``texts``: half the CPU of its 'delete' command given
    the same values) and of ``long_texts``."""
    low, high = _backlog(db)
    indexed = db.execute(
        f"SELECT uid FROM texts WHERE uid IN (SELECT value FROM json_each(?)) AND {_IN_WORDS}",
        (json.dumps(list(uids)), low, high),
    ).fetchall()
    db.executemany("DELETE FROM words WHERE rowid = ?", indexed)
    db.executemany("DELETE FROM long_texts WHERE uid = ?", [(uid,) for uid in uids])


def backfill(db: sqlite3.Connection, limit: int) -> bool:
    """One step of filling ``words`` with texts indexed before it (in a transaction of
    its own); whether there is more to do."""
    db.execute("BEGIN IMMEDIATE")
    try:
        low, high = _backlog(db)
        if low >= high:
            db.execute("COMMIT")
            return False
        rows = db.execute(
            "SELECT uid, header, body FROM texts WHERE uid >= ? AND uid < ? "
            "AND uid NOT IN (SELECT uid FROM pending) ORDER BY uid LIMIT ?",
            (low, high, limit),
        ).fetchall()
        upto = rows[-1][0] + 1 if len(rows) == limit else high
        mark_long(db, [uid for uid, header, body in rows if is_long(header, body)])
        # The rows leave the backlog first: ``add`` indexes those out of its range.
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(upto), _NEXT))
        add(db, [uid for uid, _, _ in rows])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return upto < high
