"""Argument readers: the typed values command handlers read from tokens (strings, numbers,
flags, mailbox names and patterns, dates), each raising ParseError (a BAD) or the NO its
RFC asks for."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from typing import TypeVar

from mailserv import errors
from mailserv.interfaces import INBOX
from mailserv.syntax import utf7
from mailserv.syntax.dates import parse_date, parse_date_time
from mailserv.syntax.errors import ParseError
from mailserv.syntax.flags import flag
from mailserv.syntax.tokens import Atom, ParenList, String, Token

_T = TypeVar("_T")


class UndecodableName(ParseError):
    """A mailbox name or pattern that is a valid astring but not modified UTF-7 or UTF-8."""


_NOT_ASTRING = re.compile(r'[\x00-\x20\x7f(){%*"\\]')
_NOT_PATTERN = re.compile(r'[\x00-\x20\x7f(){"\\]')
_NUMBER = re.compile(r"[0-9]{1,20}")
MAX_MAILBOX_NAME = 1024


def _describe(tok: Token) -> str:
    if isinstance(tok, Atom):
        return "an atom"
    if isinstance(tok, String):
        return "a literal" if tok.literal else "a quoted string"
    return "a parenthesised list"


def astring(tok: Token) -> bytes:
    """An atom or string argument as bytes."""
    if isinstance(tok, String):
        return tok.value
    if isinstance(tok, Atom):
        if _NOT_ASTRING.search(tok.value):
            raise ParseError(None, f"Invalid character in atom {tok.value[:40]!r}; quote it")
        return tok.value.encode("utf-8")
    raise ParseError(None, "Expected an atom or string, got a parenthesised list")


def text_atom(tok: Token) -> str:
    """An atom's text as sent (keywords, command options, sequence sets)."""
    if isinstance(tok, Atom):
        return tok.value
    raise ParseError(None, f"Expected an atom, got {_describe(tok)}")


def nstring(tok: Token) -> bytes | None:
    """A string, or None for NIL."""
    if isinstance(tok, String):
        return tok.value
    if isinstance(tok, Atom) and tok.value.upper() == "NIL":
        return None
    raise ParseError(None, f"Expected a string or NIL, got {_describe(tok)}")


def _number(tok: Token, limit: int, nonzero: bool, what: str) -> int:
    if isinstance(tok, Atom) and _NUMBER.fullmatch(tok.value):
        value = int(tok.value)
        if value > limit:
            raise ParseError(None, f"{what} out of range: {tok.value}")
        if nonzero and value == 0:
            raise ParseError(None, f"Expected a non-zero {what}")
        return value
    shown = tok.value[:40] if isinstance(tok, Atom) else _describe(tok)
    raise ParseError(None, f"Expected a {what}, got {shown!r}")


def number(tok: Token, *, nonzero: bool = False) -> int:
    """An unsigned 32-bit number (``nz-number`` when ``nonzero``)."""
    return _number(tok, 0xFFFFFFFF, nonzero, "number")


def number64(tok: Token, *, nonzero: bool = False) -> int:
    """An unsigned 63-bit number (mod-sequence values, RFC 7162)."""
    return _number(tok, (1 << 63) - 1, nonzero, "mod-sequence number")


def flags(tok: Token) -> frozenset[str]:
    """A flag list ``(\\Seen foo)`` or a single flag atom.  ``\\Recent`` is accepted here;
    STORE and APPEND must refuse it themselves."""
    if isinstance(tok, ParenList):
        found = []
        for item in tok.items:
            if not isinstance(item, Atom):
                raise ParseError(None, f"Expected a flag, got {_describe(item)}")
            found.append(flag(item.value))
        return frozenset(found)
    if isinstance(tok, Atom):
        return frozenset((flag(tok.value),))
    raise ParseError(None, f"Expected a flag list, got {_describe(tok)}")


def _name_text(raw: bytes, what: str, max_bytes: int, utf8: bool) -> str:
    if len(raw) > max_bytes:
        raise ParseError(None, f"{what} too long (limit {max_bytes} bytes)")
    if b"\x00" in raw or b"\r" in raw or b"\n" in raw:
        raise ParseError(None, f"{what} contains NUL, CR or LF")
    try:
        # UTF-8 names (RFC 6855 3, RFC 9051 5.1): "&" is itself, no modified UTF-7, and
        # Net-Unicode (RFC 5198): NFC, so that a name reaches its mailbox however composed
        return unicodedata.normalize("NFC", raw.decode("utf-8")) if utf8 else utf7.decode(raw)
    except ValueError:
        expected = "UTF-8" if utf8 else "modified UTF-7 or UTF-8"
        raise UndecodableName(None, f"{what} is not valid {expected}") from None


def _inbox(name: str) -> str:
    if name.upper() == INBOX:
        return INBOX
    if name[:6].upper() == "INBOX/":
        return "INBOX/" + name[6:]
    return name


def mailbox(tok: Token, *, max_bytes: int = MAX_MAILBOX_NAME, utf8: bool = False) -> str:
    """A mailbox name, decoded from modified UTF-7 (raw UTF-8 accepted), INBOX normalised;
    ``utf8``: the client enabled UTF-8 names, the name is UTF-8 alone.

    A well-formed astring that does not decode names no mailbox that can exist: that is
    ``MailboxNotFound`` (a tagged NO), not a syntax error.
    """
    try:
        return _inbox(_name_text(astring(tok), "Mailbox name", max_bytes, utf8))
    except UndecodableName as exc:
        raise errors.MailboxNotFound(f"No such mailbox: {exc.text}") from None


def new_mailbox(tok: Token, *, max_bytes: int = MAX_MAILBOX_NAME, utf8: bool = False) -> str:
    """The name of a mailbox to create: like ``mailbox``, but one that does not decode
    cannot be created (``InvalidMailboxName``, a tagged NO [CANNOT])."""
    try:
        return _inbox(_name_text(astring(tok), "Mailbox name", max_bytes, utf8))
    except UndecodableName as exc:
        raise errors.InvalidMailboxName(exc.text) from None


def denormalized(tok: Token, utf8: bool) -> str | None:
    """The name the client sent when the NFC form ``mailbox`` reads differs from it (RFC
    9051 5.1: the server answers with the normal form and an ``OLDNAME``); else None."""
    if not utf8 or isinstance(tok, ParenList):
        return None
    try:
        sent = tok.value if isinstance(tok, Atom) else tok.value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if unicodedata.is_normalized("NFC", sent) else sent


def list_pattern(tok: Token, *, max_bytes: int = MAX_MAILBOX_NAME, utf8: bool = False) -> str:
    """A LIST/LSUB reference or pattern: like ``mailbox`` but ``%`` and ``*`` may be atoms."""
    if isinstance(tok, Atom):
        if _NOT_PATTERN.search(tok.value):
            raise ParseError(None, f"Invalid character in pattern {tok.value[:40]!r}; quote it")
        raw = tok.value.encode("utf-8")
    else:
        raw = astring(tok)
    return _inbox(_name_text(raw, "Mailbox pattern", max_bytes, utf8))


def _date_text(tok: Token, what: str) -> str:
    if isinstance(tok, Atom):
        return tok.value
    if isinstance(tok, String):
        try:
            return tok.value.decode("ascii")
        except UnicodeDecodeError:
            raise ParseError(None, f"Invalid {what}") from None
    raise ParseError(None, f"Expected a {what}, got {_describe(tok)}")


def _read(parse: Callable[[str], _T], text: str) -> _T:
    """``parse(text)`` with its ValueError as a ParseError (a BAD) of the same text."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ParseError(None, str(exc)) from None


def search_date(tok: Token) -> date:
    """A SEARCH date ``d-Mon-yyyy``, bare or quoted."""
    return _read(parse_date, _date_text(tok, "date"))


def date_time(tok: Token) -> datetime:
    """APPEND's ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` as an aware datetime."""
    if not isinstance(tok, String):
        raise ParseError(None, f"Expected a quoted date-time, got {_describe(tok)}")
    return _read(parse_date_time, _date_text(tok, "date-time"))


__all__ = [
    "MAX_MAILBOX_NAME",
    "UndecodableName",
    "astring",
    "date_time",
    "flags",
    "list_pattern",
    "mailbox",
    "new_mailbox",
    "nstring",
    "number",
    "number64",
    "search_date",
    "text_atom",
]
