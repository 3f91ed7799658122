"""What an extension declares, and the registry the engine builds from the declarations.

An extension is one module of :mod:`mailserv.imap.extensions` holding an ``EXTENSION``:
its commands, STATUS items, ENABLE names, response codes and capabilities, each
capability with the condition under which it is offered.  The factory builds one
``Registry`` from the tuple of extensions (``extensions.BUILT_IN`` unless told otherwise);
the dispatcher's command table, ENABLE and CAPABILITY read it.  Nothing here is mutable:
two servers in one process may run different sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from mailserv.imap.commands import CommandSpec
from mailserv.imap.session import Session
from mailserv.interfaces import MailboxStatus

_T = TypeVar("_T")

Condition = Callable[[Session], bool]
"""Whether a capability is offered to a session now (state, TLS, settings, backend)."""


def always(session: Session) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Capability:
    """One CAPABILITY word, or a family of them (``AUTH=``, ``APPENDLIMIT=``)."""

    name: bytes
    when: Condition = always
    values: Callable[[Session], Iterable[bytes]] | None = None
    """Words ``name + value`` are offered, one per value (none: ``name`` alone)."""

    def words(self, session: Session) -> list[bytes]:
        if not self.when(session):
            return []
        if self.values is None:
            return [self.name]
        return [self.name + value for value in self.values(session)]


@dataclass(frozen=True, slots=True)
class StatusItem:
    """A STATUS data item and how it is read from the mailbox's counts."""

    name: str
    value: Callable[[MailboxStatus], int]


@dataclass(frozen=True, slots=True)
class Extension:
    """An extension's declaration; every part is optional."""

    name: str
    capabilities: tuple[Capability, ...] = ()
    commands: tuple[CommandSpec, ...] = ()
    status_items: tuple[StatusItem, ...] = ()
    enable: frozenset[str] = frozenset()
    """Names the client may ENABLE (RFC 5161)."""
    response_codes: frozenset[str] = frozenset()
    """Response codes its replies carry (documentation; none is refused)."""


@dataclass(frozen=True, slots=True)
class Registry:
    """The extensions of one server, merged; built once by the factory."""

    extensions: tuple[Extension, ...]
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)
    status_items: Mapping[str, StatusItem] = field(default_factory=dict)
    enableable: frozenset[str] = frozenset()

    @classmethod
    def build(cls, extensions: Iterable[Extension]) -> Registry:
        """Merge the declarations; a name declared twice is an error (ValueError)."""
        chosen = tuple(extensions)
        return cls(
            chosen,
            commands=_merge(((s.name, s) for e in chosen for s in e.commands), "command"),
            status_items=_merge(
                ((i.name, i) for e in chosen for i in e.status_items), "STATUS item"
            ),
            enableable=frozenset().union(*(e.enable for e in chosen)),
        )

    def capabilities(self, session: Session) -> list[bytes]:
        """The CAPABILITY words for ``session`` now, in declaration order."""
        return [word for e in self.extensions for c in e.capabilities for word in c.words(session)]


def _merge(entries: Iterable[tuple[str, _T]], what: str) -> dict[str, _T]:
    table: dict[str, _T] = {}
    for name, entry in entries:
        if name in table:
            raise ValueError(f"{what} {name} is declared twice")
        table[name] = entry
    return table
