"""The engine's search-key tree as the arguments of an upstream ``UID SEARCH``.

Every key of :mod:`mailserv.search` has an IMAP spelling except two cases, for
which ``translate`` returns None (the engine then evaluates the query itself): a flag that
cannot be sent as an atom, and MODSEQ when the upstream keeps no mod-sequences.  The tree
reaching a backend holds no sequence numbers and no \\Recent (``bind`` made them UID sets).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailserv.backends.proxy import wire
from mailserv.backends.proxy.wire import Arg
from mailserv.search import (
    All,
    And,
    Contains,
    DateCompare,
    DateField,
    DateOp,
    HasFlag,
    InSet,
    InternalSince,
    ModSeqAtLeast,
    Not,
    Or,
    SearchKey,
    SearchProgram,
    SizeCompare,
    StringField,
    UidIn,
    walk,
)
from mailserv.search.evaluate import needs_content
from mailserv.syntax import dates
from mailserv.syntax.sequences import STAR

_SYSTEM = {
    "\\seen": (b"SEEN", b"UNSEEN"),
    "\\answered": (b"ANSWERED", b"UNANSWERED"),
    "\\deleted": (b"DELETED", b"UNDELETED"),
    "\\draft": (b"DRAFT", b"UNDRAFT"),
    "\\flagged": (b"FLAGGED", b"UNFLAGGED"),
}
_DATE_WORDS = {
    (DateField.INTERNAL, DateOp.BEFORE): b"BEFORE",
    (DateField.INTERNAL, DateOp.ON): b"ON",
    (DateField.INTERNAL, DateOp.SINCE): b"SINCE",
    (DateField.SENT, DateOp.BEFORE): b"SENTBEFORE",
    (DateField.SENT, DateOp.ON): b"SENTON",
    (DateField.SENT, DateOp.SINCE): b"SENTSINCE",
}
_MAX_ARGS = 20_000


_METADATA_KEYS = (
    All,
    HasFlag,
    SizeCompare,
    InternalSince,
    InSet,
    UidIn,
    ModSeqAtLeast,
    Not,
    Or,
    And,
)


def answerable_here(program: object, parsed: bool) -> bool:
    """True when the mirror can answer ``program`` without asking the upstream.

    The mirror holds flags, sizes, internal dates, UIDs and mod-sequences of every message,
    so such a search (UNSEEN, FLAGGED, LARGER, SINCE, ...) needs no round trip; it also sees
    the mirror's own mod-sequences when the upstream keeps none.  When every message is
    ``parsed`` (its MessageInfo known), searches of the decoded From/To/Cc/Bcc/Subject and
    the sent date are local too (FROM/TO/CC/BCC then also match the normalised addresses,
    as on every other backend; upstream they follow the upstream's rules); BODY, TEXT and
    other headers always go upstream.
    """
    if not isinstance(program, SearchProgram):
        return False
    if parsed:
        return not needs_content(program.key)
    for node in walk(program.key):
        if isinstance(node, DateCompare):
            if node.field is not DateField.INTERNAL:
                return False
        elif not isinstance(node, _METADATA_KEYS):
            return False
    return True


class Untranslatable(Exception):
    """A key the upstream cannot be asked about."""


@dataclass(frozen=True, slots=True)
class Query:
    """``args`` follow ``UID SEARCH``; ``utf8`` when a ``CHARSET UTF-8`` must precede."""

    args: list[Arg]
    utf8: bool


def translate(program: object, modseq: bool) -> Query | None:
    """The upstream query for ``program`` (a SearchProgram), or None to let the engine."""
    if not isinstance(program, SearchProgram):
        return None
    out: list[Arg] = []
    try:
        utf8 = _key(program.key, out, modseq, top=True)
    except Untranslatable:
        return None
    if len(out) > _MAX_ARGS:
        return None
    return Query(out, utf8)


def _key(key: SearchKey, out: list[Arg], modseq: bool, top: bool = False) -> bool:
    """Append ``key``; True when a string needs UTF-8."""
    if isinstance(key, All):
        out.append(b"ALL")
        return False
    if isinstance(key, HasFlag):
        _flag(key, out)
        return False
    if isinstance(key, Contains):
        return _contains(key, out)
    if isinstance(key, DateCompare):
        day = key.date
        out.append(_DATE_WORDS[key.field, key.op])
        out.append(dates.format_date(day))
        return False
    if isinstance(key, SizeCompare):
        out += [b"LARGER" if key.larger else b"SMALLER", b"%d" % key.size]
        return False
    if isinstance(key, InSet):
        if not key.uid:
            raise Untranslatable("sequence numbers")
        out += [b"UID", _set_text(key)]
        return False
    if isinstance(key, UidIn):
        if not key.uids:
            out += [b"NOT", b"ALL"]
        else:
            out += [b"UID", wire.uid_set(key.uids)]
        return False
    if isinstance(key, ModSeqAtLeast):
        if not modseq:
            raise Untranslatable("no mod-sequences upstream")
        out.append(b"MODSEQ")
        if key.entry is not None:
            out += [wire.quoted(key.entry), (key.entry_type or "all").encode("ascii")]
        out.append(b"%d" % key.modseq)
        return False
    if isinstance(key, Not):
        out.append(b"NOT")
        return _key(key.key, out, modseq)
    if isinstance(key, Or):
        out.append(b"OR")
        left = _key(key.left, out, modseq)
        return _key(key.right, out, modseq) or left
    if isinstance(key, And):
        if not key.keys:
            out.append(b"ALL")
            return False
        if not top:
            out.append(b"(")
        utf8 = False
        for inner in key.keys:
            utf8 = _key(inner, out, modseq) or utf8
        if not top:
            out.append(b")")
        return utf8
    raise Untranslatable(type(key).__name__)


def _flag(key: HasFlag, out: list[Arg]) -> None:
    words = _SYSTEM.get(key.flag.casefold())
    if words is not None:
        out.append(words[0] if key.present else words[1])
        return
    if key.flag.startswith("\\") or not wire.is_flag(key.flag):
        raise Untranslatable(f"flag {key.flag!r}")
    out += [b"KEYWORD" if key.present else b"UNKEYWORD", key.flag.encode("utf-8")]


def _contains(key: Contains, out: list[Arg]) -> bool:
    value = key.value
    utf8 = not value.isascii()
    if key.field is StringField.HEADER:
        if not key.header.isascii() or not key.header:
            raise Untranslatable("header name")
        out += [b"HEADER", wire.quoted(key.header), wire.quoted(value)]
        return utf8
    out += [key.field.value.encode("ascii"), wire.quoted(value)]
    return utf8


def _set_text(key: InSet) -> bytes:
    parts = []
    for low, high in key.set.ranges:
        a = b"*" if low == STAR else b"%d" % low
        b = b"*" if high == STAR else b"%d" % high
        parts.append(a if low == high else a + b":" + b)
    return b",".join(parts)
