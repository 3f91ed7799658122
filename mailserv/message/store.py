"""Serialising MessageInfo for persistent backends.

Format ``MI5\\n`` + UTF-8 JSON array.  JSON rather than marshal/pickle: stored data outlives
Python upgrades and loading it never runs code.  IMAP bytes travel as Latin-1 strings (one
char per octet); parts are nested arrays.  A new layout gets a new marker, and ``loads``
refuses markers it does not know (the backend then parses the message again).  A new
meaning of a field is a new layout too: ``MI1`` records had From/To/Cc/Bcc without the
normalised address forms (:func:`mailserv.message.addresses.search_field`); ``MI2`` records
lack the SORT/THREAD fields, and ``loads`` still reads them: those fields are derived from
the ENVELOPE and the subject (:func:`_derived`), so a store written before needs no new
parse; only the References header is not in an ENVELOPE (the In-Reply-To id stands in).
``MI3`` records lack the preview (RFC 8970), ``MI4`` records the EMAILID (RFC 8474): the
engine computes either from the message when asked.  ``MI5`` records lack ``threadid`` (a
THREADID given by the store, not derived): None, derived from the references.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, NamedTuple

from mailserv.message.addresses import Mailbox
from mailserv.message.info import MessageInfo, Part
from mailserv.message.sortkeys import SortFields, sort_fields

MARKER = b"MI6\n"
NO_THREADID_MARKER = b"MI5\n"
NO_EMAILID_MARKER = b"MI4\n"
NO_PREVIEW_MARKER = b"MI3\n"
OLD_MARKER = b"MI2\n"
MARKERS = (MARKER, NO_THREADID_MARKER, NO_EMAILID_MARKER, NO_PREVIEW_MARKER, OLD_MARKER)
"""Every marker :func:`loads` reads."""


_DECODER = json.JSONDecoder()
"""Reads one value of a record (``envelope_of``); it keeps no state between calls."""


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
        info.message_id,
        list(info.references),
        info.base_subject,
        info.reply,
        info.sort_from,
        info.sort_to,
        info.sort_cc,
        info.display_from,
        info.display_to,
        info.preview,
        info.emailid,
        info.threadid,
    ]
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return MARKER + text.encode("utf-8", "surrogatepass")


def envelope_of(data: bytes) -> bytes:
    """The ENVELOPE of a record :func:`dumps` wrote (any marker :func:`loads` reads), read
    without decoding the rest (FETCH ENVELOPE of a stored message: its first field is all
    it needs).  UnknownFormat as :func:`loads` would raise it for this field."""
    return heads_of(data).envelope


class Heads(NamedTuple):
    """What :func:`heads_of` reads of a record."""

    envelope: bytes
    body: bytes
    bodystructure: bytes
    top: tuple[int, int, int]
    """The whole message's header start, body start and end (its root part's offsets)."""


_TOP = re.compile(r"\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,")


def heads_of(data: bytes) -> Heads:
    """ENVELOPE, BODY, BODYSTRUCTURE and the whole message's offsets of a record
    :func:`dumps` wrote (any marker :func:`loads` reads: every layout starts with them),
    read without decoding the rest: what mail clients list a mailbox with (those items,
    ``BODY.PEEK[HEADER.FIELDS (...)]``) needs nothing else, and no part tree is made.
    UnknownFormat as :func:`loads` would raise it for these fields."""
    if not data.startswith(MARKERS):
        raise UnknownFormat(f"not a MessageInfo record (marker {data[:4]!r})")
    try:
        text = data[len(MARKER) :].decode("utf-8", "surrogatepass")  # C speed, the whole
        if not text.startswith('["'):
            raise ValueError("not an array starting with a string")
        found: list[bytes] = []
        at = 1
        for _ in range(3):
            value, at = _DECODER.raw_decode(text, at)
            if not isinstance(value, str):
                raise ValueError("a leading field is not a string")
            found.append(value.encode("latin-1"))
            at = _after_comma(text, at)
        top = _TOP.match(text, at)
        if top is None:
            raise ValueError("the root part's offsets are missing")
        offsets = (int(top.group(1)), int(top.group(2)), int(top.group(3)))
        return Heads(found[0], found[1], found[2], offsets)
    except (ValueError, UnicodeError) as error:
        raise UnknownFormat(f"corrupt MessageInfo record: {error}") from error


def _after_comma(text: str, at: int) -> int:
    """The index after the ``,`` (and blanks) that follows a value ending at ``at``."""
    while text[at : at + 1].isspace():
        at += 1
    if text[at : at + 1] != ",":
        raise ValueError("expected ',' between fields")
    at += 1
    while text[at : at + 1].isspace():
        at += 1
    return at


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
    if not data.startswith(MARKERS):
        raise UnknownFormat(f"not a MessageInfo record (marker {data[:4]!r})")
    try:
        record = json.loads(data[len(MARKER) :].decode("utf-8", "surrogatepass"))
        envelope, body, structure, root, subject, from_, to, cc, bcc, sent = record[:10]
        envelope = envelope.encode("latin-1")
        preview = emailid = threadid = None
        if data.startswith(MARKER):
            *record, threadid = record
            if threadid is not None and not isinstance(threadid, str):
                raise TypeError("threadid is not a string")
        if data.startswith((MARKER, NO_THREADID_MARKER)):
            *record, emailid = record
            if emailid is not None and not isinstance(emailid, str):
                raise TypeError("emailid is not a string")
        if data.startswith(OLD_MARKER):
            keys = _derived(envelope, subject)
        else:
            if data.startswith((MARKER, NO_THREADID_MARKER, NO_EMAILID_MARKER)):
                *record, preview = record
                if not isinstance(preview, str | None):
                    raise TypeError("preview is not a string")
            message_id, refs, base, reply, s_from, s_to, s_cc, d_from, d_to = record[10:]
            keys = SortFields(
                message_id=message_id,
                references=tuple(refs),
                base_subject=base,
                reply=bool(reply),
                sort_from=s_from,
                sort_to=s_to,
                sort_cc=s_cc,
                display_from=d_from,
                display_to=d_to,
            )
        return MessageInfo(
            envelope,
            body.encode("latin-1"),
            structure.encode("latin-1"),
            _part(root),
            subject,
            from_,
            to,
            cc,
            bcc,
            None if sent is None else datetime.fromisoformat(sent),
            **keys,
            preview=preview,
            emailid=emailid,
            threadid=threadid,
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


def _derived(envelope: bytes, subject: str) -> SortFields:
    """The SORT/THREAD fields of an ``MI2`` record, from its ENVELOPE and decoded subject."""
    fields = envelope_values(envelope)
    if fields is None or len(fields) != 10:
        return sort_fields(subject, None, None, None, None, None, None)
    return sort_fields(
        subject,
        _nstring(fields[9]),
        None,
        _nstring(fields[8]),
        _first_address(fields[2]),
        _first_address(fields[5]),
        _first_address(fields[6]),
    )


_ENVELOPE_TOKEN = re.compile(rb' *(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\{(\d+)\}\r\n|NIL)')
_QUOTED_PAIR = re.compile(rb"\\(.)")

EnvelopeValue = bytes | None | list["EnvelopeValue"]
"""A value of an ENVELOPE: a string, NIL, or a list of values."""


def envelope_values(envelope: bytes) -> list[EnvelopeValue] | None:
    """The ENVELOPE :func:`mailserv.message.parse` wrote, as nested lists of strings
    (bytes) and NILs (None); None when it is not one."""
    stack: list[list[EnvelopeValue]] = [[]]
    pos, end = 0, len(envelope)
    while pos < end:
        match = _ENVELOPE_TOKEN.match(envelope, pos)
        if match is None or match.end() == pos:
            return None
        pos = match.end()
        opened, closed, quoted, size = match.groups()
        if opened is not None:
            stack.append([])
        elif closed is not None:
            if len(stack) < 2:
                return None
            done = stack.pop()
            stack[-1].append(done)
        elif quoted is not None:
            stack[-1].append(_QUOTED_PAIR.sub(rb"\1", quoted))
        elif size is not None:
            stack[-1].append(envelope[pos : pos + int(size)])
            pos += int(size)
        else:
            stack[-1].append(None)
    if len(stack) != 1 or len(stack[0]) != 1 or not isinstance(stack[0][0], list):
        return None
    return stack[0][0]


def _nstring(value: EnvelopeValue) -> bytes | None:
    return value if isinstance(value, bytes) else None


def _first_address(value: EnvelopeValue) -> Mailbox | None:
    """The first ``(name adl mailbox host)`` of an ENVELOPE address list, as parser text."""
    if not isinstance(value, list) or not value:
        return None
    first = value[0]
    if not isinstance(first, list) or len(first) != 4:
        return None
    name, adl, mailbox, host = (_text(item) for item in first)
    return (name, adl, mailbox or "", host)


def _text(value: EnvelopeValue) -> str | None:
    octets = _nstring(value)
    return None if octets is None else octets.decode("utf-8", "surrogateescape")
