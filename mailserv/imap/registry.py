"""What an extension declares, and the registry the engine builds from the declarations.

An extension is one module of :mod:`mailserv.imap.extensions` holding an ``EXTENSION``:
its commands, FETCH items and modifiers, SEARCH keys and RETURN options, SELECT/EXAMINE
parameters, STATUS items, ENABLE names, response codes and capabilities, each capability
with the condition under which it is offered.  The factory builds one
``Registry`` from the tuple of extensions (``extensions.BUILT_IN`` unless told otherwise);
the dispatcher's command table, the FETCH/SEARCH/SELECT/STATUS readers, ENABLE and
CAPABILITY read it.  Nothing here is mutable:
two servers in one process may run different sets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from mailserv.imap import esearch, fetchatt
from mailserv.imap.arguments import text_atom
from mailserv.imap.commands import CommandSpec
from mailserv.imap.fetchatt import FetchAttribute, FetchItem
from mailserv.imap.search import parse
from mailserv.imap.search.parse import KeyReader, SearchKeyReader
from mailserv.imap.session import Session
from mailserv.interfaces import IMailbox, MailboxStatus, MessageMeta
from mailserv.search import SearchKey
from mailserv.syntax.errors import ParseError
from mailserv.syntax.sequences import SequenceSet
from mailserv.syntax.tokens import Command, ParenList, Token

if TYPE_CHECKING:
    from mailserv.imap.view import SelectedView

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
    """A STATUS data item and how it is read from the mailbox's counts: a number, the
    bytes of another value (MAILBOXID's ``(id)``), or None to leave the item out (a store
    that has no such value)."""

    name: str
    value: Callable[[MailboxStatus], int | bytes | None] | None = None
    used: Callable[[Session], None] | None = None
    """Called when a STATUS asked for it (RFC 7162: HIGHESTMODSEQ turns CONDSTORE on)."""
    read: Callable[[Session, IMailbox], Awaitable[int]] | None = None
    """For an item the counts do not hold (DELETED, RFC 9208): read from the mailbox, in
    place of ``value``."""

    async def of(
        self, session: Session, box: IMailbox, counts: MailboxStatus
    ) -> int | bytes | None:
        if self.read is not None:
            return await self.read(session, box)
        assert self.value is not None, self.name
        return self.value(counts)


@dataclass(frozen=True, slots=True)
class SearchCriterion:
    """A SEARCH key: ``read(reader, name, depth)`` takes its arguments from the reader
    (``reader.next_token``) and returns the key tree's node."""

    name: str
    read: Callable[[KeyReader, str, int], SearchKey]


@dataclass(frozen=True, slots=True)
class ResultOption:
    """A SEARCH/SORT ``RETURN`` option beyond RFC 4731's (RFC 4466 ``search-return-opt``).

    ``found(session, result)`` runs once the command has its matches (as it reports them:
    UIDs or sequence numbers, in result order) and before its answer; ``failed(session)``
    when the command ends in NO (a BAD changes nothing); ``check(session, command)``, when
    given, before the command runs (raising Bad refuses it).
    """

    name: str
    found: Callable[[Session, esearch.Found], Awaitable[None]]
    failed: Callable[[Session], None]
    check: Callable[[Session, Command], None] | None = None


@dataclass(slots=True)
class FetchRequest:
    """One FETCH command, as its modifiers' ``prepare`` may adjust it before it runs."""

    session: Session
    view: SelectedView
    sequence: SequenceSet
    """The set as sent (UIDs for UID FETCH)."""
    uid: bool
    uids: list[int]
    """The messages of the view it names, ascending."""
    items: list[FetchItem]
    tests: list[Callable[[MessageMeta], bool]]
    modifiers: dict[str, Token | None]
    """Every modifier of the command by name, with its value."""


@dataclass(frozen=True, slots=True)
class FetchModifier:
    """A FETCH modifier (RFC 4466 ``(NAME [value] ...)`` after the items): its value gives
    the test a message must pass to be answered; ``prepare``, when given, may add items
    or write responses that go before the FETCH responses (raising Bad refuses)."""

    name: str
    parse: Callable[[Token | None], Callable[[MessageMeta], bool]]
    takes_value: bool = True
    prepare: Callable[[FetchRequest, Token | None], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class StoreModifier:
    """A STORE modifier (RFC 4466): ``unchangedsince`` reads its value into the condition
    the backend stores under (``IMailbox.store(unchangedsince=...)``, RFC 7162)."""

    name: str
    unchangedsince: Callable[[Session, Token | None], int]
    takes_value: bool = True


@dataclass(frozen=True, slots=True)
class SelectParameter:
    """A SELECT/EXAMINE parameter (RFC 4466): applied to the session before the open
    (raising Bad refuses the command); ``opened``, when given, runs once the mailbox is
    selected and its untagged responses written, before the tagged OK."""

    name: str
    apply: Callable[[Session, Token | None], None]
    takes_value: bool = False
    opened: (
        Callable[[Session, SelectedView, MailboxStatus, Token | None], Awaitable[None]] | None
    ) = None


@dataclass(frozen=True, slots=True)
class Extension:
    """An extension's declaration; every part is optional."""

    name: str
    capabilities: tuple[Capability, ...] = ()
    commands: tuple[CommandSpec, ...] = ()
    fetch_items: tuple[FetchAttribute, ...] = ()
    fetch_modifiers: tuple[FetchModifier, ...] = ()
    store_modifiers: tuple[StoreModifier, ...] = ()
    search_keys: tuple[SearchCriterion, ...] = ()
    select_parameters: tuple[SelectParameter, ...] = ()
    status_items: tuple[StatusItem, ...] = ()
    result_options: tuple[ResultOption, ...] = ()
    enable: frozenset[str] = frozenset()
    """Names the client may ENABLE (RFC 5161)."""
    response_codes: frozenset[str] = frozenset()
    """Response codes its replies carry (documentation; none is refused)."""


@dataclass(frozen=True, slots=True)
class Registry:
    """The extensions of one server, merged; built once by the factory."""

    extensions: tuple[Extension, ...]
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)
    fetch_items: Mapping[str, FetchAttribute] = field(default_factory=dict)
    fetch_modifiers: Mapping[str, FetchModifier] = field(default_factory=dict)
    store_modifiers: Mapping[str, StoreModifier] = field(default_factory=dict)
    search_keys: Mapping[str, SearchKeyReader] = field(default_factory=dict)
    select_parameters: Mapping[str, SelectParameter] = field(default_factory=dict)
    status_items: Mapping[str, StatusItem] = field(default_factory=dict)
    result_options: Mapping[str, ResultOption] = field(default_factory=dict)
    enableable: frozenset[str] = frozenset()

    @classmethod
    def build(cls, extensions: Iterable[Extension]) -> Registry:
        """Merge the declarations; a name declared twice is an error (ValueError)."""
        chosen = tuple(extensions)
        return cls(
            chosen,
            commands=_merge(((s.name, s) for e in chosen for s in e.commands), "command"),
            fetch_items=_merge(
                ((f.name, f) for e in chosen for f in e.fetch_items),
                "FETCH item",
                fetchatt.RESERVED,
            ),
            fetch_modifiers=_merge(
                ((m.name, m) for e in chosen for m in e.fetch_modifiers), "FETCH modifier"
            ),
            store_modifiers=_merge(
                ((m.name, m) for e in chosen for m in e.store_modifiers), "STORE modifier"
            ),
            search_keys=_merge(
                ((k.name, k.read) for e in chosen for k in e.search_keys),
                "SEARCH key",
                parse.RESERVED,
            ),
            select_parameters=_merge(
                ((p.name, p) for e in chosen for p in e.select_parameters), "SELECT parameter"
            ),
            status_items=_merge(
                ((i.name, i) for e in chosen for i in e.status_items), "STATUS item"
            ),
            result_options=_merge(
                ((o.name, o) for e in chosen for o in e.result_options),
                "RETURN option",
                frozenset(esearch.OPTIONS),
            ),
            enableable=frozenset().union(*(e.enable for e in chosen)),
        )

    def capabilities(self, session: Session) -> list[bytes]:
        """The CAPABILITY words for ``session`` now, in declaration order."""
        return [word for e in self.extensions for c in e.capabilities for word in c.words(session)]


def _merge(
    entries: Iterable[tuple[str, _T]], what: str, reserved: AbstractSet[str] = frozenset()
) -> dict[str, _T]:
    table: dict[str, _T] = {}
    for name, entry in entries:
        if name in table or name in reserved:
            raise ValueError(f"{what} {name} is declared twice")
        if name != name.upper():
            raise ValueError(f"{what} {name} must be named in upper case")
        table[name] = entry
    return table


_P = TypeVar("_P", FetchModifier, StoreModifier, SelectParameter)


def parameters(token: Token, known: Mapping[str, _P], what: str) -> list[tuple[_P, Token | None]]:
    """``(NAME [value] NAME ...)`` read against the registered ``known`` names."""
    if not isinstance(token, ParenList) or not token.items:
        raise ParseError(None, f"Expected a list of {what}s")
    items = list(token.items)
    found: list[tuple[_P, Token | None]] = []
    while items:
        name = text_atom(items.pop(0)).upper()
        entry = known.get(name)
        if entry is None:
            raise ParseError(None, f"Unknown {what} {name[:40]}")
        if any(seen is entry for seen, _ in found):
            raise ParseError(None, f"{what} {name} given twice")
        if entry.takes_value and not items:
            raise ParseError(None, f"{what} {name} needs a value")
        found.append((entry, items.pop(0) if entry.takes_value else None))
    return found
