"""Header-block scanning and header-value decoding shared by parse, sections and text.

Header blocks are located with a few compiled patterns (C speed); RFC 2047 words and
Content-Type parameters (RFC 2045, RFC 2231) are decoded with the stdlib ``email`` package.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.header import decode_header
from email.message import Message
from urllib.parse import quote

# A header line starts with a field name and colon, or is a continuation (leading WSP).
# Obsolete syntax allows WSP before the colon; names are anything but WSP, CR, LF and ':'.
_LINE_START = re.compile(rb"[ \t]|[^\s:]++[ \t]*+:")
_NON_HEADER_LINE = re.compile(rb"\n(?![ \t]|[^\s:]++[ \t]*+:)")
FIELD = re.compile(rb"([^\s:]++)[ \t]*+:([^\n]*+(?:\n[ \t][^\n]*+)*+)\n?")
"""One field with its continuation lines: group 1 the name, group 2 the raw value."""

_BAD_B_WORD = re.compile(r"=\?[^?\s]*\?[bB]\?[^?\s]*[^A-Za-z0-9+/=?\s][^?\s]*\?=")
"""A base64 encoded-word with a character base64 lacks: RFC 2047 6.3 says show it as is
(the stdlib would silently drop the character)."""

MAX_DECODED = 16 * 1024
"""Characters of one header value that are RFC 2047-decoded."""
MAX_FIELDS = 10_000
"""Fields of one header block that are looked at; the rest stay header but are ignored."""
MAX_PARAMS_FIELD = 8 * 1024
"""Octets of a Content-Type/-Disposition value that are parsed (the stdlib parser is
quadratic in the number of parameters)."""


def header_end(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """``(fields_end, body_start)`` of the entity at ``start``.

    The fields end at the first line that is no header line.  A blank line there is
    skipped to find the body; any other line (no blank line in the message) starts the body.
    """
    if _LINE_START.match(raw, start, end) is None:
        stop = start
    else:
        found = _NON_HEADER_LINE.search(raw, start, end)
        stop = end if found is None else found.end()
    if stop >= end:
        return end, end
    first = raw[stop]
    if first == 0x0A:
        return stop, stop + 1
    if first == 0x0D and stop + 1 < end and raw[stop + 1] == 0x0A:
        return stop, stop + 2
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
    """RFC 2047-decode ``value``; bad charsets or encodings fall back, never raise.

    Only the first :data:`MAX_DECODED` characters are decoded (the stdlib decoder is
    quadratic in the number of words); the rest is kept as it is.
    """
    if len(value) > MAX_DECODED:
        return decode_words(value[:MAX_DECODED]) + value[MAX_DECODED:]
    if "=?" not in value or _BAD_B_WORD.search(value):
        return value
    try:
        chunks = decode_header(value)
    except Exception:  # HeaderParseError, binascii errors, odd charsets: show it as is
        return value
    # decode_header turns unencoded text into bytes with raw-unicode-escape: Latin-1 undoes
    # that exactly unless the text had characters beyond Latin-1 (then written as \uXXXX).
    wide = not value.isascii() and any(ord(char) > 0xFF for char in value)
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:
            try:
                out.append(chunk.decode("raw-unicode-escape" if wide else "latin-1"))
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
    text = value[:MAX_PARAMS_FIELD].decode("latin-1")
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
            decoded = decode_charset(encoded.encode("latin-1", "replace"), charset)
            octets = encoded.encode("latin-1", "replace")
            wire = f"{charset or ''}'{language or ''}'{quote(octets, safe='')}"
            params.append(Param(name, name.encode("latin-1") + b"*", wire.encode(), decoded))
        else:
            params.append(Param(name, name.encode("latin-1"), raw.encode("latin-1"), raw))
    return main, params
