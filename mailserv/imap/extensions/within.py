"""WITHIN (RFC 5032): the SEARCH keys ``OLDER n`` and ``YOUNGER n``.

``n`` seconds (a non-zero number) before the server's time at the SEARCH: YOUNGER finds
the messages whose internal date is that moment or later, OLDER the others.  Both become
the key tree's ``InternalSince`` (OLDER under ``Not``), which every backend answers (the
engine's evaluator, the Maildir index, SQL, the proxy's mirror).  The moment is taken in
whole seconds, as internal dates are kept.

Such a key changes its answer with time alone: a CONTEXT=SEARCH context that holds one
(:func:`relative`) is searched again now and then with its moments moved to the time of that
search (:func:`moved`; :mod:`mailserv.imap.extensions.contextsearch`).  Only these keys
make an ``InternalSince``, so every one in a tree is such a moment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailserv.imap.registry import Capability, Extension, SearchCriterion
from mailserv.imap.search.parse import KeyReader
from mailserv.search import And, InternalSince, Not, Or, SearchKey


def read_interval(reader: KeyReader, name: str, depth: int) -> SearchKey:
    seconds = reader.number(f"{name} needs a number of seconds (1 or more)", nonzero=True)
    since = InternalSince(now() - timedelta(seconds=seconds))
    return since if name == "YOUNGER" else Not(since)


def now() -> datetime:
    """The moment OLDER and YOUNGER count back from: now, in whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


def relative(key: SearchKey) -> bool:
    """Whether ``key`` holds an OLDER or YOUNGER (its answer changes with time)."""
    if isinstance(key, InternalSince):
        return True
    if isinstance(key, Not):
        return relative(key.key)
    if isinstance(key, Or):
        return relative(key.left) or relative(key.right)
    if isinstance(key, And):
        return any(relative(k) for k in key.keys)
    return False


def moved(key: SearchKey, by: timedelta) -> SearchKey:
    """``key`` with every OLDER/YOUNGER moment ``by`` later."""
    if isinstance(key, InternalSince):
        return InternalSince(key.moment + by)
    if isinstance(key, Not):
        return Not(moved(key.key, by))
    if isinstance(key, Or):
        return Or(moved(key.left, by), moved(key.right, by))
    if isinstance(key, And):
        return And(tuple(moved(k, by) for k in key.keys))
    return key


EXTENSION = Extension(
    "WITHIN",
    capabilities=(Capability(b"WITHIN"),),
    search_keys=(
        SearchCriterion("OLDER", read_interval),
        SearchCriterion("YOUNGER", read_interval),
    ),
)
