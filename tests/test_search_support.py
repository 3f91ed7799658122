"""Shared helpers for the search tests (no tests here).

Until the modules of the "parser" and "mime" helpers exist, minimal stand-ins with their
announced APIs are put in ``sys.modules``; once the real ones are importable they are used.
"""

from __future__ import annotations

import bisect
import email
import email.policy
import importlib
import re
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from mailserv.imap.tokens import Atom, ParenList, String, Token


def _have(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _install_parser() -> None:
    mod = types.ModuleType("mailserv.imap.parser")

    class ParseError(Exception):
        def __init__(self, tag: str | None, text: str) -> None:
            super().__init__(text)
            self.tag = tag
            self.text = text

    def astring(tok: Token) -> bytes:
        if isinstance(tok, Atom):
            return tok.value.encode()
        if isinstance(tok, String):
            return tok.value
        raise ParseError(None, "string expected")

    def number(tok: Token, nonzero: bool = False) -> int:
        if not isinstance(tok, Atom) or not re.fullmatch(r"[0-9]{1,10}", tok.value):
            raise ParseError(None, "number expected")
        value = int(tok.value)
        if value > 0xFFFFFFFF or (nonzero and value == 0):
            raise ParseError(None, "number out of range")
        return value

    months = [
        "jan",
        "feb",
        "mar",
        "apr",
        "may",
        "jun",
        "jul",
        "aug",
        "sep",
        "oct",
        "nov",
        "dec",
    ]

    def search_date(tok: Token) -> date:
        raw = astring(tok).decode("ascii", "replace")
        m = re.fullmatch(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})", raw)
        if not m or m.group(2).lower() not in months:
            raise ParseError(None, "bad date")
        try:
            return date(int(m.group(3)), months.index(m.group(2).lower()) + 1, int(m.group(1)))
        except ValueError:
            raise ParseError(None, "bad date") from None

    def text_atom(tok: Token) -> str:
        if not isinstance(tok, Atom):
            raise ParseError(None, "atom expected")
        return tok.value

    for obj in (ParseError, astring, number, search_date, text_atom):
        setattr(mod, obj.__name__, obj)
    sys.modules[mod.__name__] = mod


def _install_sequence() -> None:
    from mailserv.imap.parser import ParseError

    mod = types.ModuleType("mailserv.imap.sequence")

    @dataclass(frozen=True)
    class SequenceSet:
        items: tuple[tuple[int | None, int | None], ...]  # None is "*"

        def resolve(self, largest: int) -> list[tuple[int, int]]:
            pairs = sorted(
                tuple(sorted((largest if a is None else a, largest if b is None else b)))
                for a, b in self.items
            )
            out: list[list[int]] = []
            for a, b in pairs:
                if out and a <= out[-1][1] + 1:
                    out[-1][1] = max(out[-1][1], b)
                else:
                    out.append([a, b])
            return [(a, b) for a, b in out]

    def parse_sequence_set(text: str) -> SequenceSet:
        items = []
        for part in text.split(","):
            m = re.fullmatch(r"([1-9][0-9]{0,9}|\*)(?::([1-9][0-9]{0,9}|\*))?", part)
            if not m:
                raise ParseError(None, "bad sequence set")
            a = None if m.group(1) == "*" else int(m.group(1))
            b = a if m.group(2) is None else (None if m.group(2) == "*" else int(m.group(2)))
            items.append((a, b))
        return SequenceSet(tuple(items))

    def uids_in(ranges: Sequence[tuple[int, int]], uids: Sequence[int]) -> list[int]:
        out: list[int] = []
        for a, b in ranges:
            out.extend(uids[bisect.bisect_left(uids, a) : bisect.bisect_right(uids, b)])
        return out

    for obj in (SequenceSet, parse_sequence_set, uids_in):
        setattr(mod, obj.__name__, obj)
    sys.modules[mod.__name__] = mod


def _install_text() -> None:
    mod = types.ModuleType("mailserv.message.text")

    def _parse(raw: bytes) -> email.message.EmailMessage:
        return email.message_from_bytes(raw, policy=email.policy.default)

    def header_values(raw: bytes, info: object, name: str) -> list[str]:
        return [str(v) for v in _parse(raw).get_all(name, [])]

    def header_text(raw: bytes, info: object) -> str:
        return "\n".join(f"{k}: {v}" for k, v in _parse(raw).items())

    def body_text(raw: bytes, info: object) -> str:
        out = []
        for part in _parse(raw).walk():
            if part.get_content_maintype() == "text":
                out.append(part.get_content())
        return "\n".join(out)

    for obj in (header_values, header_text, body_text):
        setattr(mod, obj.__name__, obj)
    sys.modules[mod.__name__] = mod
    import mailserv.message

    mailserv.message.text = mod  # type: ignore[attr-defined]


if not _have("mailserv.imap.parser"):
    _install_parser()
if not _have("mailserv.imap.sequence"):
    _install_sequence()
if not _have("mailserv.message.text"):
    _install_text()

from mailserv.imap.parser import ParseError  # noqa: E402
from mailserv.imap.search import SearchProgram, evaluate  # noqa: E402
from mailserv.interfaces import MessageMeta  # noqa: E402
from mailserv.message.info import MessageInfo, Part  # noqa: E402


def info(
    subject: str = "",
    from_: str = "",
    to: str = "",
    cc: str = "",
    bcc: str = "",
    sent: datetime | None = None,
    root: Part | None = None,
) -> MessageInfo:
    """A MessageInfo with the search fields (and ``root``, for content searches) filled in."""
    root = root or Part(0, 0, 0, "text/plain", "7bit", "us-ascii")
    return MessageInfo(b"", b"", b"", root, subject, from_, to, cc, bcc, sent)


def single_part(
    raw: bytes, content_type: str = "text/plain", encoding: str = "7bit", charset: str = "us-ascii"
) -> Part:
    """The root Part of a non-multipart message, located by hand."""
    return Part(0, raw.index(b"\r\n\r\n") + 4, len(raw), content_type, encoding, charset)


def meta(
    uid: int,
    flags: frozenset[str] | set[str] = frozenset(),
    internaldate: datetime | None = None,
    size: int = 100,
    modseq: int = 1,
    **fields: object,
) -> MessageMeta:
    when = internaldate or datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    return MessageMeta(uid, frozenset(flags), when, size, modseq, info(**fields))  # type: ignore[arg-type]


@dataclass
class Ctx:
    """A SearchContext stand-in that counts content loads."""

    uids: Sequence[int]
    recent: frozenset[int] = frozenset()
    messages: dict[int, bytes] = field(default_factory=dict)
    loads: list[int] = field(default_factory=list)

    async def content(self, uid: int) -> bytes:
        self.loads.append(uid)
        return self.messages[uid]


def run(program: SearchProgram, metas: Sequence[MessageMeta], ctx: Ctx) -> list[int]:
    """Drive the coroutine to completion; the stand-in context never truly suspends."""
    coro = evaluate(program, metas, ctx)
    try:
        coro.send(None)
    except StopIteration as stop:
        result: list[int] = stop.value
        return result
    coro.close()
    raise AssertionError("evaluate suspended")


def toks(*items: object) -> tuple[Token, ...]:
    """Tokens from python values: str -> Atom, bytes -> String, tuple/list -> ParenList."""
    out: list[Token] = []
    for item in items:
        if isinstance(item, str):
            out.append(Atom(item))
        elif isinstance(item, bytes):
            out.append(String(item))
        elif isinstance(item, (tuple, list)):
            out.append(ParenList(toks(*item)))
        else:
            out.append(item)  # type: ignore[arg-type]
    return tuple(out)


__all__ = [
    "UTC",
    "Ctx",
    "ParseError",
    "info",
    "meta",
    "run",
    "single_part",
    "timedelta",
    "toks",
]
