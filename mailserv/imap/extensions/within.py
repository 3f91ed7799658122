"""WITHIN (RFC 5032): the SEARCH keys ``OLDER n`` and ``YOUNGER n``.

``n`` seconds (a non-zero number) before the server's time at the SEARCH: YOUNGER finds
the messages whose internal date is that moment or later, OLDER the others.  Both become
the key tree's ``InternalSince`` (OLDER under ``Not``), which every backend answers (the
engine's evaluator, the Maildir index, SQL, the proxy's mirror).  The moment is taken in
whole seconds, as internal dates are kept.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailserv.imap.registry import Capability, Extension, SearchCriterion
from mailserv.imap.search.parse import KeyReader
from mailserv.search import InternalSince, Not, SearchKey


def read_interval(reader: KeyReader, name: str, depth: int) -> SearchKey:
    seconds = reader.number(f"{name} needs a number of seconds (1 or more)", nonzero=True)
    now = datetime.now(UTC).replace(microsecond=0)
    since = InternalSince(now - timedelta(seconds=seconds))
    return since if name == "YOUNGER" else Not(since)


EXTENSION = Extension(
    "WITHIN",
    capabilities=(Capability(b"WITHIN"),),
    search_keys=(
        SearchCriterion("OLDER", read_interval),
        SearchCriterion("YOUNGER", read_interval),
    ),
)
