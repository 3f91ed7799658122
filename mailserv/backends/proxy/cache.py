"""Caches: message bytes in memory (least recently used out first, within a byte budget),
parsed messages on disk, and a user's parsed messages in memory in front of the disk."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import tempfile
from collections import OrderedDict
from collections.abc import Container, Hashable, Iterable

from twisted.logger import Logger

from mailserv.message import store
from mailserv.message.info import MessageInfo

_log = Logger()


class ContentCache:
    """Shared by every user of a backend; keys carry user, mailbox, UIDVALIDITY and UID."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: Hashable, data: bytes) -> None:
        """Keep ``data`` unless it would take more than a quarter of the budget."""
        if len(data) * 4 > self.budget:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.used -= len(old)
        self._items[key] = data
        self.used += len(data)
        while self.used > self.budget and self._items:
            _, dropped = self._items.popitem(last=False)
            self.used -= len(dropped)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def clear(self) -> None:
        self._items.clear()
        self.used = 0


class InfoStore:
    """Parsed messages (``MessageInfo``) on disk, one append-only file per mailbox and
    UIDVALIDITY, so a mailbox is parsed once, not once per login or restart.

    Records are ``uid, length`` (little-endian u32 each) and ``mailserv.message.store``
    bytes.  Names are hashed: the files reveal neither users nor mailboxes, and the
    directory is private (0700, files 0600).  A file for an older UIDVALIDITY of the same
    mailbox is removed when the new one is opened; unreadable records end the reading.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, user: str, mailbox: str, uidvalidity: int) -> tuple[str, str]:
        folder = os.path.join(self.directory, _digest(user))
        return folder, os.path.join(folder, f"{_digest(mailbox)}.{uidvalidity}")

    def load(
        self, user: str, mailbox: str, uidvalidity: int, wanted: Container[int]
    ) -> dict[int, MessageInfo]:
        """The stored infos of UIDs in ``wanted``; rewrites the file when mostly stale."""
        folder, path = self._path(user, mailbox, uidvalidity)
        prefix = os.path.basename(path).rsplit(".", 1)[0] + "."
        try:
            for name in os.listdir(folder):
                if name.startswith(prefix) and os.path.join(folder, name) != path:
                    os.unlink(os.path.join(folder, name))
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            return {}
        found: dict[int, MessageInfo] = {}
        kept: list[tuple[int, bytes]] = []
        total = 0
        pos = 0
        while pos + _HEAD.size <= len(data):
            uid, length = _HEAD.unpack_from(data, pos)
            record = data[pos + _HEAD.size : pos + _HEAD.size + length]
            if len(record) != length:
                break
            pos += _HEAD.size + length
            total += 1
            if uid not in wanted:
                continue
            try:
                found[uid] = store.loads(record)
            except store.UnknownFormat:
                continue
            kept.append((uid, record))
        if total > 2 * len(kept) + 100:
            self._rewrite(folder, path, kept)
        return found

    def save(
        self, user: str, mailbox: str, uidvalidity: int, items: Iterable[tuple[int, MessageInfo]]
    ) -> None:
        records = [(uid, store.dumps(info)) for uid, info in items]
        if not records:
            return
        folder, path = self._path(user, mailbox, uidvalidity)
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as handle:
                handle.write(b"".join(_HEAD.pack(uid, len(blob)) + blob for uid, blob in records))
        except OSError as exc:
            _log.warn("Cannot write the proxy cache {path}: {error}", path=path, error=exc)

    def _rewrite(self, folder: str, path: str, kept: list[tuple[int, bytes]]) -> None:
        """Replace the file by one of ``kept`` records.  Under ``--workers N`` other
        processes may append or compact meanwhile: each compaction writes a file of its own
        and renames it in, so no file is ever written by two; records appended to the old
        file meanwhile are lost from the cache (they are parsed again when next wanted)."""
        try:
            fd, temporary = tempfile.mkstemp(".new", f".{os.path.basename(path)}.", folder)
        except OSError as exc:
            _log.warn("Cannot compact the proxy cache {path}: {error}", path=path, error=exc)
            return
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(b"".join(_HEAD.pack(uid, len(blob)) + blob for uid, blob in kept))
            os.replace(temporary, path)
        except OSError as exc:
            _log.warn("Cannot compact the proxy cache {path}: {error}", path=path, error=exc)
            with contextlib.suppress(OSError):
                os.unlink(temporary)


class InfoCache:
    """One user's parsed messages by (mailbox, UIDVALIDITY): in memory, and in ``disk``
    when the backend keeps them there."""

    def __init__(self, username: str, disk: InfoStore | None) -> None:
        self.username = username
        self.disk = disk
        self._known: dict[tuple[str, int], dict[int, MessageInfo]] = {}

    def of(self, name: str, uidvalidity: int) -> dict[int, MessageInfo]:
        return self._known.setdefault((name, uidvalidity), {})

    def load(self, name: str, uidvalidity: int, uids: Container[int]) -> dict[int, MessageInfo]:
        """The in-memory cache of a mailbox, completed from disk for ``uids``."""
        known = self.of(name, uidvalidity)
        if self.disk is not None:
            for uid, info in self.disk.load(self.username, name, uidvalidity, uids).items():
                known.setdefault(uid, info)
        return known

    def remember(self, name: str, uidvalidity: int, items: list[tuple[int, MessageInfo]]) -> None:
        """Parsed messages: kept in memory and written to the disk cache."""
        self.of(name, uidvalidity).update(items)
        if self.disk is not None:
            self.disk.save(self.username, name, uidvalidity, items)


_HEAD = struct.Struct("<II")


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
