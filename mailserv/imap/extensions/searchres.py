"""SEARCHRES (RFC 5182): ``SEARCH RETURN (SAVE ...)`` keeps its result, ``$`` names it.

The result lives in the selected view (``SelectedView.saved``, UIDs ascending): a new view
starts empty, so SELECT, EXAMINE, CLOSE and UNSELECT reset it, and the view drops the
messages it reports expunged.  ``$`` stands alone wherever a sequence set goes (FETCH,
STORE, COPY, MOVE, UID EXPUNGE and their UID forms; the messages' current numbers in the
non-UID ones) and as a SEARCH key (also ``UID $``); commands run one at a time in order,
so a pipelined command using ``$`` sees the result of the SEARCH before it (2.3).

What is saved (2.4): with MIN or MAX alone (or both) only those messages, else every match;
with RFC 9394's PARTIAL (and no COUNT) the page, with the MIN and MAX messages if asked;
``RETURN (SAVE)`` alone answers no ESEARCH line.  SORT's ``RETURN (SAVE ...)`` (RFC 5267
3.1, ESORT) saves the same way, MIN and MAX being the first and last in sort order.  A
command with SAVE that ends in NO empties the result; one that ends in BAD leaves it (2.1).
"""

from __future__ import annotations

from mailserv.imap.commands.messages import view_of
from mailserv.imap.esearch import Found
from mailserv.imap.registry import Capability, Extension, ResultOption, SearchCriterion
from mailserv.imap.search.parse import KeyReader
from mailserv.imap.session import Session
from mailserv.search import InSet, SearchKey
from mailserv.slicing import TimeSlices
from mailserv.syntax.sequences import SAVED, SequenceSet

_STEP = 4096
"""Sequence numbers turned into UIDs between two chances for the reactor."""
_ENDS = frozenset({"MIN", "MAX"})


async def save(session: Session, found: Found) -> None:
    """Keep what the command found (``numbers`` as it reports them, in result order)."""
    view = view_of(session)
    numbers, options, uid = found.numbers, found.options, found.uid
    partial = options.partial
    if numbers and (options & _ENDS or partial) and options.isdisjoint({"ALL", "COUNT"}):
        ends = {numbers[0]} if "MIN" in options else set()
        if "MAX" in options:
            ends.add(numbers[-1])
        numbers = sorted(ends.union(partial.page(numbers)) if partial else ends)
    slices = TimeSlices(session.services.turns)
    uids = list(numbers)
    if not uid:
        for start in range(0, len(uids), _STEP):
            uids[start : start + _STEP] = [view.uids[n - 1] for n in uids[start : start + _STEP]]
            await slices.pause()
    uids.sort()  # SORT's order; SEARCH's is ascending already (then linear)
    view.saved = uids


def forget(session: Session) -> None:
    """The command failed (NO): ``$`` is empty from now."""
    view_of(session).saved = []


def read_saved(reader: KeyReader, name: str, depth: int) -> SearchKey:
    """The ``$`` SEARCH key: the saved messages (``bind`` gives their UIDs)."""
    return InSet(SequenceSet((), saved=True))


EXTENSION = Extension(
    "SEARCHRES",
    capabilities=(Capability(b"SEARCHRES"),),
    search_keys=(SearchCriterion(SAVED, read_saved),),
    result_options=(ResultOption("SAVE", save, forget),),
    response_codes=frozenset({"NOTSAVED"}),
)
