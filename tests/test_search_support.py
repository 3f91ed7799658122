"""Shared helpers for the search tests (no tests here): hand-built metadata, a context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailserv.interfaces import MessageMeta
from mailserv.message.info import MessageInfo, Part
from mailserv.search import SearchProgram
from mailserv.search.evaluate import SearchContext, evaluate
from mailserv.syntax.tokens import Atom, ParenList, String, Token


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
    """Builds a SearchContext whose loader serves ``messages`` and records each load."""

    uids: Sequence[int]
    recent: frozenset[int] = frozenset()
    messages: dict[int, bytes] = field(default_factory=dict)
    loads: list[int] = field(default_factory=list)

    async def content(self, uid: int) -> bytes:
        self.loads.append(uid)
        return self.messages[uid]

    @property
    def context(self) -> SearchContext:
        return SearchContext(self.uids, self.recent, self.content)


def run(program: SearchProgram, metas: Sequence[MessageMeta], ctx: Ctx) -> list[int]:
    """Drive the coroutine to completion; the loader here never truly suspends."""
    coro = evaluate(program, metas, ctx.context)
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
