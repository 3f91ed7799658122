"""The backend contract: everything the IMAP engine asks of a mail store.

Every method may be a coroutine function (``async def``) or return a Deferred; the engine
awaits the result.  Messages are addressed by UID only: sequence numbers belong to a
session's view and never reach a backend.  Mailbox names are text (already decoded from
modified UTF-7), hierarchy delimiter ``/``, ``INBOX`` spelled in upper case.

Mutating calls take ``origin``: an opaque token for the session that asked.  The backend
hands it back on the listener events that call caused, so that session is not told twice.

Failures are the exceptions of ``mailserv.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface

from mailserv.message.info import MessageInfo


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    """A name as LIST shows it; attributes such as ``\\Noselect`` or special-use ``\\Sent``.

    The engine adds ``\\HasChildren``/``\\HasNoChildren`` itself from the names.
    """

    name: str
    attributes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    uidvalidity: int
    uidnext: int
    messages: int
    unseen: int
    recent: int
    highestmodseq: int
    size: int


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What FETCH and SEARCH read about one message; ``info`` was computed at delivery."""

    uid: int
    flags: frozenset[str]
    internaldate: datetime  # timezone-aware
    size: int
    modseq: int
    info: MessageInfo


@dataclass(frozen=True, slots=True)
class FlagChange:
    uid: int
    flags: frozenset[str]
    modseq: int


@dataclass(frozen=True, slots=True)
class StoreResult:
    """``changed``: messages whose flags changed; ``failed``: UIDs refused by UNCHANGEDSINCE."""

    changed: Sequence[FlagChange]
    failed: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class AppendResult:
    uidvalidity: int
    uid: int


@dataclass(frozen=True, slots=True)
class CopyResult:
    """Destination UIDVALIDITY and (source UID, destination UID) pairs, for COPYUID."""

    uidvalidity: int
    pairs: Sequence[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed after a modseq: for CONDSTORE/QRESYNC and fast resync."""

    changed: Sequence[MessageMeta]
    vanished: Sequence[int]
    highestmodseq: int


class IBackendFactory(IPlugin):
    """A backend plugin, found by twisted.plugin in ``mailserv.plugins``."""

    name = Attribute("The --backend name, e.g. 'memory'.")
    description = Attribute("One line for --help.")
    options = Attribute("Mapping of accepted --backend-option keys to their help text.")

    def build(options: dict[str, str], data_dir: str) -> IBackend:  # type: ignore[empty-body]
        """Validate ``options`` (raise BackendOptionError naming the bad key) and build."""


class IBackend(Interface):
    """One configured store, started and stopped with the service."""

    def start() -> object:
        """Open connections, files, watchers."""

    def stop() -> object:
        """Release what start() took."""

    def account(username: str) -> IAccount:  # type: ignore[empty-body]
        """The mail account of an authenticated user (created on first use if need be)."""

    def credentials_checker() -> object:
        """An ICredentialsChecker that replaces the configured one, or None."""


class IAccount(Interface):
    """One user's set of mailboxes."""

    def list_mailboxes() -> Sequence[MailboxInfo]:  # type: ignore[empty-body]
        """Every mailbox name, parents included (a parent that is no mailbox is \\Noselect)."""

    def create(name: str, special_use: str | None = None) -> object:
        """Create ``name`` and any missing parents; MailboxExists if it is there."""

    def delete(name: str) -> object:
        """RFC 3501 6.3.4: with inferiors the name stays as \\Noselect; INBOX cannot go."""

    def rename(old: str, new: str) -> object:
        """Rename with inferiors; renaming INBOX moves its messages and leaves it empty."""

    def subscriptions() -> Sequence[str]:  # type: ignore[empty-body]
        """Subscribed names (they need not exist)."""

    def subscribe(name: str) -> object:
        """Add ``name`` to the subscriptions."""

    def unsubscribe(name: str) -> object:
        """Remove ``name`` from the subscriptions."""

    def open(name: str) -> IMailbox:  # type: ignore[empty-body]
        """The mailbox ``name``; every session of this process gets the same event stream."""

    def close() -> object:
        """The session ended (LOGOUT or disconnect)."""


class IMailbox(Interface):
    """One mailbox.  UIDs ascend and are never reused under one UIDVALIDITY."""

    name = Attribute("The mailbox name.")

    def status() -> MailboxStatus:  # type: ignore[empty-body]
        """Counters for SELECT and STATUS."""

    def uids() -> Sequence[int]:  # type: ignore[empty-body]
        """Every UID, ascending."""

    def fetch(uids: Sequence[int]) -> Sequence[MessageMeta]:  # type: ignore[empty-body]
        """Metadata of the given UIDs (ascending); expunged ones are left out."""

    def content(uid: int) -> bytes:  # type: ignore[empty-body]
        """The whole message as stored (RFC 5322 bytes); KeyError when expunged."""

    def append(
        message: bytes, flags: frozenset[str], internaldate: datetime | None, origin: object
    ) -> AppendResult:  # type: ignore[empty-body]
        """Store a message; parse it once here.  Durable when the result arrives."""

    def store(
        uids: Sequence[int],
        mode: str,
        flags: frozenset[str],
        origin: object,
        unchangedsince: int | None = None,
    ) -> StoreResult:  # type: ignore[empty-body]
        """``mode`` is 'add', 'remove' or 'replace'.  Only real changes get a new modseq."""

    def copy(uids: Sequence[int], destination: str, origin: object) -> CopyResult:  # type: ignore[empty-body]
        """Copy to another mailbox of the same account, keeping flags and internal date."""

    def move(uids: Sequence[int], destination: str, origin: object) -> CopyResult:  # type: ignore[empty-body]
        """Copy, then expunge from this mailbox (one expunged event)."""

    def expunge(uids: Sequence[int] | None, origin: object) -> Sequence[int]:  # type: ignore[empty-body]
        """Remove messages flagged \\Deleted (only among ``uids`` when given); the UIDs removed."""

    def claim_recent() -> Sequence[int]:  # type: ignore[empty-body]
        """UIDs still \\Recent for no session; from now on they are recent to the caller only."""

    def search(query: object, uids: Sequence[int]) -> Sequence[int] | None:
        """Evaluate a ``mailserv.imap.search`` query among ``uids``, or None to let the engine."""

    def changes_since(modseq: int) -> Changes:  # type: ignore[empty-body]
        """Messages changed after ``modseq`` and UIDs expunged after it."""

    def add_listener(listener: IMailboxListener) -> None:
        """Start sending events to ``listener``."""

    def remove_listener(listener: IMailboxListener) -> None:
        """Stop sending events to ``listener``."""


class IMailboxListener(Interface):
    """Told of every change to a mailbox, by whichever session or process made it."""

    def messages_added(mailbox: IMailbox, uids: Sequence[int], origin: object) -> None:
        """New messages, UIDs ascending."""

    def messages_expunged(mailbox: IMailbox, uids: Sequence[int], origin: object) -> None:
        """Messages removed."""

    def flags_changed(mailbox: IMailbox, changes: Sequence[FlagChange], origin: object) -> None:
        """Flags of some messages changed."""
