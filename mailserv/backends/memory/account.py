"""One user's mailboxes, held in process memory.

The hierarchy is a flat dict of full names.  A name whose value is ``None`` is a
``\\Noselect`` placeholder: what RFC 3501 6.3.4 leaves behind when a mailbox with
inferiors is deleted.
"""

from __future__ import annotations

from collections.abc import Callable

from zope.interface import implementer

from mailserv.backends.memory.mailbox import MemoryMailbox
from mailserv.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MailboxNotSelectable,
)
from mailserv.interfaces import DELIMITER, INBOX, NOSELECT, IAccount, MailboxInfo


@implementer(IAccount)
class MemoryAccount:
    """``new_uidvalidity`` is shared by the whole backend, so a re-created name never
    gets a UIDVALIDITY it had before."""

    def __init__(self, new_uidvalidity: Callable[[], int]) -> None:
        self._new_uidvalidity = new_uidvalidity
        self._boxes: dict[str, MemoryMailbox | None] = {}
        self._subscribed: set[str] = set()
        self._make(INBOX)

    async def list_mailboxes(self) -> list[MailboxInfo]:
        return [
            MailboxInfo(name, frozenset({NOSELECT}) if box is None else box.attributes)
            for name, box in sorted(self._boxes.items())
        ]

    async def create(self, name: str, special_use: str | None = None) -> None:
        """A trailing delimiter only announces future children (RFC 3501 6.3.3)."""
        self._create(name, special_use)

    def _create(self, name: str, special_use: str | None = None) -> None:
        name = _checked(name.removesuffix(DELIMITER))
        if self._boxes.get(name) is not None:
            raise MailboxExists(name)
        self._make_parents(name)
        self._make(name, frozenset({special_use}) if special_use else frozenset())

    async def delete(self, name: str) -> None:
        if name == INBOX:
            raise InvalidMailboxName("INBOX cannot be deleted")
        if name not in self._boxes:
            raise MailboxNotFound(name)
        box = self._boxes[name]
        if self._inferiors(name):
            if box is None:
                raise MailboxHasChildren(name)
            box.expunge_all()
            self._boxes[name] = None
        else:
            if box is not None:
                box.expunge_all()
            del self._boxes[name]

    async def rename(self, old: str, new: str) -> None:
        """Mailbox objects move with their names, so UIDs and UIDVALIDITY survive."""
        new = _checked(new)
        if old not in self._boxes:
            raise MailboxNotFound(old)
        if new in self._boxes:
            raise MailboxExists(new)
        if old == INBOX:  # RFC 3501 6.3.5: move the messages, keep INBOX and its inferiors
            self._create(new)
            inbox = self.lookup(INBOX)
            inbox.transfer(inbox.uids_now(), self.lookup(new), None, move=True)
            return
        if new.startswith(old + DELIMITER):
            raise InvalidMailboxName(f"{new} is inside {old}")
        for name in [old, *self._inferiors(old)]:
            box = self._boxes.pop(name)
            moved = new + name[len(old) :]
            if box is not None:
                box.name = moved
            self._boxes[moved] = box
        self._make_parents(new)

    async def subscriptions(self) -> list[str]:
        return sorted(self._subscribed)

    async def subscribe(self, name: str) -> None:
        self._subscribed.add(name)

    async def unsubscribe(self, name: str) -> None:
        self._subscribed.discard(name)

    async def open(self, name: str) -> MemoryMailbox:
        """The shared object, so each session's listener hears every other session."""
        return self.lookup(name)

    def lookup(self, name: str) -> MemoryMailbox:
        """``open`` without waiting: for COPY and MOVE between this account's mailboxes."""
        if name not in self._boxes:
            raise MailboxNotFound(name)
        box = self._boxes[name]
        if box is None:
            raise MailboxNotSelectable(name)
        return box

    async def close(self) -> None:
        """Nothing is held per session."""

    def _make(self, name: str, attributes: frozenset[str] = frozenset()) -> MemoryMailbox:
        box = MemoryMailbox(name, self._new_uidvalidity(), self, attributes)
        self._boxes[name] = box
        return box

    def _make_parents(self, name: str) -> None:
        parts = name.split(DELIMITER)
        for depth in range(1, len(parts)):
            parent = DELIMITER.join(parts[:depth])
            if parent not in self._boxes:
                self._make(parent)

    def _inferiors(self, name: str) -> list[str]:
        prefix = name + DELIMITER
        return [other for other in self._boxes if other.startswith(prefix)]


def _checked(name: str) -> str:
    """Refuse names with an empty level (``a//b``, ``/a``): they cannot be listed."""
    if "" in name.split(DELIMITER):
        raise InvalidMailboxName(f"Invalid mailbox name {name!r}")
    return name
