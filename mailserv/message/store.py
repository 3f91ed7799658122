"""Serialising MessageInfo for persistent backends.

Format ``MI2\\n`` + UTF-8 JSON array.  JSON rather than marshal/pickle: stored data outlives
Python upgrades and loading it never runs code.  IMAP bytes travel as Latin-1 strings (one
char per octet); parts are nested arrays.  A new layout gets a new marker, and ``loads``
refuses markers it does not know (the backend then parses the message again).  A new
meaning of a field is a new layout too: ``MI1`` records had From/To/Cc/Bcc without the
normalised address forms (:func:`mailserv.message.addresses.search_field`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from mailserv.message.info import MessageInfo, Part

MARKER = b"MI2\n"


class UnknownFormat(ValueError):
    """The data was not written by this version's :func:`dumps`."""


def dumps(info: MessageInfo) -> bytes:
    """``info`` as compact bytes, to keep beside the message."""
    record = [
        info.envelope.decode("latin-1"),
        info.body.decode("latin-1"),
        info.bodystructure.decode("latin-1"),
        _part_record(info.root),
        info.subject,
        info.from_,
        info.to,
        info.cc,
        info.bcc,
        None if info.sent is None else info.sent.isoformat(),
    ]
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return MARKER + text.encode("utf-8", "surrogatepass")


def _part_record(part: Part) -> list[Any]:
    return [
        part.header_start,
        part.body_start,
        part.end,
        part.content_type,
        part.encoding,
        part.charset,
        [_part_record(child) for child in part.parts],
        None if part.message is None else _part_record(part.message),
    ]


def loads(data: bytes | bytearray | memoryview) -> MessageInfo:
    """The MessageInfo :func:`dumps` wrote; UnknownFormat for anything else."""
    data = bytes(data)
    if not data.startswith(MARKER):
        raise UnknownFormat(f"not a MessageInfo record (marker {data[:4]!r})")
    try:
        record = json.loads(data[len(MARKER) :].decode("utf-8", "surrogatepass"))
        envelope, body, structure, root, subject, from_, to, cc, bcc, sent = record
        return MessageInfo(
            envelope.encode("latin-1"),
            body.encode("latin-1"),
            structure.encode("latin-1"),
            _part(root),
            subject,
            from_,
            to,
            cc,
            bcc,
            None if sent is None else datetime.fromisoformat(sent),
        )
    except (ValueError, TypeError, AttributeError, RecursionError) as error:
        raise UnknownFormat(f"corrupt MessageInfo record: {error}") from error


def _part(record: list[Any]) -> Part:
    start, body_start, end, ctype, encoding, charset, children, message = record
    return Part(
        start,
        body_start,
        end,
        ctype,
        encoding,
        charset,
        tuple(_part(child) for child in children) if children else (),
        None if message is None else _part(message),
    )
