"""ESEARCH results (RFC 4731): ``RETURN (MIN MAX COUNT ALL)`` read, and the ``* ESEARCH``
line written, for SEARCH (:mod:`mailserv.imap.commands.messages`) and SORT's ESORT
(:mod:`mailserv.imap.extensions.esort`); the capabilities are offered by
:mod:`mailserv.imap.extensions.esearch` and ``esort``.

MIN and MAX are the first and the last of the numbers as given (ascending for SEARCH, in
sort order for SORT); ALL is the numbers as a sequence set that keeps their order (runs of
consecutive numbers become ``a:b``).  An empty result has COUNT 0 and none of the others.
Extensions add options (``Extension.result_options``: SEARCHRES's SAVE); the commands tell
them what was found (``found``) or that the command failed (``returning``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from mailserv.imap.arguments import text_atom
from mailserv.imap.replies import Bad, Reply
from mailserv.slicing import TimeSlices
from mailserv.syntax.encode import string
from mailserv.syntax.errors import ParseError
from mailserv.syntax.tokens import Atom, Command, ParenList, Token

if TYPE_CHECKING:
    from mailserv.imap.registry import ResultOption
    from mailserv.imap.session import Session

OPTIONS = ("MIN", "MAX", "COUNT", "ALL")
"""The result options, in the order the response lists them."""
STEP = 4096
"""Numbers made into the sequence set between two chances for the reactor."""


def split_return(
    args: Sequence[Token], command: str, extra: AbstractSet[str] = frozenset()
) -> tuple[frozenset[str] | None, Sequence[Token]]:
    """``RETURN (...)`` at the head of ``args``: its options (None when absent) and the rest;
    ``extra``: the options extensions add (``Registry.result_options``)."""
    if not args or not isinstance(args[0], Atom) or args[0].value.upper() != "RETURN":
        return None, args
    if len(args) < 2:
        raise Bad("RETURN needs a parenthesised list of result options")
    return parse_return(args[1], command, extra), args[2:]


def parse_return(
    token: Token, command: str, extra: AbstractSet[str] = frozenset()
) -> frozenset[str]:
    """The options of ``RETURN (...)``; ``()`` means ALL (RFC 4731 3.1)."""
    if not isinstance(token, ParenList):
        raise Bad("RETURN needs a parenthesised list of result options")
    chosen = set()
    for item in token.items:
        word = text_atom(item).upper()
        if word not in OPTIONS and word not in extra:
            raise Bad(f"Unknown {command} result option {word[:40]}")
        chosen.add(word)
    return frozenset(chosen or {"ALL"})


Run = Callable[[frozenset[str] | None, Sequence[Token]], Awaitable[Reply]]
"""A SEARCH or SORT given its RETURN options (None: no RETURN) and its other arguments."""


async def returning(session: Session, command: Command, run: Run) -> Reply:
    """Read the command's ``RETURN (...)`` and run it: an extension's option is told
    when the command then ends in NO (not BAD: RFC 5182 2.1)."""
    known = session.services.registry.result_options
    options, args = split_return(command.args, command.name, known.keys())
    try:
        return await run(options, args)
    except (Bad, ParseError):
        raise
    except Exception:
        for option in _extension_options(session, options):
            option.failed(session)
        raise


async def found(
    session: Session, options: frozenset[str] | None, numbers: Sequence[int], uid: bool
) -> None:
    """The matches (as the command reports them, in result order) for the extensions'
    options among ``options``."""
    for option in _extension_options(session, options):
        await option.found(session, numbers, uid, options or frozenset())


def _extension_options(session: Session, options: frozenset[str] | None) -> list[ResultOption]:
    if not options:
        return []
    known = session.services.registry.result_options
    return [known[name] for name in sorted(options) if name in known]


async def response(
    slices: TimeSlices,
    tag: str,
    uid: bool,
    numbers: Sequence[int],
    options: frozenset[str],
    modseq: int | None = None,
    ascending: bool = False,
) -> bytes:
    """The ``* ESEARCH`` line; ``modseq``: RFC 7162's highest mod-sequence of the result;
    ``ascending``: the numbers are (SEARCH's), which makes ALL quicker.
    Empty when ``options`` holds none of RFC 4731's (RFC 5182 2.4: ``RETURN (SAVE)`` alone)."""
    if options.isdisjoint(OPTIONS):
        return b""
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
        out.append(b"ALL " + await ordered_set(slices, numbers, ascending))
    if modseq is not None and numbers:
        out.append(b"MODSEQ %d" % modseq)
    return b" ".join(out) + b"\r\n"


async def number_list(slices: TimeSlices, numbers: Sequence[int]) -> bytes:
    """``numbers`` as ``n n n...`` (SEARCH's, SORT's answer), made a piece at a time."""
    parts = []
    for start in range(0, len(numbers), STEP):
        # A list's repr is the quickest way to many decimal numbers: "[1, 2]" -> "1 2".
        parts.append(repr(list(numbers[start : start + STEP]))[1:-1].replace(",", "").encode())
        await slices.pause()
    return b" ".join(parts)


async def ordered_set(slices: TimeSlices, numbers: Sequence[int], ascending: bool = False) -> bytes:
    """``numbers`` (not empty) as a sequence set that keeps their order: ``3,1:2,9``.

    With ``ascending`` (they are, without repeats), the end of a run is found by
    bisection: ``numbers[j] - j`` is the same all along a run and grows after it.
    """
    parts = []
    total = len(numbers)
    i = done = 0
    while i < total:
        if i - done >= STEP:
            await slices.pause()
            done = i
        start = numbers[i]
        end = i + 1  # the run is numbers[i:end]
        if end < total and numbers[end] == start + 1:
            if ascending:
                end = _run_end(numbers, i, end + 1)
            else:
                while end < total and numbers[end] == start + (end - i):
                    end += 1
            parts.append(b"%d:%d" % (start, numbers[end - 1]))
        else:
            parts.append(b"%d" % start)
        i = end
    return b",".join(parts)


def _run_end(numbers: Sequence[int], first: int, known: int) -> int:
    """Where the run of consecutive ``numbers`` (ascending) from ``first`` ends, knowing
    it holds ``numbers[first:known]``: galloping, then bisection."""
    offset = numbers[first] - first
    total, step = len(numbers), 2
    low = known - 1  # in the run
    high = low + step  # probed: past the run, or the end
    while high < total and numbers[high] - high == offset:
        low, step = high, step * 2
        high = low + step
    high = min(high, total)
    while high - low > 1:  # numbers[low] in the run, numbers[high] (if any) not
        middle = (low + high) // 2
        if numbers[middle] - middle == offset:
            low = middle
        else:
            high = middle
    return low + 1
