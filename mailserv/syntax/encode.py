"""Encoding values into IMAP syntax (RFC 3501 section 9): strings, literals, atoms and flag
lists, for the server's responses and the proxy's upstream commands alike."""

from __future__ import annotations

import functools
from collections.abc import Iterable

MAX_QUOTED = 1024
"""Longer strings go out as literals."""


def quoted(value: bytes, utf8: bool = False) -> bytes | None:
    """The quoted string for ``value`` when it is printable ASCII shorter than MAX_QUOTED,
    else None (it must be a literal).  ``utf8``: the client takes 8-bit UTF-8 in quoted
    strings (RFC 6855, RFC 9051), so printable UTF-8 is quoted too."""
    if len(value) < MAX_QUOTED and (_is_printable_utf8(value) if utf8 else _is_printable(value)):
        if b'"' in value or b"\\" in value:
            value = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return b'"' + value + b'"'
    return None


def string(value: bytes, utf8: bool = False) -> bytes:
    """A quoted string when the bytes are printable ASCII (or UTF-8, ``utf8``), else a
    literal; never NIL."""
    found = quoted(value, utf8)
    return literal(value) if found is None else found


def _is_printable(value: bytes) -> bool:
    return value.isascii() and (not value or (value.translate(None, _CONTROLS) == value))


def _is_printable_utf8(value: bytes) -> bool:
    if value.isascii():
        return _is_printable(value)
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return value.translate(None, _CONTROLS) == value


_CONTROLS = bytes(range(0x20)) + b"\x7f"


def literal(value: bytes) -> bytes:
    return b"{%d}\r\n" % len(value) + value


def nstring(value: bytes | None, utf8: bool = False) -> bytes:
    return b"NIL" if value is None else string(value, utf8)


def text(value: str | None) -> bytes:
    """A header-derived text value: UTF-8 bytes as nstring (8-bit goes out as a literal)."""
    return nstring(None if value is None else value.encode("utf-8", "surrogateescape"))


def is_atom(value: bytes) -> bool:
    """Whether ``value`` can be sent as an astring's atom (not empty, no special characters,
    not ``NIL``)."""
    return bool(value) and all(b in _ATOM_CHARS for b in value) and value.upper() != b"NIL"


def astring(value: bytes, utf8: bool = False) -> bytes:
    """An atom when it is one, else a string (mailbox names in LIST/STATUS)."""
    return value if is_atom(value) else string(value, utf8)


_ATOM_CHARS = frozenset(range(0x21, 0x7F)) - set(b'(){ %*"\\]')


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(sorted(flags)).encode("ascii", "replace") + b")"


@functools.lru_cache(maxsize=1024)
def flag_set_list(flags: frozenset[str]) -> bytes:
    """:func:`flag_list` of a set of flags, made once per distinct set (a mailbox has few;
    every FETCH FLAGS and STORE answer sends them)."""
    return flag_list(flags)
