"""ESEARCH results (RFC 4731): ``RETURN (MIN MAX COUNT ALL)`` read, and the ``* ESEARCH``
line written, for SEARCH (:mod:`mailserv.imap.commands.messages`) and SORT's ESORT
(:mod:`mailserv.imap.extensions.esort`); the capabilities are offered by
:mod:`mailserv.imap.extensions.esearch` and ``esort``.

MIN and MAX are the first and the last of the numbers as given (ascending for SEARCH, in
sort order for SORT); ALL is the numbers as a sequence set that keeps their order (runs of
consecutive numbers become ``a:b``).  An empty result has COUNT 0 and none of the others.
Extensions add options (``Extension.result_options``: SEARCHRES's SAVE, CONTEXT=SEARCH's
UPDATE); the commands tell them what was found (``found``) or that the command failed
(``returning``).  RFC 9394's ``PARTIAL <range>`` (offered by
:mod:`mailserv.imap.extensions.partial`) is read and answered here: a page of the result,
by position (1 is the first result, -1 the last), ``NIL`` when the page is empty; one
PARTIAL or one ALL per command, never both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailserv.imap.arguments import text_atom
from mailserv.imap.counting import CountingText
from mailserv.imap.replies import Bad, Reply
from mailserv.slicing import TimeSlices
from mailserv.syntax.encode import string
from mailserv.syntax.errors import ParseError
from mailserv.syntax.tokens import Atom, Command, ParenList, Token

if TYPE_CHECKING:
    from mailserv.imap.registry import ResultOption
    from mailserv.imap.session import Session
    from mailserv.search import SearchProgram

OPTIONS = ("MIN", "MAX", "COUNT", "ALL")
"""The result options, in the order the response lists them."""
STEP = 4096
"""Numbers made into the sequence set between two chances for the reactor."""
_SPACED = b"%d" + b" %d" * (STEP - 1)
"""The format of a whole step of :func:`number_list`."""
PARTIAL = "PARTIAL"
"""RFC 9394's result option: its name, offered when an extension registers it."""
_ONCE = frozenset({"ALL", PARTIAL})
_CONTEXT = frozenset({"UPDATE", "CONTEXT"})
"""RFC 5267's options: the ESEARCH line is written even when it carries no data."""
"""Options a command may give once, and only one of (RFC 9394 3.1)."""
_NZ_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class PartialRange:
    """``PARTIAL low:high`` (RFC 9394): results ``low`` to ``high`` counted from 1, or
    from the last result backwards when ``from_end`` (``-1:-100``); ``text`` as sent."""

    low: int
    high: int
    from_end: bool
    text: str

    def window(self, total: int) -> slice:
        """The positions it names among ``total`` results (may be empty)."""
        if self.from_end:
            return slice(max(total - self.high, 0), max(total - self.low + 1, 0))
        return slice(min(self.low - 1, total), min(self.high, total))

    def page(self, numbers: Sequence[int]) -> Sequence[int]:
        return numbers[self.window(len(numbers))]


def parse_partial(token: Token | None, what: str = "PARTIAL") -> PartialRange:
    """``n:m`` or ``-n:-m`` (nz-numbers, either order; no ``*``); Bad otherwise."""
    text = token.value if isinstance(token, Atom) else ""
    low, sep, high = text.partition(":")
    negative = low.startswith("-")
    if negative and high.startswith("-"):
        low, high = low[1:], high[1:]
    ends = [_nz_number(low), _nz_number(high)] if sep else []
    if None in ends or not ends:
        raise Bad(f"{what} needs a range n:m or -n:-m of non-zero numbers")
    first, last = sorted(n for n in ends if n is not None)
    return PartialRange(first, last, negative, text)


def _nz_number(text: str) -> int | None:
    if not text.isdigit() or not text.isascii() or text.startswith("0"):
        return None
    value = int(text)
    return value if value <= _NZ_MAX else None


class ReturnOptions(frozenset[str]):
    """The RETURN options by name; ``partial``: PARTIAL's range when it was given."""

    partial: PartialRange | None = None

    @classmethod
    def of(cls, names: Iterable[str], partial: PartialRange | None = None) -> ReturnOptions:
        options = cls(names)
        options.partial = partial
        return options


@dataclass(frozen=True, slots=True)
class Found:
    """What a SEARCH or SORT found, as its RETURN options (``ResultOption.found``) see it."""

    command: Command
    options: ReturnOptions
    numbers: Sequence[int]
    """As the command reports them (UIDs for UID SEARCH/SORT), in result order."""
    program: SearchProgram
    """The search as parsed (sequence sets, ``$`` and \\Recent unbound)."""

    @property
    def uid(self) -> bool:
        return self.command.uid


_PREFIX_OPTIONS = frozenset({PARTIAL, "MIN", "SAVE", "CONTEXT"})
"""Options answered from the first results alone (SAVE keeps PARTIAL's page)."""


def first_needed(options: ReturnOptions | None) -> int | None:
    """How many of the first results (ascending) answer ``options``: PARTIAL ``low:high``
    counted from the start, with at most MIN, SAVE and CONTEXT beside it; None when the
    answer needs the whole result."""
    if options is None or options.partial is None or options.partial.from_end:
        return None
    return options.partial.high if options <= _PREFIX_OPTIONS else None


def split_return(
    args: Sequence[Token], command: str, extra: AbstractSet[str] = frozenset()
) -> tuple[ReturnOptions | None, Sequence[Token]]:
    """``RETURN (...)`` at the head of ``args``: its options (None when absent) and the rest;
    ``extra``: the options extensions add (``Registry.result_options``)."""
    if not args or not isinstance(args[0], Atom) or args[0].value.upper() != "RETURN":
        return None, args
    if len(args) < 2:
        raise Bad("RETURN needs a parenthesised list of result options")
    return parse_return(args[1], command, extra), args[2:]


def parse_return(
    token: Token, command: str, extra: AbstractSet[str] = frozenset()
) -> ReturnOptions:
    """The options of ``RETURN (...)``; ``()`` means ALL (RFC 4731 3.1).  With PARTIAL
    offered, one PARTIAL or one ALL at most (RFC 9394 3.1)."""
    if not isinstance(token, ParenList):
        raise Bad("RETURN needs a parenthesised list of result options")
    chosen: set[str] = set()
    partial = None
    items = iter(token.items)
    for item in items:
        word = text_atom(item).upper()
        if word not in OPTIONS and word not in extra:
            raise Bad(f"Unknown {command} result option {word[:40]}")
        if PARTIAL in extra and word in _ONCE and chosen & _ONCE:
            raise Bad("RETURN may hold one PARTIAL or one ALL, not both nor twice")
        if word == PARTIAL:
            partial = parse_partial(next(items, None))
        chosen.add(word)
    return ReturnOptions.of(chosen or {"ALL"}, partial)


Run = Callable[[ReturnOptions | None, Sequence[Token]], Awaitable[Reply]]
"""A SEARCH or SORT given its RETURN options (None: no RETURN) and its other arguments."""


async def returning(session: Session, command: Command, run: Run) -> Reply:
    """Read the command's ``RETURN (...)`` and run it: an extension's option is told
    when the command then ends in NO (not BAD: RFC 5182 2.1)."""
    known = session.services.registry.result_options
    options, args = split_return(command.args, command.name, known.keys())
    for option in _extension_options(session, options):
        if option.check is not None:
            option.check(session, command)
    try:
        return await run(options, args)
    except (Bad, ParseError):
        raise
    except Exception:
        for option in _extension_options(session, options):
            option.failed(session)
        raise


async def found(
    session: Session,
    command: Command,
    options: ReturnOptions | None,
    numbers: Sequence[int],
    program: SearchProgram,
) -> None:
    """The matches (as the command reports them, in result order) for the extensions'
    options among ``options``."""
    if not options:
        return
    result = Found(command, options, numbers, program)
    for option in _extension_options(session, options):
        await option.found(session, result)


def _extension_options(session: Session, options: ReturnOptions | None) -> list[ResultOption]:
    """The extensions' options among ``options``, in the order the extensions are declared
    (CONTEXT=SEARCH's UPDATE binds ``$`` before SEARCHRES's SAVE changes it)."""
    if not options:
        return []
    known = session.services.registry.result_options
    return [option for name, option in known.items() if name in options]


async def response(
    slices: TimeSlices,
    tag: str,
    uid: bool,
    numbers: Sequence[int],
    options: ReturnOptions,
    modseq: int | None = None,
    ascending: bool = False,
) -> bytes:
    """The ``* ESEARCH`` line; ``modseq``: RFC 7162's highest mod-sequence of the result;
    ``ascending``: the numbers are (SEARCH's), which makes ALL quicker.  Only PARTIAL's page
    is made into a set, whatever the size of the result.  Empty when ``options`` asks for
    no data (RFC 5182 2.4: ``RETURN (SAVE)`` alone), unless it opens a search context
    (RFC 5267 ``UPDATE``/``CONTEXT``: the line, if bare, starts it)."""
    if options.isdisjoint(OPTIONS) and options.partial is None and options.isdisjoint(_CONTEXT):
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
    if options.partial is not None:
        page = options.partial.page(numbers)
        found = await ordered_set(slices, page, ascending) if page else b"NIL"
        out.append(b"PARTIAL (%s %s)" % (options.partial.text.encode(), found))
    if modseq is not None and numbers:
        out.append(b"MODSEQ %d" % modseq)
    return b" ".join(out) + b"\r\n"


async def number_list(
    slices: TimeSlices, numbers: Sequence[int], counting: CountingText | None = None
) -> bytes:
    """``numbers`` as ``n n n...`` (SEARCH's, SORT's answer), made a piece at a time.

    ``counting``: ``numbers`` are ascending, each once (SEARCH's); a piece that is a run of
    consecutive numbers is cut from that text instead."""
    if counting is not None and numbers and numbers[-1] - numbers[0] == len(numbers) - 1:
        whole = await counting.run(slices, numbers[0], numbers[-1])  # every message, often
        if whole is not None:
            return whole
    parts = []
    for start in range(0, len(numbers), STEP):
        part = tuple(numbers[start : start + STEP])
        if counting is not None and part[-1] - part[0] == len(part) - 1:
            run = await counting.run(slices, part[0], part[-1])
            if run is not None:
                parts.append(run)
                continue
        # One bytes formatting of the piece: a loop in C, the quickest way to many decimal
        # numbers (3x a list's repr, then replacing its commas).
        spaced = _SPACED if len(part) == STEP else b"%d" + b" %d" * (len(part) - 1)
        parts.append(spaced % part)
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
