"""One user's mailboxes, held in process memory.

The hierarchy is a flat dict of full names; a name whose value is ``None`` is a
``\\Noselect`` placeholder (what DELETE leaves of a mailbox with inferiors).  The rules
themselves come from the kit's :class:`~mailserv.backends.kit.Hierarchy`: it says what to
do, this class does it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from mailserv.backends.kit import AclIndex, Hierarchy
from mailserv.backends.memory.mailbox import MemoryMailbox
from mailserv.errors import MailboxNotFound, MailboxNotSelectable
from mailserv.interfaces import (
    INBOX,
    AppendResult,
    IAccount,
    IAclAccount,
    IMailboxIdAccount,
    IMultiAppendAccount,
    MailboxInfo,
    NewMessage,
    SharedEntry,
)
from mailserv.slicing import Turns


@implementer(IAccount, IMultiAppendAccount, IMailboxIdAccount, IAclAccount)
class MemoryAccount:
    """``new_uidvalidity`` is shared by the whole backend, so a re-created name never
    gets a UIDVALIDITY it had before; ``clock``: the backend's turns of the reactor, which
    the mailboxes' long changes share (or a reactor: a budget of the account's own);
    ``others``: every account of the backend by user, and ``shared``: the backend's index
    of the mailboxes whose list names someone (shared mailboxes)."""

    def __init__(
        self,
        new_uidvalidity: Callable[[], int],
        clock: Turns | IReactorTime,
        username: str = "",
        others: Mapping[str, MemoryAccount] | None = None,
        shared: AclIndex | None = None,
    ) -> None:
        self._new_uidvalidity = new_uidvalidity
        self.turns = Turns.of(clock)
        self.clock = self.turns.clock
        self.username = username
        self._others: Mapping[str, MemoryAccount] = {} if others is None else others
        self._shared = AclIndex() if shared is None else shared
        self._boxes: dict[str, MemoryMailbox | None] = {}
        self._subscribed: set[str] = set()
        self._make(INBOX)

    def _hierarchy(self) -> Hierarchy:
        return Hierarchy({name: box is not None for name, box in self._boxes.items()})

    async def list_mailboxes(self) -> list[MailboxInfo]:
        return self._hierarchy().listing(lambda name: self.lookup(name).attributes)

    async def create(self, name: str, special_use: str | None = None) -> None:
        plan = self._hierarchy().create(name)
        for parent in plan.parents:
            self._make(parent)
        self._make(plan.name, frozenset({special_use}) if special_use else frozenset())

    async def delete(self, name: str) -> None:
        plan = self._hierarchy().delete(name)
        box = self._boxes.pop(name)
        if box is not None:
            self._shared.deleted(self.username, name, box.acl)
            await box.expunge_all()  # whoever has it selected hears of it
            box.stop()
        if plan.keep:
            self._boxes[name] = None

    async def rename(self, old: str, new: str) -> None:
        """Mailbox objects move with their names, so UIDs and UIDVALIDITY survive."""
        plan = self._hierarchy().rename(old, new)
        if plan.inbox is not None:
            await self.create(new)
            inbox = self.lookup(INBOX)
            await inbox.move(await inbox.uids(), new, None)
            return
        for name, moved in plan.moves:
            box = self._boxes[moved] = self._boxes.pop(name)
            if box is not None:
                box.name = moved
                self._shared.renamed(self.username, name, moved, box.acl)
        for parent in plan.parents:
            self._make(parent)

    async def subscriptions(self) -> list[str]:
        return sorted(self._subscribed)

    async def subscribe(self, name: str) -> None:
        self._subscribed.add(name)

    async def unsubscribe(self, name: str) -> None:
        self._subscribed.discard(name)

    async def open(self, name: str) -> MemoryMailbox:
        """The shared object, so each session's listener hears every other session."""
        return self.lookup(name)

    async def append_many(
        self, name: str, messages: Sequence[NewMessage], origin: object
    ) -> list[AppendResult]:
        return await self.lookup(name).append_many(messages, origin)

    def lookup(self, name: str) -> MemoryMailbox:
        """``open`` without waiting: for COPY and MOVE between this account's mailboxes."""
        box = self._boxes.get(name)
        if box is None:
            raise MailboxNotSelectable(name) if name in self._boxes else MailboxNotFound(name)
        return box

    async def close(self) -> None:
        """Nothing is held per session."""

    def stop(self) -> None:
        """The backend stops: no mailbox works in the background any more."""
        for box in self._boxes.values():
            if box is not None:
                box.stop()

    # -- IAclAccount: each mailbox object holds its list, so RENAME and DELETE take it along;
    # the backend's index says which mailboxes have one, so nobody walks them all

    async def get_acl(self, name: str) -> dict[str, str]:
        return dict(self.lookup(name).acl)

    async def set_acl(self, name: str, identifier: str, rights: str) -> None:
        acl = self.lookup(name).acl
        if rights:
            acl[identifier] = rights
        else:
            acl.pop(identifier, None)
        self._shared.entry(self.username, name, identifier, bool(rights))

    async def other_account(self, owner: str) -> MemoryAccount | None:
        return self._others.get(owner)

    async def shared_mailboxes(self, user: str) -> list[SharedEntry]:
        return [
            SharedEntry(owner, name, dict(self._others[owner].lookup(name).acl))
            for owner, name in self._shared.naming(user)
            if owner != self.username
        ]

    def _make(self, name: str, attributes: frozenset[str] = frozenset()) -> None:
        self._boxes[name] = MemoryMailbox(name, self._new_uidvalidity(), self, attributes)
