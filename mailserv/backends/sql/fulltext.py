"""SEARCH BODY and TEXT in SQL: the texts the engine's scan looks in, stored and indexed.

Each distinct message (a ``messages`` row) gets one ``message_text`` row when it is stored:
its decoded header and body text (:func:`mailserv.message.text.header_text` and
``body_text``), case-folded as the engine's evaluator folds them, so a substring test on
these columns is exactly the scan's test.  COPY and MOVE share the row with the source (it
belongs to the content, not to the mailbox).

The index in front of the substring test:

- SQLite: ``message_text`` is an FTS5 table with the trigram tokenizer (rowid = message id).
  A needle of three characters or more asks for the rows holding all of its trigrams, and
  ``instr()`` keeps the exact matches; a shorter one is tested with ``instr()`` alone, row by
  row of the mailbox.  Without FTS5 it is a plain table, always tested row by row.
- PostgreSQL: ``pg_trgm`` GIN indexes on both columns serve ``LIKE '%needle%'`` (``%``,
  ``_`` and ``\\`` escaped); where the extension could not be created (no privilege), the
  rows of the mailbox are tested with ``strpos()``.  Schema 14 adds one such index of the
  header fields ``messages`` keeps for SEARCH FROM/TO/CC/BCC/SUBJECT (``search.py``), and
  makes these two where schema 3 could not.

A word index answers the needles made of word characters alone (migration 5): a needle
that some indexed word contains lies inside words, so its matches are the texts holding one
of the words that contain it, found in a small index of the vocabulary (the argument is
:mod:`mailserv.backends.kit.words`'s).  An OR of a few words answers in a few ms where the
trigram index intersects huge lists of common trigrams (``migration``: "ati", "ion") and
reads every candidate's text.

SQLite alone has one: the FTS5 tables of ``kit/words.py`` over ``message_text`` (``words``,
``terms``, ``term_grams``); texts that may hold a word FTS5 cuts are listed in ``long_texts``
and tested with ``instr()``.  The trigger that drops a message's texts takes them out of
``words`` first.  On PostgreSQL, ``text[]`` GIN word arrays with a ``pg_trgm`` vocabulary
were tried and left out: a GIN index cannot give the matching ids without a visit of each
row, so a common word (in most messages) cost as much as the ``LIKE`` scan of the texts, and
the arrays and vocabulary made APPEND a third slower at 20k messages.

Messages indexed before the word index get it in the background (``word_backfill`` keeps
the range of message ids still to do, :func:`backfill_words`); until that is done the
trigram index answers alone.

Texts hold no NUL and no lone surrogate (neither PostgreSQL nor the drivers store them):
both become U+FFFD, and a needle with NUL, U+FFFD or a surrogate is left to the engine,
so the answers stay exactly the scan's.

Databases older than schema version 3 gain the table empty; :func:`read_batch` and
:func:`write_batch` fill it in the background (``text_backfill`` keeps the range of message
ids still to do), and a mailbox with a message in that range has its BODY/TEXT keys
declined (the engine scans) until the backfill has passed it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from mailserv.backends.kit import words as vocabulary
from mailserv.backends.sql.tx import Tx
from mailserv.message.info import MessageInfo
from mailserv.message.lazyinfo import LazyInfo, is_current
from mailserv.message.parse import parse_message
from mailserv.message.text import folded_body, folded_header

FTS5 = "fts5"
TRIGRAM = "pg_trgm"
SCAN = "scan"
"""How the texts are searched: an FTS5 trigram index, pg_trgm GIN indexes, or row by row."""

BACKFILL_BATCH = 200
"""Messages read, decoded and written per step of the backfill."""
MAX_TRIGRAMS = 16
"""Trigrams of a long needle the FTS5 prefilter asks for (more narrow it down little)."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNSEARCHABLE = re.compile("[\x00\ud800-\udfff\ufffd]")
_ALNUM_RUN = re.compile(r"[^\W_]{3}")
_TRGM_INDEXES = ("message_text_header_trgm", "message_text_body_trgm")

WORD_BATCH = 200
"""Texts a step of the word index's backfill adds."""

_log = Logger()


# -- the texts ------------------------------------------------------------------------------


def texts(raw: bytes, info: MessageInfo) -> tuple[str, str]:
    """(header text, body text) as the engine's scan searches them, ready to store."""
    header, body = folded_header(raw, info), folded_body(raw, info)
    return _UNSTORABLE.sub("\ufffd", header), _UNSTORABLE.sub("\ufffd", body)


def searchable(needle: str) -> bool:
    """Whether the stored texts answer for ``needle`` exactly (see the module's notes)."""
    return _UNSEARCHABLE.search(needle) is None


# -- schema (migration 3) ---------------------------------------------------------------------


def create(tx: Tx) -> None:
    """The text table, its index and the backfill range (transaction function)."""
    if tx.dialect.is_postgres:
        tx.execute(
            "CREATE TABLE message_text (message_id BIGINT PRIMARY KEY"
            " REFERENCES messages (id) ON DELETE CASCADE,"
            " header TEXT NOT NULL, body TEXT NOT NULL)"
        )
        _create_trigram_indexes(tx)
    else:
        tx.execute("SAVEPOINT fts5")
        try:
            tx.execute(
                "CREATE VIRTUAL TABLE message_text USING fts5(header, body,"
                " tokenize = 'trigram case_sensitive 1', detail = column)"
            )
        except Exception as error:  # noqa: BLE001 - an SQLite built without FTS5/trigram
            tx.execute("ROLLBACK TO SAVEPOINT fts5")
            _log.warn("No FTS5 trigram index ({error}): BODY/TEXT scan rows", error=error)
            tx.execute(
                "CREATE TABLE message_text (message_id INTEGER PRIMARY KEY,"
                " header TEXT NOT NULL, body TEXT NOT NULL)"
            )
        tx.execute("RELEASE SAVEPOINT fts5")
        tx.execute(
            "CREATE TRIGGER message_text_gone AFTER DELETE ON messages"
            " BEGIN DELETE FROM message_text WHERE rowid = old.id; END"
        )
    low, high = tx.one("SELECT min(id), max(id) FROM messages")
    span = (0, 0) if low is None else (int(low), int(high) + 1)
    tx.execute(tx.dialect.ddl("CREATE TABLE text_backfill (next_id {bigint}, end_id {bigint})"))
    tx.execute("INSERT INTO text_backfill (next_id, end_id) VALUES (?, ?)", span)


def _create_trigram_indexes(tx: Tx) -> None:
    tx.execute("SAVEPOINT trgm")
    try:
        tx.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, column in zip(_TRGM_INDEXES, ("header", "body"), strict=True):
            tx.execute(f"CREATE INDEX {name} ON message_text USING gin ({column} gin_trgm_ops)")
    except Exception as error:  # noqa: BLE001 - no privilege, or no contrib package
        tx.execute("ROLLBACK TO SAVEPOINT trgm")
        _log.warn("No pg_trgm index ({error}): BODY/TEXT scan rows", error=error)
    tx.execute("RELEASE SAVEPOINT trgm")


# -- the header fields' index (migration 14) ----------------------------------------------------

FIELD_INDEX = "messages_fields_trgm"
"""PostgreSQL: one GIN index of the trigrams of the case-folded FROM/TO/CC/BCC/SUBJECT
columns of ``messages`` (a multicolumn GIN index serves a test of any one of its columns
as well as an index of that column alone, and an APPEND updates one index, not five)."""
FIELD_COLUMNS = ("subject", "from_addr", "to_addr", "cc_addr", "bcc_addr")


def _trigram_schema(tx: Tx) -> str | None:
    """The schema ``pg_trgm`` is installed in, None where it is not."""
    found = tx.scalar(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_trgm'"
    )
    return None if found is None else str(found)


def trigram_statements(opclass: str = "gin_trgm_ops") -> list[str]:
    """The indexes of migration 14, each made only where it is missing: the header fields'
    and (where migration 3 could not make them) the texts'."""
    out = [
        f"CREATE INDEX IF NOT EXISTS {name} ON message_text USING gin ({column} {opclass})"
        for name, column in zip(_TRGM_INDEXES, ("header", "body"), strict=True)
    ]
    columns = ", ".join(f"{column} {opclass}" for column in FIELD_COLUMNS)
    out.append(f"CREATE INDEX IF NOT EXISTS {FIELD_INDEX} ON messages USING gin ({columns})")
    return out


def create_field_index(tx: Tx) -> bool:
    """Migration 14 (PostgreSQL; SQLite: nothing): ``pg_trgm`` and the trigram indexes of
    :func:`trigram_statements`; whether they are there.

    Where the extension is not installed and cannot be (the role may not create it in this
    database, or the server lacks the contrib package), the migration still succeeds: one
    warning says the searches scan and what a superuser runs to index them, and SEARCH
    keeps its row-by-row tests (:func:`detect` finds no index).  The indexes are built in
    the migration's transaction (``CREATE INDEX CONCURRENTLY`` cannot run in one), holding
    off writes of ``messages`` (APPEND) meanwhile; readers go on."""
    if not tx.dialect.is_postgres:
        return False
    tx.execute("SAVEPOINT trgm")
    try:
        tx.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as error:  # noqa: BLE001 - no privilege, or no contrib package
        tx.execute("ROLLBACK TO SAVEPOINT trgm")
        tx.execute("RELEASE SAVEPOINT trgm")
        _log.warn(
            "PostgreSQL's pg_trgm extension could not be created ({error}): SEARCH FROM, TO,"
            " CC, BCC, SUBJECT, BODY and TEXT test every message of a mailbox.  To index"
            " them, a superuser runs in this database: CREATE EXTENSION pg_trgm; {indexes};",
            error=str(error).strip(),
            indexes="; ".join(trigram_statements()),
        )
        return False
    tx.execute("RELEASE SAVEPOINT trgm")
    where = _trigram_schema(tx)
    opclass = "gin_trgm_ops" if where is None else f'"{where}".gin_trgm_ops'
    for statement in trigram_statements(opclass):
        tx.execute(statement)
    return True


def detect(tx: Tx) -> str:
    """Which of FTS5, TRIGRAM or SCAN this database has (transaction function).  On
    PostgreSQL TRIGRAM means the texts' and the header fields' indexes are all there."""
    if tx.dialect.is_postgres:
        found = tx.scalar(
            "SELECT count(*) FROM pg_indexes WHERE indexname IN (?, ?)",
            (_TRGM_INDEXES[1], FIELD_INDEX),
        )
        return TRIGRAM if found == 2 else SCAN
    sql = tx.scalar("SELECT sql FROM sqlite_master WHERE name = 'message_text'")
    return FTS5 if sql and "fts5" in sql.lower() else SCAN


# -- the word index (migration 5) -------------------------------------------------------------


def create_words(tx: Tx) -> None:
    """On SQLite, the word index and its backfill range, where there is a trigram index
    (transaction function); the range's row exists only where the word index does.  On
    PostgreSQL nothing (see the module's notes)."""
    if tx.dialect.is_postgres:
        return
    tx.execute("CREATE TABLE word_backfill (next_id INTEGER, end_id INTEGER)")
    if detect(tx) == SCAN:
        return
    for statement in vocabulary.tables("message_text", "rowid"):
        tx.execute(statement)
    tx.execute("CREATE TABLE long_texts (message_id INTEGER PRIMARY KEY)")
    # A message's texts leave ``words`` (given the values it indexed) before they go.
    tx.execute("DROP TRIGGER message_text_gone")
    tx.execute(
        "CREATE TRIGGER message_text_gone AFTER DELETE ON messages BEGIN"
        " INSERT INTO words (words, rowid, header, body)"
        " SELECT 'delete', rowid, header, body FROM message_text WHERE rowid = old.id"
        " AND old.id NOT IN (SELECT message_id FROM long_texts) AND NOT EXISTS"
        " (SELECT 1 FROM word_backfill WHERE old.id >= next_id AND old.id < end_id);"
        " DELETE FROM long_texts WHERE message_id = old.id;"
        " DELETE FROM message_text WHERE rowid = old.id; END"
    )
    last = tx.scalar("SELECT max(id) FROM messages")
    span = (0, 0) if last is None else (0, int(last) + 1)
    tx.execute("INSERT INTO word_backfill (next_id, end_id) VALUES (?, ?)", span)


def _word_span(tx: Tx) -> tuple[int, int] | None:
    """The message ids the word backfill has still to index; None without a word index."""
    if tx.dialect.is_postgres:
        return None
    row = tx.one("SELECT next_id, end_id FROM word_backfill")
    return None if row is None else (int(row[0]), int(row[1]))


def words_ready(tx: Tx) -> bool:
    """Whether the word index holds every text (the backfill is done)."""
    span = _word_span(tx)
    return span is not None and span[0] >= span[1]


def _index_words(tx: Tx, rows: Sequence[tuple[int, str, str]]) -> None:
    """Put texts in the word index (their ids are out of the backfill's range)."""
    vocabulary.index_unless_long(
        tx,
        "SELECT rowid, header, body FROM message_text WHERE rowid = ?",
        "INSERT OR IGNORE INTO long_texts (message_id) VALUES (?)",
        rows,
    )


def _words_of_new_text(tx: Tx, message_id: int, header: str, body: str) -> None:
    """A text just stored enters the word index, unless the backfill will add it."""
    span = _word_span(tx)
    if span is not None and not span[0] <= message_id < span[1]:
        _index_words(tx, [(message_id, header, body)])


def backfill_words(tx: Tx, limit: int) -> bool:
    """One step of indexing the words of texts stored before the word index (write
    transaction); whether there is more to do."""
    span = _word_span(tx)
    if span is None or span[0] >= span[1]:
        return False
    start, end = span
    rows = tx.all(
        "SELECT rowid, header, body FROM message_text WHERE rowid >= ? AND rowid < ?"
        " ORDER BY rowid LIMIT ?",
        (start, end, limit),
    )
    upto = int(rows[-1][0]) + 1 if len(rows) == limit else end
    tx.execute("UPDATE word_backfill SET next_id = ?", (upto,))
    _index_words(tx, [(int(i), header, body) for i, header, body in rows])
    return upto < end


# -- writing --------------------------------------------------------------------------------


def insert(tx: Tx, message_id: int, header: str, body: str) -> None:
    """The texts of a message just stored."""
    if tx.dialect.is_postgres:
        tx.later(
            "INSERT INTO message_text (message_id, header, body) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (message_id, header, body),
        )
    else:
        tx.execute(
            "INSERT INTO message_text (rowid, header, body) VALUES (?, ?, ?)",
            (message_id, header, body),
        )
    _words_of_new_text(tx, message_id, header, body)


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages the backfill decodes next, and where it goes on from after them."""

    rows: Sequence[tuple[int, bytes, MessageInfo]]
    upto: int


def read_batch(tx: Tx, limit: int) -> Batch | None:
    """The next messages without texts, or None when the backfill is done."""
    span = tx.one("SELECT next_id, end_id FROM text_backfill")
    if span is None or span[0] >= span[1]:
        return None
    start, end = int(span[0]), int(span[1])
    rows = tx.all(
        "SELECT d.message_id, d.raw, i.info FROM message_data d"
        " JOIN message_info i ON i.message_id = d.message_id"
        " WHERE d.message_id >= ? AND d.message_id < ? ORDER BY d.message_id LIMIT ?",
        (start, end, limit),
    )
    out = []
    for message_id, raw, record in rows:
        data, blob = bytes(raw), bytes(record)
        info = LazyInfo(blob) if is_current(blob) else parse_message(data)
        out.append((int(message_id), data, info))
    upto = out[-1][0] + 1 if len(out) == limit else end
    return Batch(out, upto)


def decode_batch(batch: Batch) -> list[tuple[int, str, str]]:
    """The texts of a batch (CPU work: run it off the reactor)."""
    return [(message_id, *texts(raw, info)) for message_id, raw, info in batch.rows]


def write_batch(tx: Tx, decoded: Sequence[tuple[int, str, str]], upto: int) -> None:
    """Store the texts of the messages still there and without texts; move the range on."""
    ids = [row[0] for row in decoded]
    if ids:
        marks = ",".join("?" * len(ids))
        lock = " FOR KEY SHARE" if tx.dialect.is_postgres else ""
        alive = {
            int(i) for (i,) in tx.all(f"SELECT id FROM messages WHERE id IN ({marks}){lock}", ids)
        }
        column = "message_id" if tx.dialect.is_postgres else "rowid"
        present = f"SELECT {column} FROM message_text WHERE {column} IN ({marks})"
        have = {int(i) for (i,) in tx.all(present, ids)}
        for message_id, header, body in decoded:
            if message_id in alive and message_id not in have:
                insert(tx, message_id, header, body)
    tx.execute("UPDATE text_backfill SET next_id = ? WHERE next_id < ?", (upto, upto))


def mailbox_ready(tx: Tx, box_id: int) -> bool:
    """Whether every message of the mailbox has its texts (the backfill has passed them)."""
    span = tx.one("SELECT next_id, end_id FROM text_backfill")
    if span is None or span[0] >= span[1]:
        return True
    waiting = tx.one(
        "SELECT 1 FROM mail WHERE mailbox_id = ? AND message_id >= ? AND message_id < ? LIMIT 1",
        (box_id, int(span[0]), int(span[1])),
    )
    return waiting is None


# -- SEARCH ---------------------------------------------------------------------------------


class TextSearch:
    """Turns BODY/TEXT into a condition over ``mail m``, for one database's kind of index."""

    def __init__(self, postgres: bool, kind: str) -> None:
        self.postgres = postgres
        self.kind = kind

    def condition(
        self, needle: str, whole: bool, param: Callable[[Any], str], tx: Tx | None = None
    ) -> str | None:
        """SQL for "``needle`` is in the body (``whole``: in the header or the body)";
        None when the engine must answer.  ``param`` adds a value and returns its mark,
        so values are added in the order their marks appear.  ``tx``, where the query
        runs, lets SQLite's word index answer (its vocabulary is looked up now)."""
        if not searchable(needle):
            return None
        columns = ("header", "body") if whole else ("body",)
        if self.postgres:
            pattern = like_pattern(needle) if self.kind == TRIGRAM else None
            if pattern is not None:
                test = " OR ".join(f"{c} LIKE {param(pattern)} ESCAPE '\\'" for c in columns)
                return f"m.message_id IN (SELECT message_id FROM message_text WHERE {test})"
            test = " OR ".join(f"strpos(t.{c}, {param(needle)}) > 0" for c in columns)
            return (
                "EXISTS (SELECT 1 FROM message_text t"
                f" WHERE t.message_id = m.message_id AND ({test}))"
            )
        if self.kind == FTS5 and len(needle) >= 3:
            found = self.words(tx, needle)
            if found is not None:  # the word index, and the texts left out of it
                match = param(vocabulary.query(found, columns))
                test = " OR ".join(f"instr(t.{c}, {param(needle)}) > 0" for c in columns)
                return (
                    f"m.message_id IN (SELECT rowid FROM words WHERE words MATCH {match}"
                    " UNION ALL SELECT t.rowid FROM long_texts l CROSS JOIN message_text t"
                    f" ON t.rowid = l.message_id WHERE {test})"
                )
            match = param(_fts_query(needle, whole))  # its mark comes first
            test = " OR ".join(f"instr({c}, {param(needle)}) > 0" for c in columns)
            return (
                "m.message_id IN (SELECT rowid FROM message_text"
                f" WHERE message_text MATCH {match} AND ({test}))"
            )
        test = " OR ".join(f"instr(t.{c}, {param(needle)}) > 0" for c in columns)
        return f"EXISTS (SELECT 1 FROM message_text t WHERE t.rowid = m.message_id AND ({test}))"

    def driver(self, needle: str, whole: bool, tx: Tx | None) -> Driver | None:
        """SQLite's word index as the rows a query starts from, when it answers ``needle``
        (see :class:`Driver`); None otherwise (the other indexes, an incomplete word
        index, a needle it cannot answer)."""
        if self.postgres or self.kind != FTS5 or len(needle) < 3 or not searchable(needle):
            return None
        found = self.words(tx, needle)
        if found is None:
            return None
        columns = ("header", "body") if whole else ("body",)
        return Driver(vocabulary.query(found, columns), needle, columns)

    def has_field(self, name: str, param: Callable[[Any], str]) -> str:
        """SQL for "the decoded header has a line starting with the field ``name``" (its
        ``name: value`` lines, case-folded), or is empty (one the decoder gave up on): what
        every message with that field passes."""
        key = "t.message_id" if self.postgres else "t.rowid"
        find = "strpos" if self.postgres else "instr"
        line = "\n" + name.lower() + ":"
        return (
            f"EXISTS (SELECT 1 FROM message_text t WHERE {key} = m.message_id AND"
            f" ({find}({param(chr(10))} || t.header, {param(line)}) > 0 OR t.header = ''))"
        )

    def words(self, tx: Tx | None, needle: str) -> list[str] | None:
        """The indexed words containing ``needle`` when the word index can answer for it
        (there is one and it is complete, and they are neither none, as the needle may hold
        a separator, nor too many); else None."""
        if tx is None or not words_ready(tx):
            return None
        return vocabulary.terms(tx, needle)

    @property
    def fields_indexed(self) -> bool:
        """Whether FROM/TO/CC/BCC/SUBJECT have the trigram index (PostgreSQL, schema 14)."""
        return self.postgres and self.kind == TRIGRAM


@dataclass(frozen=True, slots=True)
class Driver:
    """BODY or TEXT on SQLite's word index, as the loop of a query rather than a test of
    its rows: the index's matches joined to ``mail m`` one by one, and the texts left out
    of the index (``long_texts``) tested.  ``m.message_id IN (matches)`` would first copy
    every match into a temporary index: 80,000 of 100,000 messages cost a third more so."""

    match: str
    needle: str
    columns: tuple[str, ...]

    def sources(self) -> list[tuple[str, str, list[Any]]]:
        """The row sources that together give each message holding the needle once (the
        word index's matches, the texts left out of it): FROM text ending in ``mail m``,
        the WHERE test of the source, its parameters."""
        test = " OR ".join(f"instr(t.{c}, ?) > 0" for c in self.columns)
        match = self.match
        return [
            ("words w CROSS JOIN mail m ON m.message_id = w.rowid", "w.words MATCH ?", [match]),
            (
                "long_texts l CROSS JOIN message_text t ON t.rowid = l.message_id"
                " CROSS JOIN mail m ON m.message_id = t.rowid",
                f"({test})",
                [self.needle] * len(self.columns),
            ),
        ]


def like_pattern(needle: str) -> str | None:
    """``%needle%`` for ``LIKE ... ESCAPE '\\'`` (``%``, ``_`` and ``\\`` escaped), where a
    ``pg_trgm`` index answers it: the needle holds a run of three word characters, so the
    index has trigrams to look up (a shorter needle, or one of punctuation, would read the
    whole index); else None, and the caller tests rows with ``strpos()``."""
    if _ALNUM_RUN.search(needle) is None:
        return None
    return "%" + _escape_like(needle) + "%"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _fts_query(needle: str, whole: bool) -> str:
    """An FTS5 query for the rows holding every trigram of ``needle`` (in the body alone
    unless ``whole``): a prefilter, ``instr()`` decides."""
    grams: list[str] = []
    for i in range(len(needle) - 2):
        gram = needle[i : i + 3]
        if gram not in grams:
            grams.append(gram)
    if len(grams) > MAX_TRIGRAMS:  # spread over the needle
        step = (len(grams) - 1) / (MAX_TRIGRAMS - 1)
        grams = [grams[round(i * step)] for i in range(MAX_TRIGRAMS)]
    terms = " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)
    return terms if whole else "{body} : (" + terms + ")"
