"""LIST/LSUB pattern matching and the CHILDREN attributes (RFC 3501 6.3.8, RFC 3348)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from mailserv.interfaces import DELIMITER, INBOX, NOSELECT, MailboxInfo


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


def list_entries(
    mailboxes: Sequence[MailboxInfo], pattern: re.Pattern[str]
) -> list[tuple[str, frozenset[str]]]:
    """Matching names with their attributes, \\HasChildren/\\HasNoChildren added.

    A parent that is only implied by its children's names shows as \\Noselect.
    """
    known = {info.name: info.attributes for info in mailboxes}
    parents = {parent for name in known for parent in ancestors(name)}
    for parent in parents - known.keys():
        known[parent] = frozenset({NOSELECT})
    result = []
    for name in sorted(known, key=lambda n: (n != INBOX, n)):
        if pattern.fullmatch(name):
            children = "\\HasChildren" if name in parents else "\\HasNoChildren"
            result.append((name, known[name] | {children}))
    return result


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
