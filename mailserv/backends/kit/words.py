"""A word index for SEARCH TEXT and BODY in SQLite (FTS5), beside a trigram index.

The trigram index answers a needle made of very common trigrams (``migration``: "ati",
"ion") by intersecting huge position lists.  A needle made only of word characters (as
FTS5's ``unicode61`` tokenizer classes them) cannot span a word boundary: it occurs in a
text exactly where a word (a token) of that text contains it.  So:

- ``words``: an FTS5 index of the texts (``header``, ``body``, already case-folded) with
  the ``unicode61`` tokenizer, diacritics kept (so it folds case only, and that folding is
  the identity on case-folded text; U+FFFE and U+FFFF are separators), no positions;
- ``terms``: every word ever indexed, with a trigram index of its own (``term_grams``):
  the words containing a needle are found there in microseconds (:func:`terms`);
- the answer is then a plain OR of those words in ``words`` (:func:`query`).

If no word contains the needle, it may hold a character the tokenizer treats as a
separator: the trigram path answers.  When some word does contain it, every character of
the needle is a word character, and the argument above holds.  FTS5 cuts a token at 32 KB:
a backend keeps texts with a run of ``LONG_RUN`` characters without white space
(:func:`is_long`) out of ``words`` and compares them with ``instr()``.

What is shared here is the vocabulary: which rows enter ``words``, when, and how they leave
it is each backend's (the maildir index's ``texts``, the SQL store's ``message_text``, the
memory backend's :class:`~mailserv.backends.kit.textindex.TextIndex`).  ``terms`` only grows
(the words of a message gone stay; they match nothing).  So are the rules of the trigram
index beside it: which texts SQLite holds (:func:`indexable`), and when its phrase match is
the substring test itself (:func:`exact`, :func:`phrase`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

LONG_RUN = 8192
"""Characters without white space from which a text may hold a word FTS5 cuts (32 KB of
UTF-8 is at least 8192 characters; white space is never part of a word)."""
TERM_LIMIT = 64
"""Words containing a needle above which the trigram index answers instead (an OR of
many words costs more than the phrase of few trigrams)."""
TOKENIZER = "unicode61 remove_diacritics 0"

_LONG = re.compile(rf"\S{{{LONG_RUN},}}")


class Statements(Protocol):
    """What runs the SQL: an ``sqlite3.Connection`` or a transaction of the SQL store."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...


def tables(content: str, content_rowid: str) -> tuple[str, ...]:
    """The statements making ``words`` (an external-content index of the table
    ``content``, whose texts are ``header`` and ``body``) and the vocabulary.

    ``fresh`` holds the texts of one batch for a moment: its vocabulary (``fresh_terms``)
    is the batch's words, added to ``terms`` (:func:`index`)."""
    return (
        f"CREATE VIRTUAL TABLE IF NOT EXISTS words USING fts5(header, body, content='{content}',"
        f" content_rowid='{content_rowid}', tokenize='{TOKENIZER}', detail=column)",
        "CREATE TABLE IF NOT EXISTS terms (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE)",
        "CREATE VIRTUAL TABLE IF NOT EXISTS term_grams USING fts5(term, content='terms', "
        "content_rowid='id', tokenize='trigram')",
        "CREATE VIRTUAL TABLE IF NOT EXISTS fresh USING fts5(header, body, content='', "
        f"tokenize='{TOKENIZER}', detail=none)",
        "CREATE VIRTUAL TABLE IF NOT EXISTS fresh_terms USING fts5vocab(fresh, row)",
    )


def is_long(header: str, body: str) -> bool:
    """Whether the texts may hold a word FTS5 cuts (they stay out of ``words``)."""
    return _LONG.search(header) is not None or _LONG.search(body) is not None


def index(db: Statements, select: str, rows: Iterable[Sequence[Any]]) -> None:
    """Add to ``words`` (and their words to ``terms``) the texts ``select`` gives for each
    of ``rows`` (its parameters): ``select`` yields (rowid, header, body)."""
    add(db, select, rows)
    add_terms(db)


def add(db: Statements, select: str, rows: Iterable[Sequence[Any]]) -> None:
    """:func:`index`'s first half: the texts in ``words``, their words waiting in ``fresh``
    for :func:`add_terms` (in the same transaction: a writer may add texts a few at a
    time, with the reactor turning between, and their words to ``terms`` once)."""
    rows = list(rows)
    for table in ("words", "fresh"):
        for params in rows:
            db.execute(f"INSERT INTO {table} (rowid, header, body) {select}", params)


def add_terms(db: Statements) -> None:
    """:func:`index`'s second half: the words of the texts added since the last call to
    ``terms`` (and ``term_grams``)."""
    (last,) = db.execute("SELECT coalesce(max(id), 0) FROM terms").fetchone()
    db.execute("INSERT OR IGNORE INTO terms (term) SELECT term FROM fresh_terms")
    db.execute(
        "INSERT INTO term_grams (rowid, term) SELECT id, term FROM terms WHERE id > ?", (last,)
    )
    db.execute("INSERT INTO fresh (fresh) VALUES ('delete-all')")


def index_unless_long(
    db: Statements, select: str, mark_long: str, rows: Sequence[tuple[int, str, str]]
) -> None:
    """:func:`index` the texts ``rows`` (id, header, body) just stored, but those that may
    hold a word FTS5 cuts (:func:`is_long`): ``mark_long`` lists one of those by its id."""
    long = {i for i, header, body in rows if is_long(header, body)}
    for i in sorted(long):
        db.execute(mark_long, (i,))
    index(db, select, [(i,) for i, _, _ in rows if i not in long])


def forget(db: Statements, select: str, rows: Iterable[Sequence[Any]]) -> None:
    """Take out of ``words`` the texts ``select`` gives for each of ``rows``, as they were
    indexed (an external-content index is told the values it forgets)."""
    for params in rows:
        db.execute(f"INSERT INTO words (words, rowid, header, body) {select}", params)


def terms(db: Statements, needle: str) -> list[str] | None:
    """The words containing ``needle`` (three characters or more, case-folded), or None
    when there are none or too many for the word index to answer."""
    return containing(db, needle) or None


def containing(db: Statements, needle: str) -> list[str] | None:
    """The words containing ``needle`` (three characters or more, case-folded), none
    included; None when there are too many for the word index to answer."""
    found = [
        term
        for (term,) in db.execute(
            "SELECT term FROM term_grams WHERE term_grams MATCH ? LIMIT ?",
            ('"' + needle.replace('"', '""') + '"', TERM_LIMIT + 1),
        ).fetchall()
        if needle in term
    ]
    return found if len(found) <= TERM_LIMIT else None


def query(found: Sequence[str], columns: Sequence[str]) -> str:
    """The FTS5 query of ``words`` for texts holding any of the words ``found`` in one of
    ``columns`` (both: no filter)."""
    any_of = " OR ".join('"' + term.replace('"', '""') + '"' for term in found)
    return any_of if len(columns) == 2 else f"{{{' '.join(columns)}}}: ({any_of})"


def indexable(value: str) -> bool:
    """Whether SQLite can hold ``value`` as it is (its text stops at NUL and cannot hold
    lone surrogates); texts that cannot are compared some other way."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def phrase(needle: str, columns: Sequence[str]) -> str:
    """An FTS5 query of a trigram index for texts whose ``columns`` (``header``, ``body``
    or both) hold the trigrams of ``needle`` one after the other, in one column: ``needle``
    after the index's case folding.  (A filter naming every column costs a quarter more
    than none.)"""
    quoted = '"' + needle.replace('"', '""') + '"'
    return quoted if len(columns) == 2 else f"{{{columns[0]}}}: {quoted}"


def exact(needle: str) -> bool:
    """Whether the trigram index's phrase match of ``needle`` (case-folded, as the texts
    are) is exactly the substring test.

    The trigram tokenizer folds each character with SQLite's own table.  On characters
    that ``str.casefold`` leaves as they are (the only ones in the texts and the needle),
    that folding is the identity, except that U+FFFE and U+FFFF become U+FFFD (SQLite's
    UTF-8 reader): a needle without any of the three then matches exactly where it is a
    substring (tests/test_maildir_search_index.py checks this of the SQLite in use)."""
    return not any("\ufffd" <= c <= "\uffff" for c in needle)
