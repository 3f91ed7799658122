"""A message's SORT and THREAD keys as the maildir index keeps them (``message.sorting``).

They are written once, when the message enters the index, so the first SORT or THREAD
after a start reads a short JSON array per message, not its whole record (decoding 100k
records took 2.9-3.9 s in a thread; the column, 0.4 s).  The keys that come from the
entry (ARRIVAL, SIZE, and DATE when the message has no usable Date:) are not in it.

A row written before the column was kept holds NULL: its keys are read from its record,
and the column is then filled (``MaildirMailbox.sort_keys``).
"""

from __future__ import annotations

import json

from mailserv.message.info import MessageInfo
from mailserv.message.lazyinfo import is_current
from mailserv.message.store import UnknownFormat, loads


def dump(info: MessageInfo) -> bytes:
    """The column's value for a message's info."""
    sent = info.sent
    return json.dumps(
        [
            None if sent is None else sent.timestamp(),
            info.sort_cc,
            info.sort_from,
            info.base_subject,
            info.sort_to,
            info.display_from,
            info.display_to,
            info.message_id,
            list(info.references),
            info.reply,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8", "surrogatepass")


def of_record(record: bytes | None) -> bytes | None:
    """The column's value for a stored record (None: a record this version does not read,
    whose message is parsed again later)."""
    if record is None or not is_current(record):
        return None
    try:
        return dump(loads(record))
    except UnknownFormat:
        return None


def keys(value: bytes, arrival: float, size: int) -> tuple[object, ...] | None:
    """Every key in ``SORT_KEYS`` order, as ``mailserv.message.sortcolumns.FIELDS`` reads
    them from a message with this column, internal date ``arrival`` (seconds) and
    ``size``; None for a value this version did not write."""
    try:
        text = value.decode("utf-8", "surrogatepass")  # as ``dump`` wrote it
        sent, cc, from_, subject, to, dfrom, dto, message_id, refs, reply = json.loads(text)
        return (
            arrival,
            cc,
            arrival if sent is None else sent,
            from_,
            size,
            subject,
            to,
            dfrom,
            dto,
            message_id,
            tuple(refs),
            reply,
        )
    except (ValueError, TypeError):
        return None
