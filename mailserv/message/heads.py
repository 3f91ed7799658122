"""A message's FETCH heads in a layout that reading back is slicing, kept beside its record
by the stores (the SQL backend's ``message_info.heads``, schema 15; the maildir index's
``message.heads``).

What mail clients list a mailbox with (``FETCH (FLAGS RFC822.SIZE ENVELOPE)``, BODY,
BODYSTRUCTURE, whole-message sections) needs the ENVELOPE, BODY and BODYSTRUCTURE bytes
and the whole message's offsets, no more.  The record (``message.store``) holds them as
JSON strings, which a FETCH of a message not read before decoded
(:func:`mailserv.message.store.heads_of`).  So they are computed once, when the message
enters the store, and kept as a fixed header (a marker, three lengths, three offsets) and
the three byte strings, in the order of :class:`mailserv.message.store.Heads`.

A store's row without them (written before they were kept) reads the record, as before.
"""

from __future__ import annotations

import struct
from typing import Any

from mailserv.message.info import MessageInfo
from mailserv.message.store import Heads

MARKER = b"HD1\n"
_LAYOUT = struct.Struct(">4sIIIQQQ")
"""Marker, the lengths of ENVELOPE, BODY and BODYSTRUCTURE, then the message's header
start, body start and end."""


def dump(heads: Heads) -> bytes:
    """``heads`` as the column holds them."""
    envelope, body, structure, (start, body_start, end) = heads
    fixed = _LAYOUT.pack(MARKER, len(envelope), len(body), len(structure), start, body_start, end)
    return b"".join((fixed, envelope, body, structure))


def of_info(info: MessageInfo) -> bytes:
    """The column's value for a parsed message."""
    return dump(Heads(info.envelope, info.body, info.bodystructure, info.top()))


def load(value: Any) -> Heads | None:
    """The heads of a column value; None for NULL or anything this layout does not read
    (the caller reads the record instead)."""
    if value is None:
        return None
    data = value if type(value) is bytes else bytes(value)
    try:
        marker, n_envelope, n_body, n_structure, start, body_start, end = _LAYOUT.unpack_from(data)
    except struct.error:  # shorter than the fixed part
        return None
    body_at = _LAYOUT.size + n_envelope
    structure_at = body_at + n_body
    if marker != MARKER or structure_at + n_structure != len(data):
        return None
    return Heads(
        data[_LAYOUT.size : body_at],
        data[body_at:structure_at],
        data[structure_at:],
        (start, body_start, end),
    )
