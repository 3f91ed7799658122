"""A word index beside the trigram index, for TEXT and BODY of whole-word needles.

The trigram index answers a needle made of very common trigrams (``migration``: "ati",
"ion") by intersecting huge position lists.  A needle made only of word characters (as
FTS5's ``unicode61`` tokenizer classes them) cannot span a word boundary: it occurs in a
text exactly where a word (a token) of that text contains it.  So:

- ``words``: an FTS5 index of ``texts`` with the ``unicode61`` tokenizer, diacritics kept
  (so it folds case only, with the same table as the trigram tokenizer: the identity on
  case-folded text but for U+FFFE and U+FFFF, see ``search.exact``), no positions;
- ``terms``: every word ever indexed, with a trigram index of its own (``term_grams``):
  the words containing a needle are found there in microseconds;
- the answer is then a plain OR of those words in ``words``.

If no word contains the needle, it may hold a character the tokenizer treats as a
separator, so the trigram path answers.  When some word does contain it, every character
of the needle is a word character, and the argument above holds.  FTS5 cuts a token at
32 KB: texts with a run of ``LONG_RUN`` characters without white space (which any such
token is) stay out of ``words`` and are listed in ``long_texts``, compared with ``instr()``.

Texts enter ``words`` with the trigram index (:func:`add`, when they leave ``pending``)
and leave it with their ``texts`` row (:func:`drop`).  An index made before this one
gets it filled in the background (:func:`backfill`), from the range of UIDs kept in
``meta`` (``words_next`` to ``words_end``); until that is done (:func:`ready`), SEARCH
uses the trigram index alone.  ``terms`` only grows (an expunged message's words stay; they
match nothing).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence

WORDS_TABLES = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS words USING fts5(header, body, content='texts', "
    "content_rowid='uid', tokenize='unicode61 remove_diacritics 0', detail=column)",
    "CREATE TABLE IF NOT EXISTS terms (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS term_grams USING fts5(term, content='terms', "
    "content_rowid='id', tokenize='trigram')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS fresh USING fts5(header, body, content='', "
    "tokenize='unicode61 remove_diacritics 0', detail=none)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS fresh_terms USING fts5vocab(fresh, row)",
    "CREATE TABLE IF NOT EXISTS long_texts (uid INTEGER PRIMARY KEY)",
)
"""``fresh`` holds the texts of one batch for a moment: its vocabulary (``fresh_terms``)
is the batch's words, added to ``terms``."""

LONG_RUN = 8192
"""Characters without white space from which a text may hold a word FTS5 cuts (32 KB of
UTF-8 is at least 8192 characters; white space is never part of a word)."""
TERM_LIMIT = 64
"""Words containing a needle above which the trigram index answers instead (an OR of
many words costs more than the phrase of few trigrams)."""
BACKFILL_BATCH = 500
"""Texts a step of the background fill adds (a tenth of a second of the writer's time:
less than a batch of the trigram index takes)."""

_LONG = re.compile(rf"\S{{{LONG_RUN},}}")
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


def is_long(header: str, body: str) -> bool:
    return _LONG.search(header) is not None or _LONG.search(body) is not None


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
    wanted = [(uid, low, high) for uid in uids]
    for table in ("words", "fresh"):
        db.executemany(
            f"INSERT INTO {table} (rowid, header, body) SELECT uid, header, body FROM texts "
            "WHERE uid = ? AND uid NOT IN (SELECT uid FROM long_texts) "
            "AND NOT (uid >= ? AND uid < ?)",
            wanted,
        )
    _harvest(db)


def _harvest(db: sqlite3.Connection) -> None:
    """Add the words of the texts in ``fresh`` to ``terms``, and empty it."""
    (last,) = db.execute("SELECT coalesce(max(id), 0) FROM terms").fetchone()
    db.execute("INSERT OR IGNORE INTO terms (term) SELECT term FROM fresh_terms")
    db.execute(
        "INSERT INTO term_grams (rowid, term) SELECT id, term FROM terms WHERE id > ?", (last,)
    )
    db.execute("INSERT INTO fresh (fresh) VALUES ('delete-all')")


def drop(db: sqlite3.Connection, uids: Sequence[int]) -> None:
    """Before the ``texts`` rows of ``uids`` go: take them out of ``words`` (an external-
    content index is told the values it forgets) and of ``long_texts``."""
    low, high = _backlog(db)
    db.executemany(
        "INSERT INTO words (words, rowid, header, body) SELECT 'delete', uid, header, body "
        f"FROM texts WHERE uid = ? AND {_IN_WORDS}",
        [(uid, low, high) for uid in uids],
    )
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


def terms(db: sqlite3.Connection, needle: str) -> list[str] | None:
    """The words containing ``needle`` (three characters or more, case-folded), or None
    when there are none or too many for the word index to answer."""
    found = [
        term
        for (term,) in db.execute(
            "SELECT term FROM term_grams WHERE term_grams MATCH ? LIMIT ?",
            ('"' + needle.replace('"', '""') + '"', TERM_LIMIT + 1),
        )
        if needle in term
    ]
    return found if 0 < len(found) <= TERM_LIMIT else None


def query(found: Sequence[str], columns: tuple[str, ...]) -> str:
    """The FTS5 query of ``words`` for texts holding any of the words ``found`` in one of
    ``columns`` (all of them: no filter)."""
    any_of = " OR ".join('"' + term.replace('"', '""') + '"' for term in found)
    return any_of if len(columns) == 2 else f"{{{' '.join(columns)}}}: ({any_of})"
