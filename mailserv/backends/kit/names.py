"""RFC 3501's rules for a hierarchy of mailbox names, over a set of names.

A backend reads its names into a :class:`Hierarchy` (name -> selectable), asks it what a
CREATE, DELETE or RENAME must do, and carries the answer out in its own store.  The rules:

- a name has no empty level (``a//b``, ``/a``); a trailing delimiter on CREATE only
  announces children (6.3.3); INBOX is always there and selectable;
- CREATE makes the missing parents too, as mailboxes; over a ``\\Noselect`` name it makes
  a fresh mailbox (6.3.3);
- DELETE of INBOX is refused; a name with inferiors stays as ``\\Noselect`` (its messages
  go), and a ``\\Noselect`` name with inferiors cannot be deleted (6.3.4);
- RENAME moves the inferiors along and makes the target's missing parents; RENAME INBOX
  moves its messages to a new mailbox and leaves INBOX (and its inferiors) in place (6.3.5).

A parent that is only implied by a child (``a/b`` given without ``a``) is listed as
``\\Noselect`` and counts as existing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from mailserv.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MailboxNotSelectable,
)
from mailserv.interfaces import DELIMITER, INBOX, NOSELECT, MailboxInfo

_NOSELECT = frozenset({NOSELECT})


def check_name(name: str) -> str:
    """``name``, or InvalidMailboxName when it has an empty level (it could not be listed)."""
    if "" in name.split(DELIMITER):
        raise InvalidMailboxName(f"Invalid mailbox name {name!r}")
    return name


def ancestors(name: str) -> list[str]:
    """``a``, ``a/b`` for ``a/b/c``: the parents, outermost first."""
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:depth]) for depth in range(1, len(levels))]


def is_inside(name: str, parent: str) -> bool:
    return name.startswith(parent + DELIMITER)


def inferiors(names: Iterable[str], name: str) -> list[str]:
    """The names below ``name``, sorted."""
    prefix = name + DELIMITER
    return sorted(other for other in names if other.startswith(prefix))


@dataclass(frozen=True, slots=True)
class Creation:
    name: str
    """The name to make a mailbox (trailing delimiter removed)."""
    parents: list[str]
    """Missing parents to make mailboxes first, outermost first."""
    replaces: bool
    """``name`` is a ``\\Noselect`` name the new mailbox takes over."""


@dataclass(frozen=True, slots=True)
class Deletion:
    name: str
    selectable: bool
    """The name was a mailbox: its messages go."""
    keep: bool
    """It has inferiors: the name stays, as ``\\Noselect``."""


@dataclass(frozen=True, slots=True)
class Renaming:
    moves: list[tuple[str, str]]
    """(old, new) for the name and each inferior that has an entry of its own, outermost
    first; empty for INBOX."""
    parents: list[str]
    """Missing parents of the target to make mailboxes, outermost first."""
    inbox: Creation | None = None
    """RENAME INBOX: create this, then move every message of INBOX into it."""


class Hierarchy:
    """A snapshot of one account's names; ``check`` is the backend's own name check (it
    should call :func:`check_name` too)."""

    def __init__(self, names: Mapping[str, bool], check: Callable[[str], str] = check_name) -> None:
        self.names = dict(names)
        self.names[INBOX] = True
        self.implied = {p for n in self.names for p in ancestors(n)} - self.names.keys()
        self.check = check

    def exists(self, name: str) -> bool:
        return name in self.names or name in self.implied

    def selectable(self, name: str) -> bool:
        return self.names.get(name, False)

    def has_inferiors(self, name: str) -> bool:
        prefix = name + DELIMITER
        return any(other.startswith(prefix) for other in self.names)

    def listing(self, attributes: Callable[[str], frozenset[str]]) -> list[MailboxInfo]:
        """Every name, sorted; ``attributes(name)`` of the selectable ones, ``\\Noselect``
        for the rest."""
        infos = [
            MailboxInfo(name, attributes(name) if selectable else _NOSELECT)
            for name, selectable in self.names.items()
        ]
        infos += [MailboxInfo(name, _NOSELECT) for name in self.implied]
        return sorted(infos, key=lambda info: info.name)

    def opening(self, name: str) -> None:
        """MailboxNotFound or MailboxNotSelectable unless ``name`` can be selected."""
        if not self.selectable(name):
            if self.exists(name):
                raise MailboxNotSelectable(name)
            raise MailboxNotFound(name)

    def create(self, name: str) -> Creation:
        name = self.check(name.removesuffix(DELIMITER))
        if name == INBOX or self.names.get(name):
            raise MailboxExists(name)
        return Creation(name, self._missing_parents(name), name in self.names)

    def delete(self, name: str) -> Deletion:
        if name == INBOX:
            raise InvalidMailboxName("INBOX cannot be deleted")
        self.check(name)
        if not self.exists(name):
            raise MailboxNotFound(name)
        selectable = self.selectable(name)
        keep = self.has_inferiors(name)
        if keep and not selectable:
            raise MailboxHasChildren(name)
        return Deletion(name, selectable, keep)

    def rename(self, old: str, new: str) -> Renaming:
        new = self.check(new)
        if old != INBOX:
            self.check(old)
        if not self.exists(old):
            raise MailboxNotFound(old)
        if new == INBOX or self.exists(new):
            raise MailboxExists(new)
        if old == INBOX:
            creation = Creation(new, self._missing_parents(new), False)
            return Renaming([], creation.parents, inbox=creation)
        if is_inside(new, old):
            raise InvalidMailboxName(f"{new} is inside {old}")
        moving = [name for name in (old, *inferiors(self.names, old)) if name in self.names]
        moves = [(name, new + name[len(old) :]) for name in moving]
        for _, target in moves:
            if self.exists(target):
                raise MailboxExists(target)
        return Renaming(moves, self._missing_parents(new))

    def _missing_parents(self, name: str) -> list[str]:
        return [p for p in ancestors(name) if p != INBOX and p not in self.names]
