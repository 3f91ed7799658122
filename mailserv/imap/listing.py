"""LIST/LSUB pattern matching and the CHILDREN attributes (RFC 3501 6.3.8, RFC 3348), and
the extended LIST's selection and return options (RFC 5258, RFC 6154, RFC 5819)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailserv.interfaces import (
    DELIMITER,
    HAS_CHILDREN,
    HAS_NO_CHILDREN,
    INBOX,
    NONEXISTENT,
    NOSELECT,
    SPECIAL_USE,
    MailboxInfo,
)

SUBSCRIBED = "\\Subscribed"


def full_pattern(reference: str, pattern: str) -> str:
    """The reference joined to the pattern, the way clients expect a hierarchy prefix."""
    if not reference:
        return pattern
    if reference.endswith(DELIMITER) or pattern.startswith(DELIMITER):
        return reference + pattern
    return reference + DELIMITER + pattern


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``*`` matches anything, ``%`` anything but the delimiter; INBOX in any case."""
    if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in "/*%"):
        pattern = "INBOX" + pattern[5:]
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "%":
            parts.append("[^/]*")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def ancestors(name: str) -> Iterable[str]:
    parts = name.split(DELIMITER)
    for i in range(1, len(parts)):
        yield DELIMITER.join(parts[:i])


def lsub_entries(
    subscribed: Iterable[str], pattern: re.Pattern[str], wildcard_parents: bool
) -> list[tuple[str, frozenset[str]]]:
    """Subscribed names that match; with a trailing ``%``, unsubscribed parents as \\Noselect."""
    names = set(subscribed)
    result = [(name, frozenset[str]()) for name in sorted(names) if pattern.fullmatch(name)]
    if wildcard_parents:
        implied = {p for name in names for p in ancestors(name)} - names
        result += [(p, frozenset({NOSELECT})) for p in sorted(implied) if pattern.fullmatch(p)]
    return result


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A LIST command, basic (RFC 3501) or extended (RFC 5258): which names, and what of them.

    ``select`` holds selection options (SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE),
    ``returns`` return options (SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS); ``status_items``
    are LIST-STATUS's (RFC 5819) items.  Selecting SUBSCRIBED implies returning it."""

    reference: str
    patterns: tuple[str, ...]
    select: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListEntry:
    name: str
    attributes: frozenset[str]
    subscribed_child: bool = False
    """RECURSIVEMATCH: a subscribed name below this one (``CHILDINFO ("SUBSCRIBED")``)."""


def extended_entries(
    mailboxes: Sequence[MailboxInfo], subscribed: Iterable[str], request: ListRequest
) -> list[ListEntry]:
    """The LIST answer of ``request``: the names matching any pattern that pass the
    selection options, in order (INBOX first), attributes as the return options ask."""
    patterns = [compile_pattern(full_pattern(request.reference, p)) for p in request.patterns]
    known = {info.name: info.attributes for info in mailboxes}
    parents = {parent for name in known for parent in ancestors(name)}
    for parent in parents - known.keys():
        known[parent] = frozenset({NOSELECT})
    subscriptions = set(subscribed)
    select = request.select
    candidates = set(known)
    if "SUBSCRIBED" in select:
        candidates = set(subscriptions)
        if "RECURSIVEMATCH" in select:
            candidates |= {parent for name in subscriptions for parent in ancestors(name)}
    if "SPECIAL-USE" in select:
        candidates = {name for name in candidates if known.get(name, frozenset()) & SPECIAL_USE}
    show_subscribed = "SUBSCRIBED" in select or "SUBSCRIBED" in request.returns
    result = []
    for name in sorted(candidates, key=lambda n: (n != INBOX, n)):
        if not any(pattern.fullmatch(name) for pattern in patterns):
            continue
        attributes = known.get(name, frozenset({NONEXISTENT}))
        if name in known or name in parents:
            children = HAS_CHILDREN if name in parents else HAS_NO_CHILDREN
            attributes = attributes | {children}
        if show_subscribed and name in subscriptions:
            attributes = attributes | {SUBSCRIBED}
        child_info = "RECURSIVEMATCH" in select and any(
            is_inside(other, name) for other in subscriptions
        )
        if "SUBSCRIBED" in select and name not in subscriptions and not child_info:
            continue
        result.append(ListEntry(name, attributes, child_info))
    return result


def is_inside(name: str, parent: str) -> bool:
    return name.startswith(parent + DELIMITER)
