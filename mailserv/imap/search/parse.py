"""SEARCH arguments (RFC 3501 6.4.4) to a ``SearchProgram``; extensions add keys.

Bad syntax raises ``ParseError`` (the engine answers BAD); an unsupported CHARSET raises
``BadCharset`` (the engine answers ``NO [BADCHARSET (...)]``).  The client controls the key
count and the nesting depth, so both are bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date

from mailserv.imap.arguments import astring, number, search_date, text_atom
from mailserv.interfaces import RECENT
from mailserv.search import (
    All,
    And,
    Contains,
    DateCompare,
    DateField,
    DateOp,
    HasFlag,
    InSet,
    Not,
    Or,
    SearchKey,
    SearchProgram,
    SizeCompare,
    StringField,
)
from mailserv.syntax.errors import ParseError
from mailserv.syntax.sequences import SAVED, SequenceSet, parse_sequence_set
from mailserv.syntax.tokens import Atom, ParenList, String, Token

SUPPORTED_CHARSETS = ("UTF-8", "US-ASCII")
MAX_DEPTH = 64
"""Parentheses, NOT and OR nested deeper than this are refused (recursion stays shallow)."""


class BadCharset(Exception):
    """CHARSET names something we cannot search in; answer NO with ``response_code``."""

    def __init__(self, charset: str) -> None:
        super().__init__(f"Unsupported charset {charset[:40]}")
        self.charset = charset
        self.text = str(self)
        self.response_code = b"BADCHARSET (" + " ".join(SUPPORTED_CHARSETS).encode() + b")"


def parse_search(
    args: Sequence[Token],
    max_keys: int = 1000,
    *,
    max_depth: int = MAX_DEPTH,
    extra: Mapping[str, SearchKeyReader] | None = None,
) -> SearchProgram:
    """Parse ``[CHARSET name] key...``; the keys are ANDed.  ``extra``: the keys
    extensions registered, by name (RFC 3501's own cannot be replaced)."""
    charset: str | None = None
    start = 0
    if args and isinstance(args[0], Atom) and args[0].value.upper() == "CHARSET":
        if len(args) < 2:
            raise _error("CHARSET needs a charset name")
        name = _ascii(_astring(args[1], "CHARSET needs a charset name"), "charset name")
        charset = name.upper()
        if charset not in SUPPORTED_CHARSETS:
            raise BadCharset(name)
        start = 2
    reader = KeyReader(args, start, [max_keys], max_depth, extra or {})
    if reader.at_end():
        raise _error("SEARCH needs at least one search key")
    keys: list[SearchKey] = []
    while not reader.at_end():
        keys.append(reader.key(0))
    key = keys[0] if len(keys) == 1 else And(tuple(keys))
    return SearchProgram(key, charset)


def _error(text: str) -> ParseError:
    return ParseError(None, text)


def _astring(token: Token, text: str) -> bytes:
    if isinstance(token, ParenList):
        raise _error(text)
    try:
        return astring(token)
    except ParseError:
        raise _error(text) from None


def _ascii(value: bytes, what: str) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise _error(f"Invalid {what}") from None


def _text(value: bytes, key: str) -> str:
    """Search strings are UTF-8; US-ASCII is its subset, so one decoding serves both."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _error(f"{key} string is not valid UTF-8") from None


_FLAG_KEYS: dict[str, SearchKey] = {
    "ALL": All(),
    "ANSWERED": HasFlag("\\Answered"),
    "DELETED": HasFlag("\\Deleted"),
    "DRAFT": HasFlag("\\Draft"),
    "FLAGGED": HasFlag("\\Flagged"),
    "RECENT": HasFlag(RECENT),
    "SEEN": HasFlag("\\Seen"),
    "UNANSWERED": HasFlag("\\Answered", False),
    "UNDELETED": HasFlag("\\Deleted", False),
    "UNDRAFT": HasFlag("\\Draft", False),
    "UNFLAGGED": HasFlag("\\Flagged", False),
    "UNSEEN": HasFlag("\\Seen", False),
    "NEW": And((HasFlag(RECENT), HasFlag("\\Seen", False))),
    "OLD": HasFlag(RECENT, False),
}
_STRING_KEYS = {f.value: f for f in StringField if f is not StringField.HEADER}
_DATE_KEYS = {
    prefix + op.value: (field, op)
    for prefix, field in (("", DateField.INTERNAL), ("SENT", DateField.SENT))
    for op in DateOp
}
_FIELD_NAME_CHARS = frozenset(chr(c) for c in range(33, 127)) - {":"}


class KeyReader:
    """A cursor over the tokens of one list level, sharing the key budget with its parent."""

    def __init__(
        self,
        tokens: Sequence[Token],
        pos: int,
        budget: list[int],
        max_depth: int,
        extra: Mapping[str, SearchKeyReader],
    ) -> None:
        self.tokens = tokens
        self.pos = pos
        self.budget = budget  # keys still allowed; one list shared by nested readers
        self.max_depth = max_depth
        self.extra = extra

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def next_token(self, text: str) -> Token:
        if self.at_end():
            raise _error(text)
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def key(self, depth: int) -> SearchKey:
        """One search key at the cursor."""
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise _error("Too many search keys")
        if depth > self.max_depth:
            raise _error("Search keys nested too deeply")
        token = self.next_token("Search key expected")
        if isinstance(token, ParenList):
            return self._list(token, depth + 1)
        if isinstance(token, String):
            raise _error("Search key expected, got a string")
        name = token.value.upper()
        if name and name[0] in "0123456789*":
            return InSet(self._sequence(name, "Invalid sequence set"))
        if name in _FLAG_KEYS:
            return _FLAG_KEYS[name]
        if name in _STRING_KEYS:
            value = _astring(self.next_token(f"{name} needs a string"), f"{name} needs a string")
            return Contains(_STRING_KEYS[name], _text(value, name))
        if name in _DATE_KEYS:
            field, op = _DATE_KEYS[name]
            return DateCompare(field, op, self.read_date(name))
        handler = _HANDLERS.get(name) or self.extra.get(name)
        if handler is None:
            raise _error(f"Unknown search key {token.value[:40]}")
        return handler(self, name, depth)

    def _list(self, token: ParenList, depth: int) -> SearchKey:
        if not token.items:
            raise _error("Empty parenthesised search key list")
        inner = KeyReader(token.items, 0, self.budget, self.max_depth, self.extra)
        keys: list[SearchKey] = []
        while not inner.at_end():
            keys.append(inner.key(depth))
        return keys[0] if len(keys) == 1 else And(tuple(keys))

    def read_date(self, name: str) -> date:
        """A ``date`` argument of the key ``name``; ParseError naming it if not one."""
        text = f"{name} needs a date (d-Mon-yyyy)"
        token = self.next_token(text)
        if isinstance(token, ParenList):
            raise _error(text)
        try:
            return search_date(token)
        except ParseError:
            raise _error(text) from None

    def _sequence(self, value: str, text: str) -> SequenceSet:
        try:
            return parse_sequence_set(value, saved=SAVED in self.extra)
        except ParseError:
            raise _error(f"{text}: {value[:40]}") from None

    def _header(self, name: str, depth: int) -> SearchKey:
        text = "HEADER needs a field name and a string"
        field = _ascii(_astring(self.next_token(text), text), "header field name")
        if not field or not set(field) <= _FIELD_NAME_CHARS:
            raise _error(f"Invalid header field name {field[:40]!r}")
        value = _text(_astring(self.next_token(text), text), "HEADER")
        return Contains(StringField.HEADER, value, field)

    def _keyword(self, name: str, depth: int) -> SearchKey:
        text = f"{name} needs a flag keyword"
        token = self.next_token(text)
        if not isinstance(token, Atom):
            raise _error(text)
        try:
            flag = text_atom(token)
        except ParseError:
            raise _error(text) from None
        return HasFlag(flag, name == "KEYWORD")

    def number(self, text: str, nonzero: bool = False) -> int:
        """A number argument (``nz-number`` when ``nonzero``); ParseError(text) if not."""
        token = self.next_token(text)
        if not isinstance(token, Atom):
            raise _error(text)
        try:
            return number(token, nonzero=nonzero)
        except ParseError:
            raise _error(text) from None

    def _size(self, name: str, depth: int) -> SearchKey:
        return SizeCompare(name == "LARGER", self.number(f"{name} needs a number"))

    def _not(self, name: str, depth: int) -> SearchKey:
        if self.at_end():
            raise _error("NOT needs a search key")
        return Not(self.key(depth + 1))

    def _or(self, name: str, depth: int) -> SearchKey:
        if self.at_end():
            raise _error("OR needs two search keys")
        left = self.key(depth + 1)
        if self.at_end():
            raise _error("OR needs two search keys")
        return Or(left, self.key(depth + 1))

    def _uid(self, name: str, depth: int) -> SearchKey:
        text = "UID needs a sequence set"
        token = self.next_token(text)
        if not isinstance(token, Atom):
            raise _error(text)
        return InSet(self._sequence(token.value, "Invalid UID set"), uid=True)


SearchKeyReader = Callable[[KeyReader, str, int], SearchKey]
"""Reads one key's arguments (``reader.next_token``) given its name and nesting depth."""

_HANDLERS: dict[str, SearchKeyReader] = {
    "HEADER": KeyReader._header,
    "KEYWORD": KeyReader._keyword,
    "UNKEYWORD": KeyReader._keyword,
    "LARGER": KeyReader._size,
    "SMALLER": KeyReader._size,
    "NOT": KeyReader._not,
    "OR": KeyReader._or,
    "UID": KeyReader._uid,
}
RESERVED = frozenset({*_FLAG_KEYS, *_STRING_KEYS, *_DATE_KEYS, *_HANDLERS, "CHARSET"})
"""RFC 3501's key names: an extension cannot register these."""
