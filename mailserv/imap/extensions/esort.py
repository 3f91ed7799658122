"""ESORT (RFC 5267 section 4.2): ``SORT RETURN (MIN MAX COUNT ALL) ...`` answered with an
ESEARCH response (RFC 4731 syntax) instead of ``* SORT``.

MIN and MAX are the first and the last message in the sort order; ALL lists every match in
that order as a sequence set (ascending runs of consecutive numbers become ``a:b``).  The
SORT command (:mod:`mailserv.imap.extensions.sort`) reads the options with
:func:`parse_return`.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailserv.imap.arguments import text_atom
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad
from mailserv.syntax.encode import string
from mailserv.syntax.tokens import ParenList, Token

OPTIONS = ("MIN", "MAX", "COUNT", "ALL")
"""The result options, in the order the response lists them."""


def parse_return(token: Token) -> frozenset[str]:
    """The options of ``RETURN (...)``; ``()`` means ALL (RFC 4731 3.1)."""
    if not isinstance(token, ParenList):
        raise Bad("RETURN needs a parenthesised list of result options")
    chosen = set()
    for item in token.items:
        word = text_atom(item).upper()
        if word not in OPTIONS:
            raise Bad(f"Unknown SORT result option {word[:40]}")
        chosen.add(word)
    return frozenset(chosen or {"ALL"})


def response(tag: str, uid: bool, numbers: Sequence[int], options: frozenset[str]) -> bytes:
    """The ``* ESEARCH`` line of a sorted result."""
    out = [b"* ESEARCH (TAG " + string(tag.encode()) + b")"]
    if uid:
        out.append(b"UID")
    if numbers and "MIN" in options:
        out.append(b"MIN %d" % numbers[0])
    if numbers and "MAX" in options:
        out.append(b"MAX %d" % numbers[-1])
    if "COUNT" in options:
        out.append(b"COUNT %d" % len(numbers))
    if numbers and "ALL" in options:
        out.append(b"ALL " + ordered_set(numbers))
    return b" ".join(out) + b"\r\n"


def ordered_set(numbers: Sequence[int]) -> bytes:
    """``numbers`` as a sequence set that keeps their order: ``3,1:2,9``."""
    parts = []
    start = previous = numbers[0]
    for number in numbers[1:]:
        if number == previous + 1:
            previous = number
            continue
        parts.append(b"%d" % start if start == previous else b"%d:%d" % (start, previous))
        start = previous = number
    parts.append(b"%d" % start if start == previous else b"%d:%d" % (start, previous))
    return b",".join(parts)


EXTENSION = Extension("ESORT", capabilities=(Capability(b"ESORT"),))
