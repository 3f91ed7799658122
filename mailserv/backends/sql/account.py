"""One user's mailboxes in the SQL store: the IAccount the engine talks to."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from zope.interface import implementer

from mailserv.backends.sql import acl, hierarchy, reads
from mailserv.backends.sql.mailbox import SqlMailbox
from mailserv.interfaces import (
    AppendResult,
    IAccount,
    IAccountUsage,
    IAclAccount,
    IMailboxIdAccount,
    IMultiAppendAccount,
    MailboxInfo,
    NewMessage,
    SharedEntry,
)

if TYPE_CHECKING:
    from mailserv.backends.sql.backend import SqlBackend


@implementer(IAccount, IMultiAppendAccount, IAccountUsage, IMailboxIdAccount, IAclAccount)
class SqlAccount:
    """Account row ``account_id``; holds nothing per session, so ``close`` has nothing to do."""

    def __init__(self, backend: SqlBackend, account_id: int, username: str) -> None:
        self._backend = backend
        self.id = account_id
        self.username = username

    async def list_mailboxes(self) -> list[MailboxInfo]:
        found: list[MailboxInfo] = await self._backend.db.run(hierarchy.list_mailboxes, self.id)
        return found

    async def create(self, name: str, special_use: str | None = None) -> None:
        await self._backend.db.run(hierarchy.create_mailbox, self.id, name, special_use, write=True)

    async def delete(self, name: str) -> None:
        backend = self._backend
        removal: hierarchy.Removal | None = await backend.db.run(
            hierarchy.delete_mailbox, self.id, name, backend.sender, write=True
        )
        if removal is not None:
            box = backend.boxes.get(removal.mailbox_id)
            if box is not None:
                box.expunged(removal.uids, 0, None)

    async def rename(self, old: str, new: str) -> None:
        """Mailbox ids keep their UIDs and UIDVALIDITY under the new names."""
        backend = self._backend
        done: hierarchy.Renaming = await backend.db.run(
            hierarchy.rename_mailbox, self.id, old, new, backend.sender, write=True
        )
        for box_id, name in done.renamed:
            backend.renamed(box_id, name)
        if done.move is not None:
            backend.transferred(done.move, None)

    async def subscriptions(self) -> list[str]:
        found: list[str] = await self._backend.db.run(hierarchy.subscriptions, self.id)
        return found

    async def subscribe(self, name: str) -> None:
        await self._backend.db.run(hierarchy.subscribe, self.id, name, write=True)

    async def unsubscribe(self, name: str) -> None:
        await self._backend.db.run(hierarchy.unsubscribe, self.id, name, write=True)

    async def open(self, name: str) -> SqlMailbox:
        """The process-wide object of the mailbox, so its sessions hear each other; its
        status columns read with it are offered to the ``status()`` that follows."""
        backend = self._backend
        told, sent = backend.told, time.perf_counter()
        row, look = await backend.db.run(hierarchy.open_with_look, self.id, name, quick=True)
        box = backend.mailbox(self.id, row)
        if backend.told == told:  # nothing was told anywhere meanwhile
            box.offer(look, sent)
        return box

    async def append_many(
        self, name: str, batch: Sequence[NewMessage], origin: object
    ) -> list[AppendResult]:
        return await (await self.open(name)).append_many(batch, origin)

    async def usage(self) -> tuple[int, int]:
        """QUOTA's usage: one query over the mailboxes' kept counts."""
        found: tuple[int, int] = await self._backend.db.run(reads.account_usage, self.id)
        return found

    async def close(self) -> None:
        """Nothing is held per session."""

    # -- IAclAccount: table acl (mailserv.backends.sql.acl) --------------------------------

    async def get_acl(self, name: str) -> dict[str, str]:
        found: dict[str, str] = await self._backend.db.run(acl.get_acl, self.id, name)
        return found

    async def set_acl(self, name: str, identifier: str, rights: str) -> None:
        await self._backend.db.run(acl.set_acl, self.id, name, identifier, rights, write=True)

    async def other_account(self, owner: str) -> SqlAccount | None:
        found = await self._backend.db.run(hierarchy.find_account, owner)
        return None if found is None else SqlAccount(self._backend, int(found), owner)

    async def shared_mailboxes(self, user: str) -> list[SharedEntry]:
        found: list[SharedEntry] = await self._backend.db.run(acl.shared_mailboxes, self.id, user)
        return found
