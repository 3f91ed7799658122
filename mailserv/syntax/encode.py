"""Encoding values into IMAP response syntax (RFC 3501 section 9)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def string(value: bytes) -> bytes:
    """A quoted string when the bytes are printable ASCII, else a literal; never NIL."""
    if len(value) < 1024 and _is_printable(value):
        if b'"' in value or b"\\" in value:
            value = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return b'"' + value + b'"'
    return literal(value)


def _is_printable(value: bytes) -> bool:
    return value.isascii() and (not value or (value.translate(None, _CONTROLS) == value))


_CONTROLS = bytes(range(0x20)) + b"\x7f"


def literal(value: bytes) -> bytes:
    return b"{%d}\r\n" % len(value) + value


def nstring(value: bytes | None) -> bytes:
    return b"NIL" if value is None else string(value)


def text(value: str | None) -> bytes:
    """A header-derived text value: UTF-8 bytes as nstring (8-bit goes out as a literal)."""
    return nstring(None if value is None else value.encode("utf-8", "surrogateescape"))


def astring(value: bytes) -> bytes:
    """An atom when it is one, else a string (mailbox names in LIST/STATUS)."""
    if value and all(b in _ATOM_CHARS for b in value) and value.upper() != b"NIL":
        return value
    return string(value)


_ATOM_CHARS = frozenset(range(0x21, 0x7F)) - set(b'(){ %*"\\]')


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(sorted(flags)).encode("ascii", "replace") + b")"


def internaldate(value: datetime) -> bytes:
    """``"dd-Mon-yyyy hh:mm:ss +zzzz"`` with the day space-padded, as date-time requires."""
    offset = value.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f'"{value.day:2d}-{_MONTHS[value.month - 1]}-{value.year:04d} '
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} "
        f'{sign}{minutes // 60:02d}{minutes % 60:02d}"'
    ).encode("ascii")


def month_number(name: str) -> int:
    """1..12 for an English month abbreviation (any case); ValueError otherwise."""
    return _MONTHS.index(name[:1].upper() + name[1:3].lower()) + 1
