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
  rows of the mailbox are tested with ``strpos()``.

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

from mailserv.backends.sql.db import Tx
from mailserv.backends.sql.info import LazyInfo, is_current
from mailserv.message.info import MessageInfo
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


def detect(tx: Tx) -> str:
    """Which of FTS5, TRIGRAM or SCAN this database has (transaction function)."""
    if tx.dialect.is_postgres:
        found = tx.scalar(
            "SELECT count(*) FROM pg_indexes WHERE indexname = ?", (_TRGM_INDEXES[1],)
        )
        return TRIGRAM if found else SCAN
    sql = tx.scalar("SELECT sql FROM sqlite_master WHERE name = 'message_text'")
    return FTS5 if sql and "fts5" in sql.lower() else SCAN


# -- writing --------------------------------------------------------------------------------


def insert(tx: Tx, message_id: int, header: str, body: str) -> None:
    """The texts of a message just stored."""
    if tx.dialect.is_postgres:
        tx.execute(
            "INSERT INTO message_text (message_id, header, body) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (message_id, header, body),
        )
    else:
        tx.execute(
            "INSERT INTO message_text (rowid, header, body) VALUES (?, ?, ?)",
            (message_id, header, body),
        )


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

    def condition(self, needle: str, whole: bool, param: Callable[[Any], str]) -> str | None:
        """SQL for "``needle`` is in the body (``whole``: in the header or the body)";
        None when the engine must answer.  ``param`` adds a value and returns its mark,
        so values are added in the order their marks appear."""
        if not searchable(needle):
            return None
        columns = ("header", "body") if whole else ("body",)
        if self.postgres:
            if self.kind == TRIGRAM and _ALNUM_RUN.search(needle):
                pattern = "%" + _escape_like(needle) + "%"
                test = " OR ".join(f"{c} LIKE {param(pattern)} ESCAPE '\\'" for c in columns)
                return f"m.message_id IN (SELECT message_id FROM message_text WHERE {test})"
            test = " OR ".join(f"strpos(t.{c}, {param(needle)}) > 0" for c in columns)
            return (
                "EXISTS (SELECT 1 FROM message_text t"
                f" WHERE t.message_id = m.message_id AND ({test}))"
            )
        if self.kind == FTS5 and len(needle) >= 3:
            match = param(_fts_query(needle, whole))  # its mark comes first
            test = " OR ".join(f"instr({c}, {param(needle)}) > 0" for c in columns)
            return (
                "m.message_id IN (SELECT rowid FROM message_text"
                f" WHERE message_text MATCH {match} AND ({test}))"
            )
        test = " OR ".join(f"instr(t.{c}, {param(needle)}) > 0" for c in columns)
        return f"EXISTS (SELECT 1 FROM message_text t WHERE t.rowid = m.message_id AND ({test}))"


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
