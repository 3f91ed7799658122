"""NOTIFY (RFC 5465) at run time: what one session watches, and the board of name changes.

A :class:`Notifier` belongs to one session from ``NOTIFY SET`` to ``NOTIFY NONE`` (or the
end of the session).  It listens on each watched mailbox (a :class:`_Watch`, the backend's
``IMailboxListener``), notes which mailboxes changed and, once per reactor turn, sends one
``* STATUS`` per changed mailbox, read from ``status()`` (no work per message).  STATUS
responses may go out at any time (RFC 3501 7.2.4), so they are written when the turn comes:
at once while idle or between commands, with the running command's output otherwise.

The selected mailbox is the view's (:mod:`mailserv.imap.view`): its EXISTS, EXPUNGE and
FETCH FLAGS go out as before.  With ``SELECTED (MessageNew (items))`` the notifier also
sends a FETCH of those items for each new message, right after the view announced it (at a
command's end, or while IDLE).

Mailbox names (``MailboxName``, ``SubscriptionChange``): the backends have no account-level
hook, so these are told for changes made through this server (CREATE, DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE of another session of the same user): the :class:`MailboxBoard` the
sessions of a process share.  Under ``--workers`` each board hands its changes to its
``relay`` and is ``told`` every worker's, its own too, in the master's one order
(:mod:`mailserv.workers.limits`).  A session is not told of its own changes (its tagged OK
told it).  Changes made outside the server (a mail delivery agent writing a maildir) do not
show as names; their messages do, once a watched mailbox exists.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.internet.defer import DeferredLock
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from mailserv import errors
from mailserv.imap import listing, shared
from mailserv.imap.fetch import fetch
from mailserv.imap.fetchatt import FetchItem
from mailserv.interfaces import (
    INBOX,
    NONEXISTENT,
    NOSELECT,
    FlagChange,
    IMailbox,
    IMailboxListener,
)
from mailserv.syntax import encode

if TYPE_CHECKING:
    from mailserv.imap.session import Session
    from mailserv.imap.view import SelectedView

_log = Logger()

MESSAGE_NEW = "MESSAGENEW"
MESSAGE_EXPUNGE = "MESSAGEEXPUNGE"
FLAG_CHANGE = "FLAGCHANGE"
MAILBOX_NAME = "MAILBOXNAME"
SUBSCRIPTION_CHANGE = "SUBSCRIPTIONCHANGE"
MESSAGE_EVENTS = frozenset({MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE})
NAME_EVENTS = frozenset({MAILBOX_NAME, SUBSCRIPTION_CHANGE})
SELECTED_KINDS = frozenset({"SELECTED", "SELECTED-DELAYED"})


@dataclass(frozen=True, slots=True)
class Filter:
    """One ``(filter (events))`` group of NOTIFY SET."""

    kind: str
    """SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED, SUBTREE or MAILBOXES."""
    names: tuple[str, ...] = ()
    events: frozenset[str] = frozenset()
    fetch: tuple[FetchItem, ...] = ()
    """SELECTED's MessageNew items: FETCHed for each new message."""


@dataclass(slots=True)
class _Changes:
    """One session's name events, kept until its next turn."""

    lines: list[bytes] = field(default_factory=list)
    rescan: bool = False
    others: bool = False
    """Another session made one of them: what the rescan finds new may have changed already."""


def list_line(name: str, attributes: Iterable[str], utf8: bool, old: str | None = None) -> bytes:
    """``* LIST (attrs) "/" name`` with RFC 5465's ``("OLDNAME" (old))`` after a rename;
    ``utf8``: names in UTF-8 (the session enabled UTF8=ACCEPT or IMAP4rev2)."""
    from mailserv.imap.commands.mailboxes import name_bytes  # it imports the session

    extra = b' ("OLDNAME" (%s))' % name_bytes(old, utf8) if old is not None else b""
    return b'* LIST %s "%s" %s%s\r\n' % (
        encode.flag_list(attributes),
        listing.DELIMITER.encode(),
        name_bytes(name, utf8),
        extra,
    )


CREATED, DELETED, RENAMED, SUBSCRIBED, UNSUBSCRIBED = (
    "created", "deleted", "renamed", "subscribed", "unsubscribed"
)  # fmt: skip
NAME_CHANGES = frozenset({CREATED, DELETED, RENAMED, SUBSCRIBED, UNSUBSCRIBED})


@dataclass(frozen=True, slots=True)
class NameChange:
    """One user's mailbox name change: ``kind`` one of :data:`NAME_CHANGES`; ``old`` the
    name before a rename."""

    user: str
    kind: str
    name: str
    old: str = ""

    @property
    def event(self) -> str:
        return SUBSCRIPTION_CHANGE if self.kind in (SUBSCRIBED, UNSUBSCRIBED) else MAILBOX_NAME

    def line(self, utf8: bool) -> bytes:
        """The ``* LIST`` line that tells it (RFC 5465 5.4, 5.5)."""
        if self.kind == RENAMED:
            return list_line(self.name, (), utf8, old=self.old)
        attributes = {DELETED: (NONEXISTENT,), SUBSCRIBED: ("\\Subscribed",)}
        return list_line(self.name, attributes.get(self.kind, ()), utf8)


class MailboxBoard:
    """The sessions of this process that follow name changes, by user (shared through
    ``Services``): CREATE, DELETE, RENAME and (UN)SUBSCRIBE post here once they succeeded.

    ``relay``, when set (a worker), is handed each change made here, and the master passes
    every change, ours too, back through :meth:`told` in one order for all the workers:
    the other sessions here are told ours then, so that a change of ours and one made
    elsewhere reach every session in the same order (a DELETE here does not overtake the
    CREATE of another worker still on its way).  The session that made a change hears of
    it at once (its own NOTIFY watches the new name before its tagged OK)."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[Notifier]] = {}
        self.relay: Callable[[NameChange], None] | None = None
        self._relayed: deque[tuple[NameChange, Session]] = deque()
        """Our changes handed to ``relay`` and not passed back yet, with who made each."""

    def join(self, user: str, notifier: Notifier) -> None:
        self._by_user.setdefault(user, set()).add(notifier)

    def leave(self, user: str, notifier: Notifier) -> None:
        members = self._by_user.get(user)
        if members is not None:
            members.discard(notifier)
            if not members:
                del self._by_user[user]

    def created(self, origin: Session, name: str) -> None:
        self._post(origin, CREATED, name)

    def deleted(self, origin: Session, name: str) -> None:
        self._post(origin, DELETED, name)

    def renamed(self, origin: Session, old: str, new: str) -> None:
        self._post(origin, RENAMED, new, old)

    def subscribed(self, origin: Session, name: str, on: bool) -> None:
        self._post(origin, SUBSCRIBED if on else UNSUBSCRIBED, name)

    def told(self, change: NameChange, ours: bool = False) -> None:
        """A change the master passes on: another process's, or (``ours``) the oldest one
        made here that it has not passed back yet."""
        origin = None
        while ours and self._relayed:  # the channel keeps order: it is the first
            made, by = self._relayed.popleft()
            if made == change:
                origin = by
                break
        for notifier in list(self._by_user.get(change.user, ())):
            if origin is None or notifier.session is not origin:  # it heard at once
                notifier.name_changed(change, own=False)

    def _post(self, origin: Session, kind: str, name: str, old: str = "") -> None:
        if origin.username is None:
            return
        change = NameChange(origin.username, kind, name, old)
        for notifier in list(self._by_user.get(change.user, ())):
            if self.relay is None or notifier.session is origin:
                notifier.name_changed(change, own=notifier.session is origin)
        if self.relay is not None:
            self._relayed.append((change, origin))
            self.relay(change)


@implementer(IMailboxListener)
class _Watch:
    """The listener on one watched mailbox: notes that it changed, nothing more."""

    def __init__(self, notifier: Notifier, name: str, mailbox: IMailbox, events: frozenset[str]):
        self.notifier = notifier
        self.name = name
        self.mailbox = mailbox
        self.events = events

    def messages_added(self, mailbox: IMailbox, uids: Sequence[int], origin: object) -> None:
        if MESSAGE_NEW in self.events:
            self.notifier.changed(self, uids)

    def messages_expunged(self, mailbox: IMailbox, uids: Sequence[int], origin: object) -> None:
        if MESSAGE_EXPUNGE in self.events:
            self.notifier.changed(self, ())

    def flags_changed(
        self, mailbox: IMailbox, changes: Sequence[FlagChange], origin: object
    ) -> None:
        if FLAG_CHANGE in self.events:
            self.notifier.changed(self, ())

    def mailbox_lost(self, mailbox: IMailbox, reason: str) -> None:
        self.notifier.lost(self)


class Notifier:
    """One session's NOTIFY SET: its watches, the changes not told yet, the turn that tells."""

    def __init__(self, session: Session, filters: Sequence[Filter]) -> None:
        self.session = session
        self.filters = tuple(filters)
        self._selected = next((f for f in self.filters if f.kind in SELECTED_KINDS), None)
        self._watches: dict[str, _Watch] = {}
        self._pending: dict[str, None] = {}
        """Names of watched mailboxes changed since the last turn, in order."""
        self._names = _Changes()
        self._added: list[int] = []
        """New UIDs of the selected mailbox whose FETCH is owed (SELECTED MessageNew items)."""
        self._selected_watch: _Watch | None = None
        self._call: IDelayedCall | None = None
        self._lock = DeferredLock()
        self.closed = False

    # -- set up and tear down --------------------------------------------------------------

    @property
    def wants_names(self) -> bool:
        return any(f.events & NAME_EVENTS for f in self.filters)

    async def start(self) -> list[str]:
        """Open and listen to every watched mailbox; the names watched, in order.  Raises
        ``OverflowError`` past ``max_notify_mailboxes`` (nothing stays registered then)."""
        names = await self._resolve()
        if len(names) > self.session.settings.max_notify_mailboxes:
            raise OverflowError(len(names))
        await self._watch(names)
        self.follow_selected()
        user = self.session.username
        if self.wants_names and user is not None and not self.closed:
            self.session.services.board.join(user, self)
        return list(names)

    def close(self) -> None:
        """Stop listening; nothing pending is written."""
        self.closed = True
        if self.session.username is not None:
            self.session.services.board.leave(self.session.username, self)
        if self._call is not None and self._call.active():
            self._call.cancel()
        for watch in self._watches.values():
            watch.mailbox.remove_listener(watch)
        self._watches.clear()
        if self._selected_watch is not None:
            self._selected_watch.mailbox.remove_listener(self._selected_watch)
            self._selected_watch = None
        self._pending.clear()

    async def _resolve(self) -> dict[str, frozenset[str]]:
        """Each watched mailbox with its message events (the first filter naming it wins)."""
        account = self.session.account
        assert account is not None
        infos = await account.list_mailboxes()
        existing = [i.name for i in infos if not i.attributes & {NOSELECT, NONEXISTENT}]
        subscribed: frozenset[str] = frozenset()
        if any(f.kind == "SUBSCRIBED" for f in self.filters):
            subscribed = frozenset(await account.subscriptions())
        found: dict[str, frozenset[str]] = {}
        for name in existing:
            for f in self.filters:
                if f.kind not in SELECTED_KINDS and _matches(f, name, subscribed):
                    if f.events & MESSAGE_EVENTS:
                        found[name] = f.events & MESSAGE_EVENTS
                    break
        return found

    async def _watch(self, wanted: dict[str, frozenset[str]], late: bool = False) -> None:
        """Listen to ``wanted`` and to nothing else.

        ``late``: after another session's CREATE, RENAME or SUBSCRIBE, which may have been
        followed by an APPEND (or a COPY, a delivery) before we listen here: the change
        arrives through the master under ``--workers``, or the open waits on the disk.  A
        mailbox first watched then that holds messages is told with a STATUS (its count
        read after we listen: nothing falls in between), as its MessageNew would have been.
        """
        account = self.session.account
        assert account is not None
        for name in [n for n in self._watches if n not in wanted]:
            watch = self._watches.pop(name)
            watch.mailbox.remove_listener(watch)
        for name, events in wanted.items():
            if name in self._watches or self.closed:
                continue
            try:
                mailbox = await account.open(name)
            except errors.MailboxNotFound:
                continue  # deleted meanwhile
            if self.closed or name in self._watches:
                continue
            watch = _Watch(self, name, mailbox, events)
            self._watches[name] = watch
            mailbox.add_listener(watch)
            if late and MESSAGE_NEW in events and await self._holds_messages(mailbox):
                self._pending[name] = None

    async def _holds_messages(self, mailbox: IMailbox) -> bool:
        try:
            return (await mailbox.status()).messages > 0
        except errors.MailboxNotFound:
            return False  # deleted meanwhile: its watch is lost (mailbox_lost)

    def follow_selected(self) -> None:
        """Listen to the selected mailbox when SELECTED asks for FETCHes of new messages
        (called after every command: SELECT and CLOSE change it)."""
        view = self.session.selected
        wanted = self._selected is not None and bool(self._selected.fetch)
        current = self._selected_watch
        mailbox = view.mailbox if view is not None and wanted else None
        if current is not None and current.mailbox is mailbox:
            return
        if current is not None:
            current.mailbox.remove_listener(current)
            self._selected_watch = None
            self._added.clear()
        if mailbox is not None and not self.closed:
            assert view is not None
            watch = _Watch(self, view.mailbox.name, mailbox, frozenset({MESSAGE_NEW}))
            self._selected_watch = watch
            mailbox.add_listener(watch)

    # -- events ----------------------------------------------------------------------------

    def changed(self, watch: _Watch, uids: Sequence[int]) -> None:
        if watch is self._selected_watch:
            self._added.extend(uids)
        else:
            self._pending[watch.name] = None
        self._schedule()

    def lost(self, watch: _Watch) -> None:
        """A watched mailbox went away (deleted, or its store lost): stop watching it."""
        if self._watches.get(watch.name) is watch:
            del self._watches[watch.name]
            self._pending.pop(watch.name, None)
        watch.mailbox.remove_listener(watch)

    def name_changed(self, change: NameChange, own: bool) -> None:
        """A CREATE, DELETE, RENAME or (UN)SUBSCRIBE of this user (in this process, or told
        by another); ``own``: this session's (its tagged OK told it)."""
        from mailserv.imap.session import utf8_names  # it imports this module

        self._names.rescan = True
        if not own:
            self._names.others = True
            if any(change.event in f.events for f in self.filters):
                self._names.lines.append(change.line(utf8_names(self.session)))
        self._schedule()

    def _schedule(self) -> None:
        if self.closed or (self._call is not None and self._call.active()):
            return
        self._call = self.session.services.clock.callLater(0, self._turn)

    def _turn(self) -> None:
        self._call = None
        if self.closed or self.session.ended:
            return
        d = defer.Deferred.fromCoroutine(self.flush(idle=True))
        d.addErrback(lambda f: _log.failure("NOTIFY update failed", f))

    # -- output ----------------------------------------------------------------------------

    async def send_status(self, names: Sequence[str]) -> None:
        """``* STATUS`` of each of ``names`` still watched (NOTIFY SET STATUS)."""
        for name in names:
            watch = self._watches.get(name)
            if watch is None or self.closed:
                continue
            if not await shared.allowed(self.session, name, "r"):
                continue  # another user's mailbox it may not read (RFC 4314 r) tells nothing
            try:
                line = await self._status_line(name, watch.mailbox)
            except errors.MailboxNotFound:
                continue
            if self.closed or self.session.ended:
                return
            self.session.write(line)

    async def _status_line(self, name: str, mailbox: IMailbox) -> bytes:
        from mailserv.imap.commands.mailboxes import status_line  # it imports the session

        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"]
        known = self.session.services.registry.status_items
        if "HIGHESTMODSEQ" in known and "CONDSTORE" in self.session.enabled:
            items.append("HIGHESTMODSEQ")
        return await status_line(self.session, name, items, mailbox, known)

    async def flush(self, idle: bool = False) -> None:
        """Tell what changed: name events, a STATUS per changed mailbox, and the FETCHes
        owed for new messages of the selected mailbox.  ``idle``: called from the turn, so
        the selected mailbox's part is left to the command's end unless IDLE runs."""
        async with self._lock:
            if self.closed:
                return
            if self._names.rescan:
                await self._rescan()
            names, self._pending = list(self._pending), {}
            selected = self.session.selected
            skip = selected.mailbox.name if selected is not None else None
            await self.send_status([name for name in names if name != skip])
            if self._added and selected is not None:
                if idle and not self.session.idling:
                    return  # the running command's end flushes the view, then us
                if idle:
                    await selected.flush_idle()  # EXISTS first
                await self._fetch_new(selected)

    async def _rescan(self) -> None:
        names, self._names = self._names, _Changes()
        if names.lines:
            self.session.write(b"".join(names.lines))
        wanted = await self._resolve()
        if len(wanted) > self.session.settings.max_notify_mailboxes:
            self.session.write(b"* OK [NOTIFICATIONOVERFLOW] Too many mailboxes to watch\r\n")
            self.close()
            return
        await self._watch(wanted, late=names.others)

    async def _fetch_new(self, view: SelectedView) -> None:
        assert self._selected is not None
        added, self._added = sorted(set(self._added)), []
        known = [uid for uid in added if view.seq_of(uid) is not None]
        pending = [uid for uid in added if view.seq_of(uid) is None and uid > _top(view)]
        self._added = pending  # not announced yet: after the next flush
        if known and self.session.selected is view:
            await fetch(self.session, view, known, list(self._selected.fetch), uid_mode=False)


def _top(view: SelectedView) -> int:
    return view.uids[-1] if view.uids else 0


def _matches(f: Filter, name: str, subscribed: frozenset[str]) -> bool:
    if f.kind == "INBOXES":
        return name == INBOX
    if f.kind == "PERSONAL":
        return True
    if f.kind == "SUBSCRIBED":
        return name in subscribed
    if f.kind == "SUBTREE":
        return any(name == root or listing.is_inside(name, root) for root in f.names)
    return name in f.names  # MAILBOXES
