"""PARTIAL (RFC 9394): paged SEARCH, SORT and UID FETCH.

``SEARCH RETURN (PARTIAL 1:500) ...`` (also UID SEARCH, SORT and UID SORT) answers
``PARTIAL (1:500 <set>)`` in its ESEARCH line: the results at those positions (1 the first
in mailbox or sort order, ``-1`` the last), ``NIL`` when none is there; the range is read
and the page cut in :mod:`mailserv.imap.esearch`.  MIN, MAX and COUNT still describe the
whole result; SAVE keeps the page (:mod:`mailserv.imap.extensions.searchres`).

``UID FETCH set items (PARTIAL -1:-3)`` answers only the messages at those positions among
the ones the set names (and the other modifiers let through, CHANGEDSINCE's): without
another modifier the page is cut from the UID list before anything is read, so a page costs
what it returns; with one, messages are read from the page's end of the set in batches
until the page is full.  Plain FETCH refuses it (the modifier is UID FETCH's).

Everything is the engine's own work on what the backend answers, so PARTIAL is offered with
every backend, the proxy included.
"""

from __future__ import annotations

from collections.abc import Callable

from mailserv.imap.esearch import PARTIAL, Found, PartialRange, parse_partial
from mailserv.imap.registry import Capability, Extension, FetchModifier, FetchRequest, ResultOption
from mailserv.imap.replies import Bad
from mailserv.imap.session import Session
from mailserv.interfaces import MessageMeta
from mailserv.slicing import TimeSlices
from mailserv.syntax.tokens import Token

_BATCH = 1000
"""Messages read at once while a page is filled through other modifiers' tests."""


def _anything(meta: MessageMeta) -> bool:
    return True


def _fetch_test(value: Token | None) -> Callable[[MessageMeta], bool]:
    """The range is checked here; the page is cut in ``_cut`` (it needs the whole set)."""
    parse_partial(value, "FETCH modifier PARTIAL")
    return _anything


async def _cut(request: FetchRequest, value: Token | None) -> None:
    if not request.uid:
        raise Bad("PARTIAL is a UID FETCH modifier")
    window = parse_partial(value, "FETCH modifier PARTIAL")
    others = [test for test in request.tests if test is not _anything]
    if not others:
        request.uids = list(window.page(request.uids))
        return
    request.uids = await _passing_page(request, window, others)


async def _passing_page(
    request: FetchRequest, window: PartialRange, tests: list[Callable[[MessageMeta], bool]]
) -> list[int]:
    """The page among the messages of the set that pass ``tests``, read from the page's
    end of the set until it is full (or the set is exhausted)."""
    uids = request.uids if not window.from_end else request.uids[::-1]
    slices = TimeSlices(request.session.services.turns)
    passing: list[int] = []
    for start in range(0, len(uids), _BATCH):
        part = uids[start : start + _BATCH]
        metas = await request.view.mailbox.fetch(sorted(part))
        kept = {meta.uid for meta in metas if all(test(meta) for test in tests)}
        passing += [uid for uid in part if uid in kept]
        if len(passing) >= window.high:
            break
        await slices.pause()
    # counted from the page's end: positions low..high of ``passing`` in its own order
    return sorted(passing[window.low - 1 : window.high])


async def _nothing_to_keep(session: Session, found: Found) -> None:
    """The page is cut by the ESEARCH answer itself."""


def _nothing_to_forget(session: Session) -> None:
    pass


EXTENSION = Extension(
    "PARTIAL",
    capabilities=(Capability(b"PARTIAL"),),
    result_options=(ResultOption(PARTIAL, _nothing_to_keep, _nothing_to_forget),),
    fetch_modifiers=(FetchModifier(PARTIAL, _fetch_test, prepare=_cut),),
)
