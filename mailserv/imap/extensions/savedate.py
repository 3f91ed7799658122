"""SAVEDATE (RFC 8514): when a message was saved in its mailbox (APPEND, COPY, MOVE or
delivery), unlike its internal date, which COPY and MOVE keep.

FETCH ``SAVEDATE`` answers the store's ``MessageMeta.savedate`` (NIL where the store keeps
none: the proxy, whose upstream's save dates are not mirrored; a maildir file whose name
does not start with its delivery time).  SEARCH ``SAVEDBEFORE``, ``SAVEDON``, ``SAVEDSINCE``
compare its calendar date (the internal date's where there is none, as RFC 8514 asks) and
``SAVEDATESUPPORTED`` finds the messages that have one.  They become the key tree's
``SavedDateCompare``, which the engine evaluates (backends decline it).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from mailserv.imap.fetchatt import FetchAttribute, Renderer
from mailserv.imap.registry import Capability, Extension, SearchCriterion
from mailserv.imap.search.parse import KeyReader
from mailserv.interfaces import MessageMeta
from mailserv.search import DateOp, SavedDateCompare, SearchKey
from mailserv.syntax import dates
from mailserv.syntax.errors import ParseError

if TYPE_CHECKING:
    from mailserv.imap.view import SelectedView

_OPS = {"SAVEDBEFORE": DateOp.BEFORE, "SAVEDON": DateOp.ON, "SAVEDSINCE": DateOp.SINCE}


def _read_date_key(reader: KeyReader, name: str, depth: int) -> SearchKey:
    return SavedDateCompare(_OPS[name], reader.read_date(name))


def _read_supported(reader: KeyReader, name: str, depth: int) -> SearchKey:
    return SavedDateCompare(None)


def _parse(section: str | None, partial: tuple[int, int] | None) -> Hashable:
    if section is not None or partial is not None:
        raise ParseError(None, "SAVEDATE takes no section")
    return None


def _render(view: SelectedView, argument: Hashable) -> Renderer:
    def render(meta: MessageMeta, raw: bytes) -> bytes:
        if meta.savedate is None:
            return b"SAVEDATE NIL"
        return b"SAVEDATE " + dates.format_date_time(meta.savedate)

    return render


EXTENSION = Extension(
    "SAVEDATE",
    capabilities=(Capability(b"SAVEDATE"),),
    fetch_items=(FetchAttribute("SAVEDATE", _parse, _render, reads_info=False),),
    search_keys=(
        *(SearchCriterion(name, _read_date_key) for name in _OPS),
        SearchCriterion("SAVEDATESUPPORTED", _read_supported),
    ),
)
