"""Parse a message once, when it enters the store: part offsets, ENVELOPE, BODY[STRUCTURE].

The scanner walks header blocks and MIME boundaries with ``bytes.find`` and compiled
patterns, so its cost grows with the number of parts, not with the size of their bodies.
It never raises: malformed input yields the most plausible structure, and nesting or part
counts beyond :data:`MAX_DEPTH` / :data:`MAX_PARTS` are treated as opaque data.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from twisted.logger import Logger

from mailserv.message import headers
from mailserv.message.addresses import (
    MAX_ADDRESS_FIELD,
    Item,
    encode_items,
    parse_field,
    search_field,
)
from mailserv.message.headers import Param, iter_fields, parse_params, search_text, unfold
from mailserv.message.ids import email_id
from mailserv.message.info import MessageInfo, Part
from mailserv.message.preview import make_preview
from mailserv.message.sortkeys import first_mailbox, sort_fields
from mailserv.syntax.encode import string

MAX_DEPTH = 20
"""Nesting (multipart children, encapsulated messages) deeper than this is opaque."""
MAX_PARTS = 1000
"""Entities per message; boundaries after the limit are not looked for."""
MAX_PROBES = 100_000
"""Lines starting with a boundary that are examined per message (a bound on hostile input)."""
MAX_ADDRESS_TOTAL = 1024 * 1024
"""Octets of address fields parsed per message, encapsulated messages included."""

_log = Logger()

_MIME_FIELDS = frozenset(
    {
        b"content-type",
        b"content-transfer-encoding",
        b"content-id",
        b"content-description",
        b"content-disposition",
        b"content-language",
        b"content-location",
    }
)
_MESSAGE_FIELDS = _MIME_FIELDS | {
    b"date",
    b"subject",
    b"from",
    b"sender",
    b"reply-to",
    b"to",
    b"cc",
    b"bcc",
    b"in-reply-to",
    b"message-id",
    b"references",
}
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = re.compile(_TOKEN + "/" + _TOKEN)
_ENCODING = re.compile(rb'[^\s;("]+')
_PADDING = re.compile(rb"[ \t]*")
_ASCII_DEFAULT = b'("CHARSET" "US-ASCII")'
_EMPTY_BODY = b'("TEXT" "PLAIN" ' + _ASCII_DEFAULT + b' NIL NIL "7BIT" 0 0)'
_EMPTY_STRUCTURE = _EMPTY_BODY[:-1] + b" NIL NIL NIL NIL)"
_ENCAPSULATING = frozenset({"message/rfc822", "message/global"})

Fields = dict[bytes, bytes]
_SEARCHED_ADDRESSES = (b"from", b"to", b"cc", b"bcc")


class _Scan:
    """State of one parse: the message and how many entities were found so far."""

    __slots__ = ("raw", "count", "probes", "address_budget")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.count = 0
        self.probes = 0
        self.address_budget = MAX_ADDRESS_TOTAL

    def items(self, value: bytes) -> list[Item]:
        """An address list's items, parsed within the message's address budget."""
        limit = min(MAX_ADDRESS_FIELD, self.address_budget)
        self.address_budget -= min(len(value), limit)
        return parse_field(value, limit)


class _Entity:
    """A parsed entity: its Part and its BODY / BODYSTRUCTURE encodings."""

    __slots__ = ("part", "body", "structure", "fields")

    def __init__(self, part: Part, body: bytes, structure: bytes, fields: Fields) -> None:
        self.part = part
        self.body = body
        self.structure = structure
        self.fields = fields


def parse_message(raw: bytes) -> MessageInfo:
    """Everything FETCH and SEARCH need about ``raw``; never raises."""
    raw = bytes(raw)
    scan = _Scan(raw)
    parsed: dict[bytes, list[Item]] = {}
    try:
        top = _entity(scan, 0, len(raw), 0, "text/plain", True)
        env = _envelope(top.fields, scan, parsed)
    except Exception:  # a bug here must not lose the message: store it as opaque text
        _log.failure("parse_message failed; storing the message as opaque text")
        return _opaque(raw)
    fields = top.fields
    subject = search_text(fields.get(b"subject"))
    info = MessageInfo(
        envelope=env,
        body=top.body,
        bodystructure=top.structure,
        root=top.part,
        subject=subject,
        from_=search_field(fields.get(b"from"), parsed.get(b"from")),
        to=search_field(fields.get(b"to"), parsed.get(b"to")),
        cc=search_field(fields.get(b"cc"), parsed.get(b"cc")),
        bcc=search_field(fields.get(b"bcc"), parsed.get(b"bcc")),
        sent=_date(fields.get(b"date")),
        **sort_fields(
            subject,
            fields.get(b"message-id"),
            fields.get(b"references"),
            fields.get(b"in-reply-to"),
            first_mailbox(parsed.get(b"from")),
            first_mailbox(parsed.get(b"to")),
            first_mailbox(parsed.get(b"cc")),
        ),
    )
    return replace(info, preview=make_preview(raw, info), emailid=email_id(raw))


def _opaque(raw: bytes) -> MessageInfo:
    size = b"%d" % len(raw)
    lines = b"%d" % _lines(raw, 0, len(raw))
    body = b'("TEXT" "PLAIN" ' + _ASCII_DEFAULT + b' NIL NIL "7BIT" ' + size + b" " + lines
    root = Part(0, 0, len(raw), "text/plain", "7bit", "us-ascii")
    nil = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    texts = _raw_texts(raw)
    keys = sort_fields(texts[0], None, None, None, None, None, None)
    return MessageInfo(
        nil,
        body + b")",
        body + b" NIL NIL NIL NIL)",
        root,
        *texts,
        None,
        **keys,
        emailid=email_id(raw),
    )


def _raw_texts(raw: bytes) -> tuple[str, str, str, str, str]:
    """Subject, From, To, Cc and Bcc of a message that could not be parsed, unparsed, so
    SEARCH still finds their text ('' each when even that fails)."""
    try:
        stop = headers.header_end(raw, 0, len(raw))[0]
        wanted = (b"subject", *_SEARCHED_ADDRESSES)
        found: Fields = {}
        for match in iter_fields(raw, 0, stop):
            name = match.group(1).lower()
            if name in wanted and name not in found:
                found[name] = match.group(2)
        subject, from_, to, cc, bcc = (search_text(found.get(name)) for name in wanted)
        return subject, from_, to, cc, bcc
    except Exception:
        _log.failure("Cannot read the header of an unparsable message")
        return "", "", "", "", ""


def _envelope(fields: Fields, scan: _Scan, parsed: dict[bytes, list[Item]] | None = None) -> bytes:
    """The ENVELOPE of a message header (RFC 3501 7.4.2), from its raw field values.

    The parsed From/To/Cc/Bcc items are left in ``parsed`` when given (for SEARCH).
    """

    def addresses(name: bytes) -> bytes:
        value = fields.get(name)
        if value is None:
            return b"NIL"
        items = scan.items(value)
        if parsed is not None and name in _SEARCHED_ADDRESSES:
            parsed[name] = items
        return encode_items(items)

    sender_from = addresses(b"from")
    sender = addresses(b"sender")
    reply_to = addresses(b"reply-to")
    return b"(%s %s %s %s %s %s %s %s %s %s)" % (
        _nstring(fields.get(b"date")),
        _nstring(fields.get(b"subject")),
        sender_from,
        sender_from if sender == b"NIL" else sender,
        sender_from if reply_to == b"NIL" else reply_to,
        addresses(b"to"),
        addresses(b"cc"),
        addresses(b"bcc"),
        _nstring(fields.get(b"in-reply-to")),
        _nstring(fields.get(b"message-id")),
    )


def _nstring(value: bytes | None) -> bytes:
    return b"NIL" if value is None else string(unfold(value))


def _date(value: bytes | None) -> datetime | None:
    if value is None:
        return None
    try:
        sent = parsedate_to_datetime(headers.to_text(unfold(value)))
    except Exception:  # unparsable, or a date datetime cannot represent
        return None
    return sent.replace(tzinfo=UTC) if sent.tzinfo is None else sent


def _lines(raw: bytes, start: int, end: int) -> int:
    """Text lines of ``raw[start:end]``, an unterminated last line included."""
    if end <= start:
        return 0
    return raw.count(b"\n", start, end) + (raw[end - 1] != 0x0A)


def _entity(scan: _Scan, start: int, end: int, depth: int, default: str, top: bool) -> _Entity:
    """Parse the entity at ``raw[start:end]``; ``top`` when it is a (possibly nested) message."""
    raw = scan.raw
    scan.count += 1
    fields_end, body_start = headers.header_end(raw, start, end)
    wanted = _MESSAGE_FIELDS if top else _MIME_FIELDS
    fields: Fields = {}
    for match in iter_fields(raw, start, fields_end):
        name = match.group(1).lower()
        if name in wanted and name not in fields:
            fields[name] = match.group(2)

    ctype, params = _content_type(fields.get(b"content-type"), default)
    encoding_value = fields.get(b"content-transfer-encoding")
    encoding = "7bit"
    if encoding_value is not None:
        token = _ENCODING.search(encoding_value)
        if token is not None:
            encoding = token.group().decode("latin-1").lower()
    charset = next((p.value.strip().lower() for p in params if p.name == "charset"), None) or None
    major, _, minor = ctype.partition("/")
    if major == "text" and charset is None:
        charset = "us-ascii"
    if depth >= MAX_DEPTH and (major == "multipart" or ctype in _ENCAPSULATING):
        ctype, major, minor, params = "application/octet-stream", "application", "octet-stream", []

    extension = b" ".join(
        (
            _disposition(fields.get(b"content-disposition")),
            _language(fields.get(b"content-language")),
            _location(fields.get(b"content-location")),
        )
    )
    param_list = _param_list(params, major == "text")

    if major == "multipart":
        boundary = next((p.value for p in params if p.name == "boundary"), "")
        children = _children(scan, body_start, end, boundary, depth, minor == "digest")
        subtype = string(minor.upper().encode())
        if children:
            body = b"(" + b"".join(c.body for c in children) + b" " + subtype + b")"
            structure = b"".join(c.structure for c in children)
        else:
            body = b"(" + _EMPTY_BODY + b" " + subtype + b")"
            structure = _EMPTY_STRUCTURE
        structure = b"(%s %s %s %s)" % (structure, subtype, param_list, extension)
        part = Part(
            start, body_start, end, ctype, encoding, charset, tuple(c.part for c in children)
        )
        return _Entity(part, body, structure, fields)

    fields_wire = b"%s %s %s %s %s %s %d" % (
        string(major.upper().encode()),
        string(minor.upper().encode()),
        param_list,
        _nstring(fields.get(b"content-id")),
        _nstring(fields.get(b"content-description")),
        string(encoding.encode("latin-1").upper()),  # ASCII case only: "ÿ".upper() is not latin-1
        end - body_start,
    )
    inner: _Entity | None = None
    if ctype in _ENCAPSULATING:
        inner = _entity(scan, body_start, end, depth + 1, "text/plain", True)
        lines = b"%d" % _lines(raw, body_start, end)
        env = _envelope(inner.fields, scan)
        body = b"(%s %s %s %s)" % (fields_wire, env, inner.body, lines)
        structure = b"(%s %s %s %s NIL %s)" % (fields_wire, env, inner.structure, lines, extension)
    elif major == "text":
        lines = b"%d" % _lines(raw, body_start, end)
        body = b"(%s %s)" % (fields_wire, lines)
        structure = b"(%s %s NIL %s)" % (fields_wire, lines, extension)
    else:
        body = b"(" + fields_wire + b")"
        structure = b"(%s NIL %s)" % (fields_wire, extension)
    part = Part(
        start,
        body_start,
        end,
        ctype,
        encoding,
        charset,
        message=None if inner is None else inner.part,
    )
    return _Entity(part, body, structure, fields)


def _content_type(value: bytes | None, default: str) -> tuple[str, list[Param]]:
    """Lower-case ``type/subtype`` and parameters; RFC 2045 defaults when absent or invalid."""
    if value is None:
        return default, []
    main, params = parse_params(unfold(value))
    main = main.strip()
    if not _MEDIA_TYPE.fullmatch(main):
        return "text/plain", []
    return main.lower(), params


def _param_list(params: list[Param], text: bool) -> bytes:
    """``body-fld-param``; text parts without a charset get RFC 2046's US-ASCII."""
    if not params:
        return _ASCII_DEFAULT if text else b"NIL"
    pairs = [string(p.wire_name.upper()) + b" " + string(p.wire_value) for p in params]
    if text and not any(p.name == "charset" for p in params):
        pairs.append(_ASCII_DEFAULT[1:-1])
    return b"(" + b" ".join(pairs) + b")"


def _disposition(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    main, params = parse_params(unfold(value))
    main = main.strip()
    if not main:
        return b"NIL"
    kind = string(main.upper().encode("latin-1", "replace"))
    return b"(" + kind + b" " + _param_list(params, False) + b")"


def _language(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    tags = [t.strip() for t in unfold(value).split(b",")]
    tags = [t for t in tags if t]
    if not tags:
        return b"NIL"
    if len(tags) == 1:
        return string(tags[0])
    return b"(" + b" ".join(string(t) for t in tags) + b")"


def _location(value: bytes | None) -> bytes:
    """RFC 2557 Content-Location: folding whitespace inside the URI is removed."""
    if value is None:
        return b"NIL"
    return string(b"".join(unfold(value).split()))


def _children(
    scan: _Scan, start: int, end: int, boundary: str, depth: int, digest: bool
) -> list[_Entity]:
    """The body parts of a multipart body ``raw[start:end]`` delimited by ``boundary``.

    The CRLF before a delimiter line belongs to the delimiter (RFC 2046 5.1.1); a missing
    close delimiter ends the last part at the end of the multipart.
    """
    if not boundary:
        return []
    raw = scan.raw
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    needle = b"\n" + delimiter
    default = "message/rfc822" if digest else "text/plain"
    children: list[_Entity] = []
    part_start = -1
    pos = start
    at_start = raw.startswith(delimiter, start, end)
    while scan.count < MAX_PARTS and scan.probes < MAX_PROBES:
        scan.probes += 1
        if at_start:
            found, at_start = start, False
        else:
            found = raw.find(needle, pos, end)
            if found < 0:
                break
            found += 1
        after = found + len(delimiter)
        close = raw.startswith(b"--", after, end)
        if close:
            after += 2
        after = _PADDING.match(raw, after, end).end()  # type: ignore[union-attr]
        if after < end and raw[after] not in b"\r\n":
            pos = after  # "--boundary" followed by more text: not a delimiter line
            continue
        if part_start >= 0:
            crlf = found - 2 >= part_start and raw[found - 2] == 0x0D
            part_end = found - 2 if crlf else found - 1
            children.append(
                _entity(scan, part_start, max(part_end, part_start), depth + 1, default, False)
            )
        if close:
            return children
        if raw.startswith(b"\r\n", after, end):
            after += 2
        elif after < end:
            after += 1
        part_start = after
        pos = after - 1 if after > start and raw[after - 1] == 0x0A else after
    if part_start >= 0 and scan.count < MAX_PARTS:
        children.append(_entity(scan, part_start, end, depth + 1, default, False))
    return children
