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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from twisted.logger import Logger
from zope.interface import implementer

from mailserv.backends.maildir import uidvalidity
from mailserv.backends.maildir.disk import TMP, make_maildir
from mailserv.backends.maildir.dotlock import DotLock
from mailserv.backends.maildir.mailbox import MaildirMailbox
from mailserv.backends.maildir.names import (
    ancestors,
    check_name,
    decode_subscriptions,
    encode_subscriptions,
    folder_dir,
    folder_name,
)
from mailserv.backends.maildir.perms import PRIVATE, Permissions
from mailserv.backends.maildir.uidlist import UidList
from mailserv.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MailboxNotSelectable,
)
from mailserv.interfaces import DELIMITER, INBOX, NOSELECT, IAccount, MailboxInfo

if TYPE_CHECKING:
    from mailserv.backends.maildir.backend import Services

_log = Logger()

_NOSELECT = frozenset({NOSELECT})
SPECIAL_USE_FILE = "mailserv-special-use"
"""In a folder: its special-use attribute (CREATE ... USE), moved along by RENAME."""
SUBSCRIPTIONS = "subscriptions"


@implementer(IAccount)
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
        folders = self._folders()
        for attribute, name in self.services.settings.special.items():
            if not folders.get(name):
                self._make_with_parents(name, attribute, folders)

    def allocate_uidvalidity(self) -> int:
        return uidvalidity.allocate(self.root, self.perms)

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, folder_dir(name))

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
        folders = self._folders()
        infos = [MailboxInfo(INBOX, self._attributes(INBOX))]
        infos += [
            MailboxInfo(name, self._attributes(name) if selectable else _NOSELECT)
            for name, selectable in folders.items()
        ]
        implied = {parent for name in folders for parent in ancestors(name)}
        infos += [MailboxInfo(name, _NOSELECT) for name in implied - folders.keys() - {INBOX}]
        return sorted(infos, key=lambda info: info.name)

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
        """A trailing delimiter only announces future children (RFC 3501 6.3.3)."""
        name = check_name(name.removesuffix(DELIMITER))
        folders = self._folders()
        if name == INBOX or folders.get(name):
            raise MailboxExists(name)
        self._make_with_parents(name, special_use, folders)

    def _make_with_parents(
        self, name: str, special_use: str | None, folders: dict[str, bool]
    ) -> None:
        """Missing parents become mailboxes too; a \\Noselect parent stays one."""
        for parent in ancestors(name):
            if parent != INBOX and parent not in folders:
                self._make(parent, None)
                folders[parent] = True
        self._make(name, special_use)
        folders[name] = True

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
        if name == INBOX:
            raise InvalidMailboxName("INBOX cannot be deleted")
        check_name(name)
        folders = self._folders()
        children = self._has_children(name, folders)
        if not folders.get(name):
            if children:
                raise MailboxHasChildren(name)
            if name not in folders:
                raise MailboxNotFound(name)
        box = self._boxes.pop(name, None)
        if box is not None:
            await box.vanish()
        directory = self._dir(name)
        doomed = os.path.join(self.root, TMP, f"deleted.{secrets.token_hex(8)}")
        try:
            os.rename(directory, doomed)
        except FileNotFoundError:
            raise MailboxNotFound(name) from None
        if children:
            self.perms.mkdir(directory)  # the name stays, as \\Noselect
        d = self.services.io.run(shutil.rmtree, doomed, True)
        d.addErrback(lambda f: _log.failure("Removing {path} failed", f, path=doomed))

    async def rename(self, old: str, new: str) -> None:
        """Folders move with their inferiors; UIDs and UIDVALIDITY move with them."""
        new = check_name(new)
        check_name(old)
        folders = self._folders()
        if new == INBOX or new in folders or self._has_children(new, folders):
            raise MailboxExists(new)
        if old == INBOX:
            await self._rename_inbox(new)
            return
        moving = sorted(f for f in folders if f == old or f.startswith(old + DELIMITER))
        if not moving:
            raise MailboxNotFound(old)
        if new.startswith(old + DELIMITER):
            raise InvalidMailboxName(f"{new} is inside {old}")
        boxes = {name: self._boxes.pop(name) for name in moving if name in self._boxes}
        for box in boxes.values():
            await box.suspend()
        for name in moving:
            target = new + name[len(old) :]
            os.rename(self._dir(name), self._dir(target))
            moved = boxes.get(name)
            if moved is not None:
                moved.relocate(target, self._dir(target))
                self._boxes[target] = moved
        folders = self._folders()
        for parent in ancestors(new):
            if parent != INBOX and parent not in folders:
                self._make(parent, None)
                folders[parent] = True

    async def _rename_inbox(self, new: str) -> None:
        """RFC 3501 6.3.5: the messages move to a new mailbox; INBOX stays, empty."""
        await self.create(new)
        inbox = await self.open(INBOX)
        uids = await inbox.uids()
        if uids:
            await inbox.move(uids, new, None)

    def _has_children(self, name: str, folders: Iterable[str]) -> bool:
        prefix = name + DELIMITER
        return any(f.startswith(prefix) for f in folders)

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

    async def open(self, name: str) -> MaildirMailbox:
        """The shared mailbox object, loaded; every session gets the same event stream."""
        check_name(name)
        box = self._boxes.get(name)
        if box is None or box.closed:
            directory = self._dir(name)
            if name == INBOX:
                make_maildir(directory, folder=False, perms=self.perms)
            elif not os.path.isdir(os.path.join(directory, "cur")):
                folders = self._folders()
                if name in folders or self._has_children(name, folders):
                    raise MailboxNotSelectable(name)
                raise MailboxNotFound(name)
            box = MaildirMailbox(self, name, directory)
            self._boxes[name] = box
        await box.ensure_loaded()
        return box

    def forget(self, box: MaildirMailbox) -> None:
        """A mailbox whose directory vanished is not handed out again."""
        if self._boxes.get(box.name) is box:
            del self._boxes[box.name]

    async def close(self) -> None:
        """A session ended; the backend releases the account after the last one."""
        self.services.release(self)

    async def shutdown(self) -> None:
        boxes, self._boxes = list(self._boxes.values()), {}
        for box in boxes:
            await box.shutdown()
