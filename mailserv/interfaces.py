"""The backend contract: everything the IMAP engine asks of a mail store.

Every method that may do I/O is declared ``-> Awaitable[...]``: the engine awaits its result.
Write it as a coroutine function (``async def``, as the built-in backends do) or as a method
returning a Deferred (a Deferred is awaitable).  What is not declared awaitable is a plain
call: ``add_listener``/``remove_listener``, ``credentials_checker`` and the listener events
(``IMailboxListener``), which a backend makes synchronously, after the change they describe.

Messages are addressed by UID only: sequence numbers belong to a session's view and never
reach a backend.  Mailbox names are text (already decoded from modified UTF-7), hierarchy
delimiter ``DELIMITER`` (``/``), ``INBOX`` spelled in upper case.  Flags and attributes are
the spellings below; keywords keep the client's spelling.

Mutating calls take ``origin``: an opaque token for the session that asked.  The backend
hands it back on the listener events that call caused, so that session is not told twice.

Optional capabilities are interfaces of their own that a backend declares with
``@implementer`` next to the one they extend (``IHomeLookupConsumer`` next to ``IBackend``,
``ISearchableMailbox`` in place of ``IMailbox``); the server checks them with
``providedBy``, never by looking for a method.

Failures are the exceptions of ``mailserv.errors``.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final, overload

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface

from mailserv.message.info import MessageInfo

if TYPE_CHECKING:
    from mailserv.search import SearchProgram

# -- names ----------------------------------------------------------------------------------

INBOX: Final = "INBOX"
DELIMITER: Final = "/"
"""The hierarchy delimiter of every name the engine and a backend exchange."""

# -- flags (RFC 3501 2.3.2) -----------------------------------------------------------------

SEEN: Final = "\\Seen"
ANSWERED: Final = "\\Answered"
FLAGGED: Final = "\\Flagged"
DELETED: Final = "\\Deleted"
DRAFT: Final = "\\Draft"
SYSTEM_FLAGS: Final = frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT})
"""The system flags a backend stores, in the spelling it is given and must give back."""
RECENT: Final = "\\Recent"
"""Session state, never stored: drop it from the flags given to ``append``/``store``
(``flags - {RECENT}``); the messages recent to a session come from ``claim_recent()``."""

# -- mailbox attributes (RFC 3501 7.2.2, RFC 3348, RFC 5258, RFC 6154) -----------------------

NOSELECT: Final = "\\Noselect"
NOINFERIORS: Final = "\\Noinferiors"
MARKED: Final = "\\Marked"
UNMARKED: Final = "\\Unmarked"
NONEXISTENT: Final = "\\NonExistent"
HAS_CHILDREN: Final = "\\HasChildren"
HAS_NO_CHILDREN: Final = "\\HasNoChildren"
"""The engine adds ``HAS_CHILDREN``/``HAS_NO_CHILDREN`` itself from the names."""
SPECIAL_USE: Final = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)
"""Special-use attributes (RFC 6154) a backend may report and ``create`` may be given."""


class StoreMode(enum.Enum):
    """How ``IMailbox.store`` combines the given flags with a message's (STORE's
    ``+FLAGS``, ``-FLAGS`` and ``FLAGS``)."""

    ADD = "add"
    REMOVE = "remove"
    REPLACE = "replace"

    def apply(self, current: frozenset[str], flags: frozenset[str]) -> frozenset[str]:
        """The flags a message has after the store."""
        if self is StoreMode.ADD:
            return current | flags
        if self is StoreMode.REMOVE:
            return current - flags
        return flags


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    """A name as LIST shows it; attributes such as ``\\Noselect`` or special-use ``\\Sent``.

    The engine adds ``\\HasChildren``/``\\HasNoChildren`` itself from the names.
    """

    name: str
    attributes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """Counters for SELECT and STATUS.  ``mailboxid``: the RFC 8474 MAILBOXID, 1-255 chars
    of ``[A-Za-z0-9_-]``, kept across RENAME, never given to another mailbox of the account
    (a mailbox deleted and created again gets a new one); None from a store without ids
    (its account does not provide ``IMailboxIdAccount``)."""

    uidvalidity: int
    uidnext: int
    messages: int
    unseen: int
    recent: int
    highestmodseq: int
    size: int
    mailboxid: str | None = None


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What FETCH and SEARCH read about one message; ``info`` was computed at delivery."""

    uid: int
    flags: frozenset[str]
    internaldate: datetime  # timezone-aware
    size: int
    modseq: int
    info: MessageInfo
    savedate: datetime | None = None
    """RFC 8514 SAVEDATE: when the message was stored in this mailbox (APPEND, COPY, MOVE,
    delivery), timezone-aware; None when the store does not keep it."""


@dataclass(frozen=True, slots=True)
class FlagChange:
    uid: int
    flags: frozenset[str]
    modseq: int


class FlagChangeColumns(Sequence[FlagChange]):
    """Many flag changes kept as three columns: ``uids[i]`` now has ``flags[i]`` under
    ``modseqs[i]``; ``uids`` ascending.

    A backend may return this as ``StoreResult.changed`` (and pass it to ``flags_changed``)
    for a change to many messages: no object is made per message until one is read as a
    ``FlagChange``, and the engine reads the columns.  Share one frozenset between the
    messages that end with the same flags.
    """

    __slots__ = ("flags", "modseqs", "uids")

    def __init__(
        self, uids: Sequence[int], flags: Sequence[frozenset[str]], modseqs: Sequence[int]
    ) -> None:
        if not len(uids) == len(flags) == len(modseqs):
            raise ValueError("columns of different lengths")
        self.uids = uids
        self.flags = flags
        self.modseqs = modseqs

    def __len__(self) -> int:
        return len(self.uids)

    @overload
    def __getitem__(self, index: int) -> FlagChange: ...

    @overload
    def __getitem__(self, index: slice) -> FlagChangeColumns: ...

    def __getitem__(self, index: int | slice) -> FlagChange | FlagChangeColumns:
        if isinstance(index, slice):
            return FlagChangeColumns(self.uids[index], self.flags[index], self.modseqs[index])
        return FlagChange(self.uids[index], self.flags[index], self.modseqs[index])


SORT_KEYS: Final = (
    "ARRIVAL",
    "CC",
    "DATE",
    "FROM",
    "SIZE",
    "SUBJECT",
    "TO",
    "DISPLAYFROM",
    "DISPLAYTO",
    "MESSAGEID",
    "REFERENCES",
    "REPLY",
)
"""The columns :class:`SortKeys` may hold: SORT's keys (RFC 5256, RFC 5957) and THREAD's.
Each column holds the values the engine compares, as it reads them from a
:class:`MessageMeta` (``mailserv.message.sortcolumns.FIELDS``): ARRIVAL the internal date and DATE
the sent date (the internal date when there is none) as POSIX seconds, SIZE the octets,
SUBJECT ``info.base_subject``, FROM/TO/CC ``info.sort_from``/``sort_to``/``sort_cc``,
DISPLAYFROM/DISPLAYTO ``info.display_from``/``display_to``, MESSAGEID ``info.message_id``,
REFERENCES ``info.references`` (a tuple) and REPLY ``info.reply``."""


@dataclass(frozen=True, slots=True)
class SortKeys:
    """SORT/THREAD keys of some messages, one column per key: ``columns[name][i]`` is the
    key ``name`` (one of :data:`SORT_KEYS`) of message ``uids[i]``; ``uids`` ascending.
    No object per message: a SORT of 100k messages reads a few lists."""

    uids: Sequence[int]
    columns: Mapping[str, Sequence[object]]


@dataclass(frozen=True, slots=True)
class Narrowed:
    """A search's answer that is not final: the matches are among ``uids`` (ascending),
    and the engine evaluates the query on those alone (an index that holds a superset's
    test but not the exact one: HEADER of a field it does not keep)."""

    uids: Sequence[int]


@dataclass(frozen=True, slots=True)
class StoreResult:
    """``changed``: messages whose flags changed; ``failed``: UIDs refused by UNCHANGEDSINCE;
    ``unchanged``: the flags and modseqs of the other messages of the STORE still there, when
    the backend read them in the same go (None: not read, the engine reads them for its
    FETCH responses)."""

    changed: Sequence[FlagChange]
    failed: Sequence[int] = ()
    unchanged: Sequence[FlagChange] | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    uidvalidity: int
    uid: int


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One message of ``IMultiAppendAccount.append_many``, as ``IMailbox.append`` takes it."""

    message: bytes
    flags: frozenset[str]
    internaldate: datetime | None = None


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
    complete: bool = True
    """``vanished`` holds every UID expunged after the modseq; False when the store's
    record of expunges does not reach back that far (the proxy's mirror of a mailbox
    starts when it is opened): the engine then takes any UID the mailbox lacks as gone."""


class IBackendFactory(IPlugin):
    """A backend plugin, found by twisted.plugin in ``mailserv.plugins``."""

    name = Attribute("The --backend name, e.g. 'memory'.")
    description = Attribute("One line for --help.")
    options = Attribute("Mapping of accepted --backend-option keys to their help text.")

    def build(  # type: ignore[empty-body]
        options: dict[str, str], data_dir: str, reactor: IReactorTime
    ) -> IBackend:
        """Validate ``options`` (raise BackendOptionError naming the bad key) and build.

        ``reactor`` is the one the backend runs under: use it for timers, threads and
        sockets instead of importing the global one.  The server passes its running
        reactor, which also provides ``IReactorThreads``, ``IReactorFDSet`` and
        ``IReactorTCP`` (adapt it, e.g. ``IReactorThreads(reactor)``); a test may pass a
        ``Clock`` to a backend that needs nothing more.
        """


class IBackend(Interface):
    """One configured store, started and stopped with the service."""

    def start() -> Awaitable[None]:  # type: ignore[empty-body]
        """Open connections, files, watchers."""

    def stop() -> Awaitable[None]:  # type: ignore[empty-body]
        """Release what start() took."""

    def account(username: str) -> Awaitable[IAccount]:  # type: ignore[empty-body]
        """The mail account of an authenticated user (created on first use if need be)."""

    def credentials_checker() -> ICredentialsChecker | None:
        """A checker that replaces the configured one, or None; called once, synchronously."""


class IHomeLookupConsumer(Interface):
    """Optional, next to ``IBackend``: the backend keeps mail under users' home directories
    and wants the server's lookup of them (the passwd-file's home field)."""

    def set_home_lookup(home_of: Callable[[str], str | None]) -> None:
        """``home_of(user)`` is the user's home directory, or None when unknown."""


class IMultiProcessBackend(Interface):
    """Optional, next to ``IBackend``: several processes may each build and start this backend
    on the same store at once (``--workers N``), and each process's listeners hear of the
    others' changes (maildir: the files and inotify; PostgreSQL: LISTEN/NOTIFY; the proxy: the
    upstream server).  A marker: no methods."""


class ISlicedBackend(Interface):
    """Optional, next to ``IBackend``: the backend runs long work of its own in time slices
    on the reactor (the memory backend's lanes, maildir's rescans) and shares the reactor's
    turns through ``turns``; the server hands the same object to its sessions, so that
    together they keep to one budget a turn (:mod:`mailserv.slicing`)."""

    turns = Attribute("The backend's :class:`mailserv.slicing.Turns` (one per reactor).")


class IAccount(Interface):
    """One user's set of mailboxes."""

    def list_mailboxes() -> Awaitable[Sequence[MailboxInfo]]:  # type: ignore[empty-body]
        """Every mailbox name, parents included (a parent that is no mailbox is NOSELECT)."""

    def create(name: str, special_use: str | None = None) -> Awaitable[None]:  # type: ignore[empty-body]
        """Create ``name`` and any missing parents; MailboxExists if it is there.

        ``special_use`` is one of ``SPECIAL_USE`` (CREATE ... USE).
        """

    def delete(name: str) -> Awaitable[None]:  # type: ignore[empty-body]
        """RFC 3501 6.3.4: with inferiors the name stays as NOSELECT; INBOX cannot go."""

    def rename(old: str, new: str) -> Awaitable[None]:  # type: ignore[empty-body]
        """Rename with inferiors; renaming INBOX moves its messages and leaves it empty."""

    def subscriptions() -> Awaitable[Sequence[str]]:  # type: ignore[empty-body]
        """Subscribed names (they need not exist)."""

    def subscribe(name: str) -> Awaitable[None]:  # type: ignore[empty-body]
        """Add ``name`` to the subscriptions."""

    def unsubscribe(name: str) -> Awaitable[None]:  # type: ignore[empty-body]
        """Remove ``name`` from the subscriptions."""

    def open(name: str) -> Awaitable[IMailbox]:  # type: ignore[empty-body]
        """The mailbox ``name``; every session of this process gets the same event stream."""

    def close() -> Awaitable[None]:  # type: ignore[empty-body]
        """The session ended (LOGOUT or disconnect)."""


class IMailboxIdAccount(Interface):
    """Optional, next to ``IAccount``: every mailbox's ``status()`` carries its MAILBOXID
    (``MailboxStatus.mailboxid``).  Without it the server does not offer OBJECTID (RFC 8474).
    A marker: no methods."""


class IMultiAppendAccount(Interface):
    """Optional, next to ``IAccount``: several messages appended to one mailbox at once, all
    or none (MULTIAPPEND, RFC 3502).  Without it the server does not offer MULTIAPPEND."""

    def append_many(  # type: ignore[empty-body]
        name: str, messages: Sequence[NewMessage], origin: object
    ) -> Awaitable[Sequence[AppendResult]]:
        """Store the messages in ``name`` in the order given, as ``IMailbox.append`` would
        one by one, each durable when the result arrives; if one cannot be stored none is
        (no listener hears of any).  MailboxNotFound when ``name`` does not exist."""


class IAccountUsage(Interface):
    """Optional, next to ``IAccount``: the account adds up its mailboxes' kept counts itself
    (one query) for QUOTA (RFC 9208); without it the engine sums ``status()`` of each."""

    def usage() -> Awaitable[tuple[int, int]]:  # type: ignore[empty-body]
        """Octets and messages in all the account's mailboxes: ``MailboxStatus.size`` and
        ``.messages`` summed over them."""


@dataclass(frozen=True, slots=True)
class SharedEntry:
    """A mailbox of another user whose ACL names someone (``IAclAccount.shared_mailboxes``)."""

    owner: str
    name: str
    acl: Mapping[str, str]


class IAclAccount(Interface):
    """Optional, next to ``IAccount``: access control lists (RFC 4314) kept with the
    mailboxes, and the other accounts of the same store, for shared mailboxes.

    The store only keeps the lists: identifier (a user, ``anyone``, or either with a leading
    ``-`` for negative rights) to rights (letters of ``lrswipkxtea``, never empty); the
    engine decides what they allow and checks them on every command.  A mailbox's list
    goes with it on RENAME and DELETE.  Without this interface the server offers no ACL
    and no shared namespace."""

    def get_acl(name: str) -> Awaitable[Mapping[str, str]]:  # type: ignore[empty-body]
        """The list of this account's mailbox ``name``; MailboxNotFound when it is none."""

    def set_acl(name: str, identifier: str, rights: str) -> Awaitable[None]:  # type: ignore[empty-body]
        """Give ``identifier`` exactly ``rights`` on ``name``; ``""`` removes its entry."""

    def other_account(owner: str) -> Awaitable[IAccount | None]:  # type: ignore[empty-body]
        """The account of another user of this store, or None when it has none (never
        created by this call); the caller closes it (``IAccount.close``) when done, as a
        session does."""

    def shared_mailboxes(user: str) -> Awaitable[Sequence[SharedEntry]]:  # type: ignore[empty-body]
        """Every mailbox of the other accounts whose list names ``user`` or ``anyone``
        (negative entries included), with its whole list."""


@dataclass(frozen=True, slots=True)
class QuotaRoot:
    """A quota root the store keeps (RFC 9208): its name and, per resource (``STORAGE`` in
    KiB, ``MESSAGE``, ...), the usage and the limit."""

    name: str
    resources: tuple[tuple[str, int, int], ...] = ()


class IQuotaAccount(Interface):
    """Optional, next to ``IAccount``: the store keeps the user's quotas itself (the proxy,
    when its upstream has QUOTA).  GETQUOTA and GETQUOTAROOT are then answered from here,
    not from the limits in the configuration."""

    def quota_roots(name: str) -> Awaitable[Sequence[QuotaRoot]]:  # type: ignore[empty-body]
        """The quota roots of mailbox ``name`` (none: no quota); MailboxNotFound."""

    def quota(root: str) -> Awaitable[QuotaRoot | None]:  # type: ignore[empty-body]
        """Quota root ``root``, or None when there is no such root."""


class IMailbox(Interface):
    """One mailbox.  UIDs ascend and are never reused under one UIDVALIDITY."""

    name = Attribute("The mailbox name.")

    def status() -> Awaitable[MailboxStatus]:  # type: ignore[empty-body]
        """Counters for SELECT and STATUS."""

    def uids() -> Awaitable[Sequence[int]]:  # type: ignore[empty-body]
        """Every UID, ascending: a snapshot that later changes do not show through.  It
        may be shared (SELECT keeps it as is, without a copy): nobody changes it in place;
        a tuple kept until the set of messages changes is the cheap answer."""

    def fetch(uids: Sequence[int]) -> Awaitable[Sequence[MessageMeta]]:  # type: ignore[empty-body]
        """Metadata of the given UIDs (ascending); expunged ones are left out."""

    def content(uid: int) -> Awaitable[bytes]:  # type: ignore[empty-body]
        """The whole message as stored (RFC 5322 bytes); KeyError when expunged."""

    def append(  # type: ignore[empty-body]
        message: bytes, flags: frozenset[str], internaldate: datetime | None, origin: object
    ) -> Awaitable[AppendResult]:
        """Store a message; parse it once here.  Durable when the result arrives."""

    def store(  # type: ignore[empty-body]
        uids: Sequence[int],
        mode: StoreMode,
        flags: frozenset[str],
        origin: object,
        unchangedsince: int | None = None,
    ) -> Awaitable[StoreResult]:
        """Change flags as ``mode`` says.  Only real changes get a new modseq."""

    def copy(uids: Sequence[int], destination: str, origin: object) -> Awaitable[CopyResult]:  # type: ignore[empty-body]
        """Copy to another mailbox of the same account, keeping flags and internal date."""

    def move(uids: Sequence[int], destination: str, origin: object) -> Awaitable[CopyResult]:  # type: ignore[empty-body]
        """Copy, then expunge from this mailbox (one expunged event)."""

    def expunge(uids: Sequence[int] | None, origin: object) -> Awaitable[Sequence[int]]:  # type: ignore[empty-body]
        """Remove messages flagged DELETED (only among ``uids`` when given); the UIDs removed."""

    def claim_recent() -> Awaitable[Sequence[int]]:  # type: ignore[empty-body]
        """UIDs still RECENT for no session; from now on they are recent to the caller only."""

    def changes_since(modseq: int) -> Awaitable[Changes]:  # type: ignore[empty-body]
        """Messages changed after ``modseq`` and UIDs expunged after it.

        Modseqs are not optional: every mailbox keeps them (the kit's ``ModseqLog`` does the
        bookkeeping), so ``MailboxStatus.highestmodseq``, ``MessageMeta.modseq`` and this
        call are always there.  A store without modseqs of its own (the proxy, when the
        upstream lacks CONDSTORE) counts its own changes."""

    def add_listener(listener: IMailboxListener) -> None:
        """Start sending events to ``listener``."""

    def remove_listener(listener: IMailboxListener) -> None:
        """Stop sending events to ``listener``."""


class IDeletedUsage(Interface):
    """Optional, next to ``IMailbox``: the mailbox counts its \\Deleted messages and their
    octets from what it keeps in memory (STATUS DELETED and DELETED-STORAGE, RFC 9208);
    without it the engine searches for them and adds up their ``fetch()`` sizes."""

    def deleted_usage() -> Awaitable[tuple[int, int]]:  # type: ignore[empty-body]
        """How many messages have \\Deleted, and the sum of their RFC822.SIZE."""


class IFirstUnseen(Interface):
    """Optional, next to ``IMailbox``: the mailbox finds its first unseen message from what
    it keeps (the UIDs having \\Seen, the unseen runs), for SELECT's ``[UNSEEN n]``;
    without it the engine searches for UNSEEN."""

    def first_unseen() -> Awaitable[int | None]:  # type: ignore[empty-body]
        """The lowest UID without \\Seen, or None when every message has it."""


class IRefreshMailbox(Interface):
    """Optional, next to ``IMailbox``: a mailbox that hears of some changes made elsewhere
    only a while after they are made (an upstream server's IDLE, another process's mirror
    of the same mailbox), and can ask for them now.

    The engine calls ``refresh()`` at NOOP and CHECK of the selected mailbox, the commands
    a client sends to be told what changed: what it brings reaches the listeners as events
    before the command's answer.  A mailbox whose listeners hear of every change as it is
    made (memory, maildir, SQL) needs none.
    """

    def refresh() -> Awaitable[None]:  # type: ignore[empty-body]
        """Take in the changes made elsewhere until now; a failure is logged, not raised."""


class ISearchableMailbox(IMailbox):
    """Optional: a mailbox that evaluates SEARCH itself (an index, SQL, an upstream server).

    Declare it with ``@implementer(ISearchableMailbox)`` in place of ``IMailbox``.  A
    mailbox without it has every query evaluated by the engine over ``fetch()`` results:
    correct, if slower.
    """

    def search(
        query: SearchProgram, uids: Sequence[int]
    ) -> Awaitable[Sequence[int] | Narrowed | None]:  # type: ignore[empty-body]
        """The UIDs among ``uids`` that match ``query``, or None to let the engine evaluate it.

        ``query`` is a :mod:`mailserv.search` tree without session state: sequence numbers
        and RECENT have been turned into ``UidIn`` sets.  A backend may answer the queries
        it can and decline (None) the rest, or narrow them down (:class:`Narrowed`: the
        engine evaluates the query on the messages it lists).
        """


class ISortKeysMailbox(IMailbox):
    """Optional: a mailbox that reads SORT and THREAD keys without making a
    :class:`MessageMeta` per message (a store keeping them as columns).

    Declare it with ``@implementer(ISortKeysMailbox)`` next to the other mailbox
    interfaces.  Without it the engine reads the keys from ``fetch()`` results, the same
    values (the contract checks that both agree).
    """

    def sort_keys(uids: Sequence[int], names: Sequence[str]) -> Awaitable[SortKeys]:  # type: ignore[empty-body]
        """The keys ``names`` (of :data:`SORT_KEYS`) of those of ``uids`` (ascending) that
        still exist.  Do the work off the reactor thread, or in slices: it grows with the
        mailbox."""


class IFlagsMailbox(IMailbox):
    """Optional: a mailbox whose ``fetch()`` must load or decode each message's parsed
    ``MessageInfo``, and that can hand out the rest without it.

    FETCH of FLAGS, UID, RFC822.SIZE, INTERNALDATE, MODSEQ or SAVEDATE alone, and the flag
    reads of STORE, ask ``fetch_flags``: on a mailbox of 100k messages, ``FETCH 1:* FLAGS``
    then makes no 100k parsed messages (and no collector passes over them).
    """

    def fetch_flags(uids: Sequence[int]) -> Awaitable[Sequence[MessageMeta]]:  # type: ignore[empty-body]
        """As ``fetch()``, with :data:`mailserv.message.info.NO_INFO` as every ``info``
        not already at hand (the caller reads no ``info``)."""


class ISharedMailbox(Interface):
    """Optional, next to ``IMailbox``: a mailbox other processes change too (the backend
    provides ``IMultiProcessBackend``), whose events about their changes arrive late.

    The engine awaits ``catch_up(since)`` at the end of every command of a session that has
    the mailbox selected (``since``: when the command started), and before IDLE starts, so
    that a change whose command was answered before that command started is reported by it
    (as with one process per connection).
    """

    def catch_up(since: float | None = None) -> Awaitable[None]:  # type: ignore[empty-body]
        """Returns once the listeners were told of every change committed before ``since``
        (a ``time.perf_counter()`` reading; None: the call), by any process.  A backend may
        answer from a read of the mailbox it sent after ``since`` (a command's own).  Cheap
        when nothing is missing; never raises for a mailbox that went away (its listeners
        were told)."""


class IMailboxListener(Interface):
    """Told of every change to a mailbox, by whichever session or process made it.

    Events are plain calls, made after the change they describe; a backend calls every
    listener even when one raises (and logs that failure).
    """

    def messages_added(mailbox: IMailbox, uids: Sequence[int], origin: object) -> None:
        """New messages, UIDs ascending."""

    def messages_expunged(mailbox: IMailbox, uids: Sequence[int], origin: object) -> None:
        """Messages removed."""

    def flags_changed(mailbox: IMailbox, changes: Sequence[FlagChange], origin: object) -> None:
        """Flags of some messages changed."""

    def mailbox_lost(mailbox: IMailbox, reason: str) -> None:
        """The mailbox can no longer be followed (gone from, or lost with, the store it
        mirrors): what the listener knows of it is void.  The engine ends the session with
        BYE ``reason``; later calls on the mailbox may fail until it is opened again."""
