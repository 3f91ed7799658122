"""``mailserv export``: a user's folders written to a Maildir tree (Maildir++, or Dovecot's
``LAYOUT=fs``: :mod:`mailserv.admin.maildirs`) or to mbox files (``DIR/INBOX.mbox``,
``DIR/Sub/Folder.mbox``), a batch of messages in memory at a time.

Resumable: after each batch the state file records, per folder, its UIDVALIDITY, the last
UID written and (mbox) the file's length then.  A second run goes on after that UID; an
mbox file is first cut back to the recorded length, and a Maildir file written again gets
the name it had, so nothing is doubled.  A folder whose UIDVALIDITY changed starts over.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, BinaryIO

from mailserv.admin import mbox
from mailserv.admin.maildirs import MAILDIR_PLUS_PLUS, MaildirWriter
from mailserv.admin.mailstore import MailStore
from mailserv.admin.transfer import Progress, StateLog, TransferError
from mailserv.interfaces import DELIMITER, INBOX, NOSELECT, IAccount, MessageMeta

BATCH = 200
FORMATS = ("maildir", "mbox")


async def _folders(account: IAccount) -> list[tuple[str, int, int]]:
    """(name, UIDVALIDITY, messages) of every selectable folder, INBOX first."""
    found = []
    for info in await account.list_mailboxes():
        if NOSELECT in info.attributes:
            continue
        status = await (await account.open(info.name)).status()
        found.append((info.name, status.uidvalidity, status.messages))
    return sorted(found, key=lambda folder: (folder[0] != INBOX, folder[0]))


async def _uids(account: IAccount, name: str) -> Sequence[int]:
    return await (await account.open(name)).uids()


async def _messages(
    account: IAccount, name: str, uids: Sequence[int]
) -> list[tuple[MessageMeta, bytes]]:
    mailbox = await account.open(name)
    found = []
    for meta in await mailbox.fetch(uids):
        try:
            found.append((meta, await mailbox.content(meta.uid)))
        except KeyError:
            continue  # expunged meanwhile
    return found


def mbox_path(root: str, folder: str) -> str:
    parts = folder.split(DELIMITER)
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise TransferError(f"folder {folder!r} cannot be written as an mbox file name")
    return os.path.join(root, *parts) + mbox.SUFFIX


class Exporter:
    """``layout``: the Maildir layout (``maildir++`` or ``fs``) with ``fmt`` maildir."""

    def __init__(
        self,
        store: MailStore,
        root: str,
        fmt: str,
        state: StateLog,
        quiet: bool,
        layout: str = MAILDIR_PLUS_PLUS,
    ) -> None:
        self.store = store
        self.root = root
        self.fmt = fmt
        self.layout = layout
        self.state = state
        self.quiet = quiet
        self.written = 0
        self.skipped = 0

    def _resume(self) -> dict[str, dict[str, Any]]:
        return {record["folder"]: record for record in self.state.records() if "folder" in record}

    def run(self) -> int:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        account = self.store.account
        folders = self.store.call(_folders, account)
        done = self._resume()
        progress = Progress(sum(f[2] for f in folders), "msg", self.quiet, "export")
        try:
            for name, uidvalidity, _ in folders:
                prior = done.get(name)
                if prior is not None and not self._still_there(name, uidvalidity, prior):
                    prior = None
                uids = self.store.call(_uids, account, name)
                after = prior["uid"] if prior else 0
                left = [uid for uid in uids if uid > after]
                self.skipped += len(uids) - len(left)
                progress.advance(len(uids) - len(left))
                self._folder(name, uidvalidity, left, prior["offset"] if prior else 0, progress)
        finally:
            progress.close()
        return self.written

    def _still_there(self, name: str, uidvalidity: int, prior: dict[str, Any]) -> bool:
        """Whether what the state file says was written is still there to go on from: the
        same UIDVALIDITY, and the mbox file at least as long (or the Maildir folder there)."""
        if prior["uidvalidity"] != uidvalidity:
            return False
        if self.fmt == "mbox":
            path = mbox_path(self.root, name)
            return os.path.exists(path) and os.path.getsize(path) >= prior["offset"]
        return os.path.isdir(os.path.join(self._writer().path(name), "cur"))

    def _writer(self) -> MaildirWriter:
        return MaildirWriter(self.root, self.layout)

    def _folder(
        self, name: str, uidvalidity: int, uids: Sequence[int], offset: int, progress: Progress
    ) -> None:
        account = self.store.account
        handle: BinaryIO | None = None
        writer = self._writer()
        directory = ""
        if self.fmt == "mbox":
            handle = mbox.open_for_append(mbox_path(self.root, name), offset)
        else:
            directory = writer.directory(name)
        try:
            for low in range(0, len(uids), BATCH):
                batch = self.store.call(_messages, account, name, uids[low : low + BATCH])
                for meta, data in batch:
                    if handle is not None:
                        handle.write(mbox.entry(data, meta.flags, meta.internaldate))
                    else:
                        writer.write(
                            directory, uidvalidity, meta.uid, data, meta.flags, meta.internaldate
                        )
                if handle is not None:
                    handle.flush()
                    os.fsync(handle.fileno())
                self.state.write(
                    {
                        "folder": name,
                        "uidvalidity": uidvalidity,
                        "uid": uids[min(low + BATCH, len(uids)) - 1],
                        "offset": handle.tell() if handle is not None else 0,
                    }
                )
                self.written += len(batch)
                progress.advance(min(BATCH, len(uids) - low))
        finally:
            if handle is not None:
                handle.close()
