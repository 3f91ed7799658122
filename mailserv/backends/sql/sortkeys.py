"""SORT and THREAD keys as columns (schema 13): written when a message's content is stored,
read for a whole SORT or THREAD in one query, off the reactor.

``message_keys`` holds, per distinct message, what :func:`mailserv.message.sortkeys.sort_fields`
computed for its ``MessageInfo``: the sent date (POSIX seconds, NULL when there is none),
the base subject, whether the subject marks a reply, the first From/To/Cc address and the
display names in the form SORT compares, the Message-ID and the references (space-separated:
a normalised id holds no white space).  The arrival date and size are ``mail``'s own.
Without it each SORT decoded every message's stored ``MessageInfo`` record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailserv.backends.sql.reads import load_info, where_uids
from mailserv.backends.sql.tx import Tx
from mailserv.interfaces import SortKeys
from mailserv.message.info import MessageInfo

TABLE = """CREATE TABLE message_keys (
    message_id {bigint} PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    sent {bigint},
    subject TEXT NOT NULL,
    reply INTEGER NOT NULL,
    from_key TEXT NOT NULL,
    to_key TEXT NOT NULL,
    cc_key TEXT NOT NULL,
    display_from TEXT NOT NULL,
    display_to TEXT NOT NULL,
    msgid TEXT NOT NULL,
    refs TEXT NOT NULL
)"""

_INSERT = (
    "INSERT INTO message_keys (message_id, sent, subject, reply, from_key, to_key, cc_key,"
    " display_from, display_to, msgid, refs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)

KeyRow = tuple[int | None, str, int, str, str, str, str, str, str, str]
"""A row of ``message_keys`` after its ``message_id``."""

_KEY_COLUMNS = (
    "sent",
    "subject",
    "reply",
    "from_key",
    "to_key",
    "cc_key",
    "display_from",
    "display_to",
    "msgid",
    "refs",
)

_SQL = {
    "ARRIVAL": "m.internaldate",
    "DATE": "coalesce(k.sent, m.internaldate)",
    "SIZE": "m.size",
    "SUBJECT": "k.subject",
    "REPLY": "k.reply",
    "FROM": "k.from_key",
    "TO": "k.to_key",
    "CC": "k.cc_key",
    "DISPLAYFROM": "k.display_from",
    "DISPLAYTO": "k.display_to",
    "MESSAGEID": "k.msgid",
    "REFERENCES": "k.refs",
}
"""Each column of :class:`SortKeys` (``mailserv.interfaces.SORT_KEYS``) as SQL."""


def row_of(info: MessageInfo) -> KeyRow:
    """The ``message_keys`` values of a message (after its id)."""
    sent = None if info.sent is None else int(info.sent.timestamp())
    return (
        sent,
        info.base_subject,
        int(info.reply),
        info.sort_from,
        info.sort_to,
        info.sort_cc,
        info.display_from,
        info.display_to,
        info.message_id,
        " ".join(info.references),
    )


def insert(tx: Tx, message_id: int, keys: KeyRow) -> None:
    """The keys of a new content row (held back: sent with the transaction's next statement
    on PostgreSQL, no round trip of its own)."""
    tx.later(_INSERT, (message_id, *keys))


FILL_BATCH = 500
"""Messages whose keys migration 13 derives per query."""


def fill(tx: Tx) -> None:
    """Migration 13: the table, and the keys of every stored message, derived from its
    stored ``MessageInfo`` (a record of an older format: from the message, parsed again),
    in batches by id so memory stays flat however large the store."""
    tx.execute(tx.dialect.ddl(TABLE))
    last = 0
    while True:
        rows = tx.all(
            "SELECT message_id, info FROM message_info WHERE message_id > ?"
            " ORDER BY message_id LIMIT ?",
            (last, FILL_BATCH),
        )
        if not rows:
            return
        keys = [(int(i), *row_of(load_info(tx, int(i), blob))) for i, blob in rows]
        tx.many(_INSERT, keys)
        last = int(rows[-1][0])


def read(tx: Tx, box_id: int, uids: Sequence[int], names: Sequence[str]) -> SortKeys:
    """The keys ``names`` of those of ``uids`` in the mailbox, one query (a thread's work).

    A message without a keys row (none should lack one) has them derived from its stored
    ``MessageInfo`` here."""
    wanted = list(dict.fromkeys(names))
    select = (
        "SELECT m.uid, m.message_id, k.message_id, m.internaldate, "
        + ", ".join(_SQL[name] for name in wanted)
        + " FROM mail m LEFT JOIN message_keys k ON k.message_id = m.message_id"
        " WHERE m.mailbox_id = ?"
    )
    rows: list[Any] = where_uids(tx, select, (box_id,), uids, "m.uid")
    for position, row in enumerate(rows):
        if row[2] is None:
            rows[position] = _derived(tx, row, wanted)
    found = list(zip(*rows, strict=True)) if rows else [()] * (len(wanted) + 4)
    columns: dict[str, Sequence[object]] = {}
    for name, column in zip(wanted, found[4:], strict=True):
        if name == "REFERENCES":
            columns[name] = _references(column)
        elif name == "REPLY":
            columns[name] = [bool(value) for value in column]
        else:
            columns[name] = column
    return SortKeys(found[0], columns)


def _references(column: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(text.split(" ")) if text else () for text in column]


def _derived(tx: Tx, row: Sequence[Any], names: Sequence[str]) -> tuple[Any, ...]:
    """``row`` with the keys read from its message's stored ``MessageInfo``."""
    _uid, message_id, _, internaldate = row[:4]
    blob = tx.scalar("SELECT info FROM message_info WHERE message_id = ?", (message_id,))
    keys = dict(zip(_KEY_COLUMNS, row_of(load_info(tx, int(message_id), blob)), strict=True))
    values = list(row[:4])
    for name, value in zip(names, row[4:], strict=True):
        column = _SQL[name].removeprefix("k.")
        if name == "DATE":
            value = internaldate if keys["sent"] is None else keys["sent"]
        elif column in keys:
            value = keys[column]
        values.append(value)
    return tuple(values)
