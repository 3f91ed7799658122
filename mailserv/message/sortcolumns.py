"""The columns of SORT and THREAD keys (RFC 5256, RFC 5957), read from ``MessageMeta``s.

The engine reads them so from ``fetch()`` results (``mailserv.imap.sorting``), and a
backend may read them the same way in a thread of its own (``ISortKeysMailbox``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence

from mailserv.interfaces import MessageMeta, SortKeys

KEY_CHUNK = 128
"""Keys read between two yields: reading one may decode a whole stored message (20-25
microseconds for a maildir record), and 4,096 of them held the reactor 90-155 ms in a SORT
of 100k."""

Key = float | int | str


def sent_date(meta: MessageMeta) -> float:
    """The sent date, or the internal date when the message has no usable Date:."""
    sent = meta.info.sent
    return (meta.internaldate if sent is None else sent).timestamp()


KEYS: dict[str, Callable[[MessageMeta], Key]] = {
    "ARRIVAL": lambda meta: meta.internaldate.timestamp(),
    "CC": lambda meta: meta.info.sort_cc,
    "DATE": sent_date,
    "FROM": lambda meta: meta.info.sort_from,
    "SIZE": lambda meta: meta.size,
    "SUBJECT": lambda meta: meta.info.base_subject,
    "TO": lambda meta: meta.info.sort_to,
    "DISPLAYFROM": lambda meta: meta.info.display_from,
    "DISPLAYTO": lambda meta: meta.info.display_to,
}
"""Each SORT key (RFC 5256, and RFC 5957's DISPLAYFROM/DISPLAYTO) as a value to compare.
DATE is the sent date, or the internal date when the message has no usable Date:."""

FIELDS: dict[str, Callable[[MessageMeta], object]] = {
    **KEYS,
    "MESSAGEID": lambda meta: meta.info.message_id,
    "REFERENCES": lambda meta: meta.info.references,
    "REPLY": lambda meta: meta.info.reply,
}
"""How each column of :class:`SortKeys` (``mailserv.interfaces.SORT_KEYS``) reads a meta."""


def keys_of(metas: Sequence[MessageMeta], names: Sequence[str]) -> Generator[None, None, SortKeys]:
    """The columns ``names`` of ``metas`` (ascending by UID), read in slices."""
    columns: dict[str, list[object]] = {}
    for name in dict.fromkeys(names):
        read = FIELDS[name]
        column: list[object] = []
        for start in range(0, len(metas), KEY_CHUNK):
            column.extend(map(read, metas[start : start + KEY_CHUNK]))
            yield
        columns[name] = column
    return SortKeys([meta.uid for meta in metas], columns)
