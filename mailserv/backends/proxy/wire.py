"""The upstream server's responses parsed into values, and our commands encoded.

A response arrives as line segments and literals (a segment that ends in ``{n}`` is followed
by the n-octet literal).  Values are: ``list`` for parenthesised lists, ``bytes`` for
quoted strings and literals, ``str`` for atoms (``BODY[HEADER]<0>`` stays one atom), ``int``
for numbers and ``None`` for NIL.  Status responses (``OK``/``NO``/``BAD``/``BYE``) keep
their bracketed response code apart from the human-readable text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mailserv.syntax import encode
from mailserv.syntax.dates import parse_date_time
from mailserv.syntax.flags import SYSTEM_FLAGS, is_keyword
from mailserv.syntax.sequences import format_set, parse_sequence_set

Value = object

_STATUS = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH"})
_TOKEN = re.compile(
    rb" *(?:(\()|(\))|\"((?:[^\"\\\r\n]|\\.)*)\"|~?\{(\d+)\+?\}$"
    rb"|((?:[^ ()\"\[\]{\r\n]|\[[^\]\r\n]*\])+))"
)
_UNQUOTE = re.compile(rb"\\(.)")
_FLAT_TOKEN = re.compile(rb'[()]|"[^"\\\r\n]*"|[^ ()"]+|"')
"""A list's parentheses, a quoted string without escapes, an atom; a lone ``"`` starts a
string only :func:`tokens` reads."""
_NOT_FLAT = re.compile(rb"[\[\]{\r\n]")
"""What only :func:`tokens` reads: bracketed sections, literal markers."""
_MAX_DEPTH = 64


class ResponseError(ValueError):
    """The upstream sent something that is not IMAP."""


@dataclass(slots=True)
class Response:
    """One response: ``tag`` is ``*``, ``+`` or a command tag; ``kind`` upper case.

    ``* 5 FETCH (...)`` has ``number`` 5, kind ``FETCH`` and ``data`` ``[[...]]``;
    ``a1 OK [APPENDUID 7 9] done`` has kind ``OK``, ``code`` ``APPENDUID``, ``code_data``
    ``[7, 9]`` and ``text`` ``done``.
    """

    tag: str
    kind: str
    number: int | None = None
    data: list[Value] = field(default_factory=list)
    code: str | None = None
    code_data: list[Value] = field(default_factory=list)
    text: str = ""


def parse(parts: Sequence[bytes], literals: Sequence[bytes]) -> Response:
    """A response from its line segments (``parts[i]`` ends in a literal marker for every
    ``i < len(literals)``) and literals."""
    first = parts[0]
    if first.startswith(b"+"):
        return Response("+", "", text=first[2:].decode("utf-8", "replace"))
    tag, _, rest = first.partition(b" ")
    word, _, after = rest.partition(b" ")
    number: int | None = None
    if word.isdigit():
        number = int(word)
        word, _, after = after.partition(b" ")
    kind = word.decode("ascii", "replace").upper()
    response = Response(tag.decode("ascii", "replace"), kind, number)
    if kind in _STATUS and not literals:
        _status(response, after)
        return response
    flat = None if literals or len(parts) > 1 or _NOT_FLAT.search(after) else _flat_tokens(after)
    response.data = tokens([after, *parts[1:]], literals) if flat is None else flat
    return response


def _status(response: Response, rest: bytes) -> None:
    if rest.startswith(b"["):
        close = rest.find(b"]")
        if close < 0:
            close = len(rest)
        inner = rest[1:close]
        name, _, args = inner.partition(b" ")
        response.code = name.decode("ascii", "replace").upper()
        if args:
            try:
                response.code_data = tokens([args], [])
            except ResponseError:
                response.code_data = [args.decode("utf-8", "replace")]
        rest = rest[close + 1 :].lstrip(b" ")
    response.text = rest.decode("utf-8", "replace")


class _Nest:
    """The parenthesised lists open while a line is read: values go to ``current``."""

    __slots__ = ("current", "stack")

    def __init__(self) -> None:
        self.current: list[Value] = []
        self.stack = [self.current]

    def open(self) -> None:
        if len(self.stack) > _MAX_DEPTH:
            raise ResponseError("lists nested too deeply")
        inner: list[Value] = []
        self.current.append(inner)
        self.stack.append(inner)
        self.current = inner

    def close(self) -> None:
        if len(self.stack) == 1:
            raise ResponseError("unbalanced ')'")
        self.stack.pop()
        self.current = self.stack[-1]

    def top(self) -> list[Value]:
        if len(self.stack) != 1:
            raise ResponseError("unbalanced '('")
        return self.current


def tokens(parts: Sequence[bytes], literals: Sequence[bytes]) -> list[Value]:
    """The values in ``parts`` with ``literals`` spliced in where their markers stand."""
    nest = _Nest()
    for index, part in enumerate(parts):
        pos = 0
        end = len(part)
        while pos < end:
            match = _TOKEN.match(part, pos)
            if match is None or match.end() == pos:
                if part[pos:].strip() == b"":
                    break
                raise ResponseError(f"cannot parse {part[pos : pos + 40]!r}")
            pos = match.end()
            opened, closed, quoted, literal, atom = match.groups()
            if atom is not None:
                nest.current.append(_atom(atom))
            elif quoted is not None:
                nest.current.append(_UNQUOTE.sub(rb"\1", quoted) if b"\\" in quoted else quoted)
            elif opened is not None:
                nest.open()
            elif closed is not None:
                nest.close()
            else:
                if index >= len(literals) or int(literal) != len(literals[index]):
                    raise ResponseError("literal marker without its literal")
                nest.current.append(literals[index])
    return nest.top()


def _flat_tokens(part: bytes) -> list[Value] | None:
    """:func:`tokens` of a line of atoms, lists and strings without escapes, split at once:
    the untagged FETCH lines of a big STORE, a flag resync or a mailbox's listing
    (``(UID 7 FLAGS (\\Seen) INTERNALDATE "..." MODSEQ (9))``), tens of thousands in one
    answer, read in half the time.  None for a string it does not read."""
    nest = _Nest()
    for token in _FLAT_TOKEN.findall(part):
        if token == b"(":
            nest.open()
        elif token == b")":
            nest.close()
        elif token[0] == 0x22:  # '"'
            if len(token) == 1:
                return None
            nest.current.append(token[1:-1])
        else:
            nest.current.append(_atom(token))
    return nest.top()


def _atom(raw: bytes) -> Value:
    if raw.isdigit():
        return int(raw)
    text = raw.decode("utf-8", "replace")
    return None if text.upper() == "NIL" else text


# -- reading common values ----------------------------------------------------------------


def pairs(items: Sequence[Value]) -> dict[str, Value]:
    """A FETCH attribute list as a dict with upper-case names."""
    out: dict[str, Value] = {}
    for i in range(0, len(items) - 1, 2):
        name = items[i]
        if isinstance(name, str):
            out[name.upper()] = items[i + 1]
    return out


def flag_set(value: Value) -> frozenset[str]:
    """A flag (or attribute) list's names.  Inside a flag list every atom is a flag, so the
    atom ``NIL`` (which :func:`tokens` reads as None) is the keyword ``NIL`` there."""
    if not isinstance(value, list):
        return frozenset()
    # System flags in canonical case, as every backend keeps them (an upstream may say \SEEN).
    names = [
        flag if isinstance(flag, str) else "NIL"
        for flag in value
        if flag is None or isinstance(flag, str)
    ]
    return frozenset(SYSTEM_FLAGS.get(n.lower(), n) if n.startswith("\\") else n for n in names)


def modseq_of(value: Value) -> int | None:
    """``MODSEQ (12)`` → 12."""
    if isinstance(value, list) and value and isinstance(value[0], int):
        return value[0]
    return None


def internaldate(value: Value) -> datetime | None:
    """``"17-Jul-1996 02:44:25 -0700"`` → an aware datetime (None when malformed)."""
    if not isinstance(value, bytes):
        return None
    try:
        return parse_date_time(value.decode("ascii"))
    except ValueError:
        return None


def set_ranges(text: str) -> list[tuple[int, int]]:
    """``3:5,9`` → [(3, 5), (9, 9)], each pair low to high; ValueError when malformed."""
    parsed = parse_sequence_set(text)
    if parsed.has_star:
        raise ValueError("'*' in a set from upstream")
    return [(low, high) if low <= high else (high, low) for low, high in parsed.ranges]


def uid_ranges(text: str) -> list[int]:
    """``3:5,9`` → [3, 4, 5, 9] (for COPYUID and VANISHED); ValueError when malformed."""
    out: list[int] = []
    for first, last in set_ranges(text):
        if last - first > 10_000_000:
            raise ValueError("range too large")
        out.extend(range(first, last + 1))
    return out


def to_text(value: Value) -> str:
    """An atom, number or string as text (mailbox names, set notation)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


# -- encoding commands --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    """An argument sent as a literal (synchronizing unless the upstream has LITERAL+)."""

    data: bytes


Arg = bytes | Literal


def string(value: bytes | str) -> Arg:
    """An astring argument: atom when safe, quoted when printable, else a literal."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return raw if encode.is_atom(raw) else quoted(raw)


def quoted(value: bytes | str) -> Arg:
    """A string argument that is never an atom (search values, dates)."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    found = encode.quoted(raw)
    return Literal(raw) if found is None else found


def uid_set(uids: Iterable[int]) -> bytes:
    """UIDs in any order as compact ascending ranges (``1:5,9``)."""
    return format_set(sorted(set(uids))).encode("ascii")


def is_flag(flag: str) -> bool:
    """A flag we can send as an atom (``\\Seen``, ``$Label``, ``Work``)."""
    return is_keyword(flag[1:] if flag.startswith("\\") else flag)
