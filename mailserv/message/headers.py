"""Header-block scanning and header-value decoding shared by parse, sections and text.

Header blocks are located with a few compiled patterns (C speed); RFC 2047 words and
Content-Type parameters (RFC 2045, RFC 2231) are decoded with the stdlib ``email`` package.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.errors import HeaderParseError
from email.header import decode_header
from email.message import Message
from email.utils import collapse_rfc2231_value
from urllib.parse import quote

# One header line: a field name and colon, or a continuation (leading WSP).  Obsolete syntax
# allows WSP between the name and the colon; names are anything but WSP, CR, LF and ':'.
_LINE = rb"(?:[^\s:]+[ \t]*:|[ \t])[^\n]*"
_HEADER_LINES = re.compile(rb"(?:" + _LINE + rb"\n)*")
_LAST_LINE = re.compile(_LINE)
FIELD = re.compile(rb"([^\s:]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)\n?")
"""One field with its continuation lines: group 1 the name, group 2 the raw value."""

MAX_FIELDS = 10_000
"""Fields of one header block that are looked at; the rest stay header but are ignored."""


def header_end(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """``(fields_end, body_start)`` of the entity at ``start``.

    The fields end where a line stops looking like a header line.  A blank line there is
    skipped to find the body; any other line (no blank line in the message) starts the body.
    """
    stop = _HEADER_LINES.match(raw, start, end).end()  # type: ignore[union-attr]
    if stop >= end:
        return end, end
    first = raw[stop]
    if first == 0x0A:
        return stop, stop + 1
    if first == 0x0D and stop + 1 < end and raw[stop + 1] == 0x0A:
        return stop, stop + 2
    if _LAST_LINE.fullmatch(raw, stop, end):
        return end, end
    return stop, stop


def iter_fields(raw: bytes, start: int, stop: int) -> Iterator[re.Match[bytes]]:
    """Matches of :data:`FIELD` in a header block, at most :data:`MAX_FIELDS`."""
    for count, match in enumerate(FIELD.finditer(raw, start, stop)):
        if count >= MAX_FIELDS:
            return
        yield match


def unfold(value: bytes) -> bytes:
    """RFC 5322 unfolding (drop the line breaks), without surrounding whitespace."""
    if b"\n" in value:
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return value.strip(b" \t\r")


def to_text(value: bytes) -> str:
    """Header bytes as text: UTF-8 (RFC 6532) when valid, else Latin-1 so nothing is lost."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def decode_words(value: str) -> str:
    """RFC 2047-decode ``value``; bad charsets or encodings fall back, never raise."""
    if "=?" not in value:
        return value
    try:
        chunks = decode_header(value)
    except (HeaderParseError, ValueError, LookupError, TypeError):
        return value
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:
            # decode_header turns unencoded text into bytes with raw-unicode-escape.
            try:
                out.append(chunk.decode("raw-unicode-escape"))
            except UnicodeDecodeError:
                out.append(chunk.decode("latin-1"))
        else:
            out.append(decode_charset(chunk, charset.partition("*")[0]))
    return "".join(out)


def decode_charset(data: bytes, charset: str | None) -> str:
    """``data`` in ``charset`` with replacement; unknown or ASCII labels try UTF-8 first."""
    name = (charset or "").strip().lower()
    if name in ("", "us-ascii", "ascii", "unknown-8bit", "x-unknown"):
        return to_text(data)
    try:
        return data.decode(name, "replace")
    except Exception:  # unknown codec, or a codec that is not a text codec
        return data.decode("utf-8", "replace")


def search_text(value: bytes | None) -> str:
    """A header value as SEARCH sees it: unfolded and RFC 2047-decoded; '' when absent."""
    if value is None:
        return ""
    return decode_words(to_text(unfold(value)))


class Param:
    """One parameter: ``wire`` name/value as BODYSTRUCTURE sends them, ``value`` decoded."""

    __slots__ = ("name", "wire_name", "wire_value", "value")

    def __init__(self, name: str, wire_name: bytes, wire_value: bytes, value: str) -> None:
        self.name = name
        self.wire_name = wire_name
        self.wire_value = wire_value
        self.value = value


def parse_params(value: bytes) -> tuple[str, list[Param]]:
    """The main value (e.g. ``text/plain``) and parameters of a structured MIME field.

    RFC 2231 continuations are merged; an extended value keeps its ``charset'lang'%XX``
    form on the wire (name with ``*``) so the output stays ASCII, and is decoded in
    ``Param.value``.
    """
    text = value.decode("latin-1")
    if ";" not in text:
        return text.strip(), []
    message = Message()
    message["X"] = text
    try:
        pairs = message.get_params(header="X")
    except Exception:  # decode_params can trip over mixed continuation numbering
        pairs = None
    if not pairs:
        return text.partition(";")[0].strip(), []
    main = pairs[0][0]
    params: list[Param] = []
    for name, raw in pairs[1:]:
        if not name:
            continue
        if isinstance(raw, tuple):
            charset, language, encoded = raw
            decoded = collapse_rfc2231_value(raw)
            octets = encoded.encode("latin-1", "replace")
            wire = f"{charset or ''}'{language or ''}'{quote(octets, safe='')}"
            params.append(Param(name, name.encode("latin-1") + b"*", wire.encode(), decoded))
        else:
            params.append(Param(name, name.encode("latin-1"), raw.encode("latin-1"), raw))
    return main, params
