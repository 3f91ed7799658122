"""One user's Maildir++ tree: the folder hierarchy, subscriptions and special-use folders.

Folders are the ``.name`` directories of the root.  A parent that exists only because a
child does (``.a.b`` without ``.a``) is listed as ``\\Noselect``; so is a folder directory
without ``cur/``, which is what DELETE leaves of a mailbox with inferiors (RFC 3501 6.3.4:
the name stays until it is deleted too).  Mailbox objects are shared by the account's
sessions and live until the last session logs out.

A new folder is assembled in the root's ``tmp/`` (maildir, ``maildirfolder`` marker, a
``dovecot-uidlist`` with a fresh UIDVALIDITY) and renamed into place, so nobody sees a
half-made one; a deleted folder is renamed into ``tmp/`` before its files are removed.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from twisted.logger import Logger
from zope.interface import implementer

from mailserv.backends.kit.names import Creation, Hierarchy
from mailserv.backends.maildir import acl, uidvalidity
from mailserv.backends.maildir.dotlock import DotLock
from mailserv.backends.maildir.files import TMP, make_maildir
from mailserv.backends.maildir.mailbox import MaildirMailbox
from mailserv.backends.maildir.names import (
    check_name,
    decode_subscriptions,
    encode_subscriptions,
    folder_dir,
    folder_name,
)
from mailserv.backends.maildir.perms import PRIVATE, Permissions
from mailserv.backends.maildir.uidlist import UidList
from mailserv.errors import (
    MailboxExists,
    MailboxNotFound,
)
from mailserv.interfaces import (
    INBOX,
    NOSELECT,
    AppendResult,
    IAccount,
    IAclAccount,
    IMailboxIdAccount,
    IMultiAppendAccount,
    MailboxInfo,
    NewMessage,
    SharedEntry,
)

if TYPE_CHECKING:
    from mailserv.backends.maildir.backend import Services

_log = Logger()

_NOSELECT = frozenset({NOSELECT})
SPECIAL_USE_FILE = "mailserv-special-use"
"""In a folder: its special-use attribute (CREATE ... USE), moved along by RENAME."""
SUBSCRIPTIONS = "subscriptions"


@implementer(IAccount, IMultiAppendAccount, IMailboxIdAccount, IAclAccount)
class MaildirAccount:
    def __init__(self, services: Services, user: str, root: str) -> None:
        self.services = services
        self.user = user
        self.root = root
        self.sessions = 0
        self.perms: Permissions = PRIVATE
        self._boxes: dict[str, MaildirMailbox] = {}

    # -- set-up -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Make the root and INBOX; on the very first login also the special-use folders."""
        first = not os.path.isdir(os.path.join(self.root, "cur"))
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.perms = Permissions.of(self.root)
        make_maildir(self.root, folder=False, perms=self.perms)
        if not first or not self.services.settings.autocreate:
            return
        for attribute, name in self.services.settings.special.items():
            try:
                plan = self._hierarchy().create(name)
            except MailboxExists:
                continue
            self._carry_out(plan, attribute)

    def allocate_uidvalidity(self) -> int:
        return uidvalidity.allocate(self.root, self.perms)

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, folder_dir(name))

    def _hierarchy(self) -> Hierarchy:
        return Hierarchy(self._folders(), check_name)

    def _folders(self) -> dict[str, bool]:
        """Every folder with a directory of its own, and whether it is selectable."""
        found = {}
        with os.scandir(self.root) as it:
            for item in it:
                if item.name.startswith(".") and item.is_dir():
                    name = folder_name(item.name)
                    if name is not None:
                        found[name] = os.path.isdir(os.path.join(item.path, "cur"))
        return found

    # -- hierarchy ----------------------------------------------------------------------

    async def list_mailboxes(self) -> list[MailboxInfo]:
        return self._hierarchy().listing(self._attributes)

    def _attributes(self, name: str) -> frozenset[str]:
        found = {
            attr for attr, special in self.services.settings.special.items() if special == name
        }
        if name != INBOX:
            try:
                with open(os.path.join(self._dir(name), SPECIAL_USE_FILE), encoding="utf-8") as f:
                    marked = f.read(64).strip()
            except OSError:
                marked = ""
            if marked.startswith("\\") and marked[1:].isalpha():
                found.add(marked)
        return frozenset(found)

    async def create(self, name: str, special_use: str | None = None) -> None:
        self._carry_out(self._hierarchy().create(name), special_use)

    def _carry_out(self, plan: Creation, special_use: str | None) -> None:
        """Missing parents become mailboxes too; a \\Noselect parent stays one."""
        for parent in plan.parents:
            self._make(parent, None)
        self._make(plan.name, special_use)

    def _make(self, name: str, special_use: str | None) -> None:
        staging = os.path.join(self.root, TMP, f"create.{secrets.token_hex(8)}")
        self.perms.mkdir(staging)
        try:
            make_maildir(staging, folder=True, perms=self.perms)
            uidlist = UidList(staging, self.services.settings.fsync, self.perms)
            with uidlist.lock() as lock:
                uidlist.create(lock, self.allocate_uidvalidity())
            if special_use:
                with open(os.path.join(staging, SPECIAL_USE_FILE), "w", encoding="utf-8") as f:
                    self.perms.apply_fd(f.fileno())
                    f.write(special_use + "\n")
            try:
                # Over an empty \\Noselect placeholder directory, too.
                os.rename(staging, self._dir(name))
            except OSError as exc:
                raise MailboxExists(name) from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    async def delete(self, name: str) -> None:
        plan = self._hierarchy().delete(name)
        box = self._boxes.pop(name, None)
        if box is not None:
            await box.vanish()
        directory = self._dir(name)
        doomed = os.path.join(self.root, TMP, f"deleted.{secrets.token_hex(8)}")
        try:
            os.rename(directory, doomed)
        except FileNotFoundError:
            raise MailboxNotFound(name) from None
        if plan.keep:
            self.perms.mkdir(directory)  # the name stays, as \\Noselect
        d = self.services.io.run(shutil.rmtree, doomed, True)
        d.addErrback(lambda f: _log.failure("Removing {path} failed", f, path=doomed))

    async def rename(self, old: str, new: str) -> None:
        """Folders move with their inferiors; UIDs and UIDVALIDITY move with them."""
        plan = self._hierarchy().rename(old, new)
        if plan.inbox is not None:
            await self._rename_inbox(new)
            return
        boxes = {name: self._boxes.pop(name) for name, _ in plan.moves if name in self._boxes}
        for box in boxes.values():
            await box.suspend()
        for name, target in plan.moves:
            os.rename(self._dir(name), self._dir(target))
            moved = boxes.get(name)
            if moved is not None:
                moved.relocate(target, self._dir(target))
                self._boxes[target] = moved
        for parent in plan.parents:
            self._make(parent, None)

    async def _rename_inbox(self, new: str) -> None:
        """RFC 3501 6.3.5: the messages move to a new mailbox; INBOX stays, empty."""
        await self.create(new)
        inbox = await self.open(INBOX)
        uids = await inbox.uids()
        if uids:
            await inbox.move(uids, new, None)

    # -- subscriptions --------------------------------------------------------------------

    async def subscriptions(self) -> list[str]:
        return self._subscriptions()

    def _subscriptions(self) -> list[str]:
        try:
            with open(os.path.join(self.root, SUBSCRIPTIONS), "rb") as f:
                return sorted(set(decode_subscriptions(f.read())))
        except FileNotFoundError:
            return []

    async def subscribe(self, name: str) -> None:
        self._edit_subscriptions(lambda names: names | {name})

    async def unsubscribe(self, name: str) -> None:
        self._edit_subscriptions(lambda names: names - {name})

    def _edit_subscriptions(self, change: Callable[[set[str]], set[str]]) -> None:
        path = os.path.join(self.root, SUBSCRIPTIONS)
        with DotLock(path, perms=self.perms) as lock:
            before = set(self._subscriptions())
            after = change(before)
            if after != before:
                lock.replace(encode_subscriptions(after), self.services.settings.fsync)

    # -- mailboxes ------------------------------------------------------------------------

    async def append_many(
        self, name: str, batch: Sequence[NewMessage], origin: object
    ) -> list[AppendResult]:
        return await (await self.open(name)).append_many(batch, origin)

    async def open(self, name: str) -> MaildirMailbox:
        """The shared mailbox object, loaded; every session gets the same event stream."""
        check_name(name)
        box = self._boxes.get(name)
        if box is None or box.closed:
            directory = self._dir(name)
            if name == INBOX:
                make_maildir(directory, folder=False, perms=self.perms)
            elif not os.path.isdir(os.path.join(directory, "cur")):
                self._hierarchy().opening(name)  # raises: \\Noselect or not there
                raise MailboxNotFound(name)  # gone since
            box = MaildirMailbox(self, name, directory)
            self._boxes[name] = box
        try:
            await box.ensure_loaded()
        except FileNotFoundError:
            # Deleted or renamed by another process between the check and the load.
            if os.path.isdir(os.path.join(box.directory, "cur")):
                raise
            self.forget(box)
            raise MailboxNotFound(name) from None
        return box

    def forget(self, box: MaildirMailbox) -> None:
        """A mailbox whose directory vanished is not handed out again."""
        if self._boxes.get(box.name) is box:
            del self._boxes[box.name]

    async def close(self) -> None:
        """A session ended; the backend releases the account after the last one."""
        self.services.release(self)

    # -- IAclAccount: Dovecot's dovecot-acl files (mailserv.backends.maildir.acl) --------

    def _existing_dir(self, name: str) -> str:
        check_name(name)
        directory = self._dir(name)
        if name != INBOX and not os.path.isdir(os.path.join(directory, "cur")):
            self._hierarchy().opening(name)  # raises: \\Noselect or not there
            raise MailboxNotFound(name)
        return directory

    async def get_acl(self, name: str) -> dict[str, str]:
        return acl.read_acl(self._existing_dir(name))

    async def set_acl(self, name: str, identifier: str, rights: str) -> None:
        fsync = self.services.settings.fsync
        if acl.write_acl(self._existing_dir(name), identifier, rights, self.perms, fsync):
            acl.add_owner(self.services.data_dir, self.user, fsync)

    async def other_account(self, owner: str) -> MaildirAccount | None:
        """The other user's account, held as a session holds it (until its ``close``)."""
        return await self.services.other(owner)

    async def shared_mailboxes(self, user: str) -> list[SharedEntry]:
        """The lists of the users who ever shared a mailbox, read folder by folder."""
        found = []
        for owner in acl.owners(self.services.data_dir):
            theirs = None if owner == self.user else await self.other_account(owner)
            if theirs is None:
                continue
            try:
                for name, selectable in [(INBOX, True), *theirs._folders().items()]:
                    entries = acl.read_acl(theirs._dir(name)) if selectable else {}
                    if acl.names_user(entries, user):
                        found.append(SharedEntry(owner, name, entries))
            finally:
                await theirs.close()
        return found

    async def shutdown(self) -> None:
        """Shut every open mailbox down; one that fails does not keep the others open."""
        boxes, self._boxes = list(self._boxes.values()), {}
        for box in boxes:
            try:
                await box.shutdown()
            except Exception:  # noqa: BLE001 - logged; the others still close
                _log.failure("Shutting down {name} failed", name=box.name)
