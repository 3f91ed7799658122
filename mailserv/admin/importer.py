"""``mailserv import``: messages from a source appended to a user's account, in batches.

Exactly once across interruptions: before a batch is appended, a ``batch`` record (target
folder, its UIDVALIDITY and UIDNEXT, each message's source key and SHA-256) is fsynced to
the state file; a ``done`` record follows once the backend has stored it.  A second run
skips every key of a done batch; for a batch left without ``done`` it looks at the folder's
messages from that UIDNEXT on and counts as imported those whose content hash matches, so
whether the interruption came before, during or after the append, nothing is lost or doubled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailserv.admin.mailstore import MailStore
from mailserv.admin.transfer import Progress, SourceMessage, StateLog, digest
from mailserv.errors import MailboxExists
from mailserv.interfaces import INBOX, IAccount, IMultiAppendAccount, NewMessage

BATCH_MESSAGES = 200
BATCH_BYTES = 16 * 1024 * 1024


@dataclass
class ImportCounts:
    imported: int = 0
    skipped: int = 0
    recovered: int = 0
    folders: set[str] = field(default_factory=set)


def target_folder(prefix: str | None, folder: str) -> str:
    """Where a source folder goes: under ``--folder`` when given (its INBOX is the folder)."""
    if not prefix:
        return folder
    return prefix if folder == INBOX else f"{prefix}/{folder}"


async def _status(account: IAccount, name: str) -> tuple[int, int]:
    status = await (await account.open(name)).status()
    return status.uidvalidity, status.uidnext


async def _append(account: IAccount, name: str, messages: Sequence[NewMessage]) -> None:
    if IMultiAppendAccount.providedBy(account):
        await IMultiAppendAccount(account).append_many(name, messages, _ORIGIN)
        return
    mailbox = await account.open(name)
    for message in messages:
        await mailbox.append(message.message, message.flags, message.internaldate, _ORIGIN)


async def _hashes_from(account: IAccount, name: str, uidnext: int) -> list[str]:
    mailbox = await account.open(name)
    uids = [uid for uid in await mailbox.uids() if uid >= uidnext]
    return [digest(await mailbox.content(uid)) for uid in uids]


async def _names(account: IAccount) -> set[str]:
    return {info.name for info in await account.list_mailboxes()}


async def _ensure(account: IAccount, name: str) -> None:
    if name != INBOX and name not in await _names(account):
        try:
            await account.create(name)
        except MailboxExists:
            pass


class _Origin:
    """The token this command's appends carry (no session of the server has it)."""


_ORIGIN = _Origin()


class Importer:
    def __init__(
        self,
        store: MailStore,
        state: StateLog,
        prefix: str | None,
        progress: Progress,
        measure: Callable[[SourceMessage], int],
    ) -> None:
        self.store = store
        self.state = state
        self.prefix = prefix
        self.progress = progress
        self.measure = measure
        self.counts = ImportCounts()
        self.done: set[str] = set()
        self._ready: set[str] = set()
        self._batch: list[SourceMessage] = []
        self._batch_bytes = 0
        self._batch_folder = ""

    def resume(self) -> None:
        """Read the state file; settle a batch an interruption left without ``done``."""
        pending: dict[str, Any] | None = None
        for record in self.state.records():
            if "batch" in record:
                pending = record["batch"]
            elif "done" in record and pending is not None:
                self.done.update(key for key, _ in pending["items"])
                pending = None
            elif "keys" in record:
                self.done.update(record["keys"])
        if pending is not None:
            self._settle(pending)

    def _settle(self, pending: dict[str, Any]) -> None:
        name = pending["folder"]
        if name != INBOX and name not in self.store.call(_names, self.store.account):
            self.state.write({"keys": []})
            return
        uidvalidity, _ = self.store.call(_status, self.store.account, name)
        found: Counter[str] = Counter()
        if uidvalidity == pending["uidvalidity"]:
            found.update(
                self.store.call(_hashes_from, self.store.account, name, pending["uidnext"])
            )
        keys = []
        for key, sha in pending["items"]:
            if found[sha] > 0:
                found[sha] -= 1
                keys.append(key)
        self.state.write({"keys": keys})
        self.done.update(keys)
        self.counts.recovered = len(keys)

    def run(self, source: Iterable[SourceMessage]) -> ImportCounts:
        self.resume()
        for message in source:
            if message.key in self.done:
                self.counts.skipped += 1
                self.progress.advance(self.measure(message))
                continue
            folder = target_folder(self.prefix, message.folder)
            if self._batch and (
                folder != self._batch_folder
                or len(self._batch) >= BATCH_MESSAGES
                or self._batch_bytes + len(message.data) > BATCH_BYTES
            ):
                self.flush()
            self._batch_folder = folder
            self._batch.append(message)
            self._batch_bytes += len(message.data)
        self.flush()
        return self.counts

    def flush(self) -> None:
        batch, name = self._batch, self._batch_folder
        if not batch:
            return
        account = self.store.account
        if name not in self._ready:
            self.store.call(_ensure, account, name)
            self._ready.add(name)
        uidvalidity, uidnext = self.store.call(_status, account, name)
        items = [[message.key, digest(message.data)] for message in batch]
        self.state.write(
            {
                "batch": {
                    "folder": name,
                    "uidvalidity": uidvalidity,
                    "uidnext": uidnext,
                    "items": items,
                }
            }
        )
        messages = [NewMessage(m.data, m.flags, m.internaldate) for m in batch]
        self.store.call(_append, account, name, messages)
        self.state.write({"done": 1})
        self.done.update(message.key for message in batch)
        self.counts.imported += len(batch)
        self.counts.folders.add(name)
        self.progress.advance(sum(map(self.measure, batch)))
        self._batch, self._batch_bytes = [], 0
