"""``dovecot-uidlist``: the UIDs of a maildir, shared with Dovecot (format version 3).

::

    3 V1700000000 N42 G0a1b...      header: UIDVALIDITY, next UID, mailbox GUID
    1 :1700000000.M1P2.host,S=10,W=12
    2 W1432 :1700000001.M5P2.host   extension fields may precede the ":<base>"

Writers hold ``dovecot-uidlist.lock``.  New records are appended (the header's N is then
behind; the next UID is the larger of N and the last UID + 1); a rewrite goes through the
lock file and a rename.  Readers keep their offset and parse only what was appended since,
and start over when the file was replaced (a new inode) or shrank.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable
from operator import methodcaller

from twisted.logger import Logger

from mailserv.backends.maildir import filenames
from mailserv.backends.maildir.dotlock import DotLock
from mailserv.backends.maildir.perms import PRIVATE, Permissions

_log = Logger()

FILENAME = "dovecot-uidlist"
VERSION = 3
PIECE = 200_000
"""Characters of the list parsed between two chances for other threads to run."""


class UidList:
    """One mailbox's list.  Not thread-safe: used by one task at a time (the mailbox lane)."""

    def __init__(self, directory: str, fsync: bool, perms: Permissions = PRIVATE) -> None:
        self.path = os.path.join(directory, FILENAME)
        self.fsync = fsync
        self.perms = perms
        self.uidvalidity = 0
        self.guid = ""
        self.records: dict[str, int] = {}  # base -> uid
        self.exists = False
        self._header_next = 1
        self._last_uid = 0
        self._signature: tuple[int, int] | None = None  # (inode, size) last read
        self._offset = 0
        self._header_line = ""

    @property
    def next_uid(self) -> int:
        return max(self._header_next, self._last_uid + 1)

    def lock(self) -> DotLock:
        return DotLock(self.path, perms=self.perms)

    # -- reading ------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Catch up with the file; True when anything changed."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            changed = self.exists
            self._reset()
            return changed
        try:
            st = os.fstat(fd)
            if self._signature == (st.st_ino, st.st_size):
                return False
            if not self._continues(fd, st):
                self._reset()
            data = os.pread(fd, max(st.st_size - self._offset, 0), self._offset)
        finally:
            os.close(fd)
        self.exists = True
        end = data.rfind(b"\n") + 1  # a half-written last line waits for the next read
        self._parse(data[:end])
        self._offset += end
        self._signature = (st.st_ino, st.st_size if end == len(data) else -1)
        return True

    def _continues(self, fd: int, st: os.stat_result) -> bool:
        """Whether the file is the one read so far with lines appended (not a new one)."""
        if self._signature is None or st.st_ino != self._signature[0]:
            return False
        if st.st_size < self._offset:
            return False
        head = self._header_line.encode("utf-8", "surrogateescape")
        return os.pread(fd, len(head), 0) == head

    def _reset(self) -> None:
        self.exists = False
        self.uidvalidity = 0
        self.guid = ""
        self.records = {}
        self._header_next = 1
        self._last_uid = 0
        self._signature = None
        self._offset = 0
        self._header_line = ""

    def _parse(self, data: bytes) -> None:
        text = data.decode("utf-8", "surrogateescape")
        if self._offset == 0 and text and not text.startswith("\n"):
            header, _, text = text.partition("\n")
            self._parse_header(header)
            self._header_line = header + "\n"
        start = 0
        while start < len(text):  # in pieces, letting other threads run in between
            end = text.find("\n", start + PIECE) + 1 or len(text)
            piece = text[start:end]
            if not self._parse_plain(piece):
                self._parse_lines(text[start:].split("\n"))
                return
            start = end
            if start < len(text):
                time.sleep(0)

    def _parse_plain(self, text: str) -> bool:
        """Records all of the plain form ``<uid> :<base>`` (ours and Dovecot's, with no
        colon in the base), whole lines, read with no Python work per line (a 100k list
        at a mailbox's first load); False, having read nothing, for anything else."""
        lines = text.split("\n")
        del lines[-1]  # "" after the last line's end
        if text.count(" :") != len(lines) or set(map(methodcaller("count", ":"), lines)) != {1}:
            return False
        parts = text.replace(" :", "\n").split("\n")
        uids, bases = parts[0:-1:2], parts[1::2]
        digits = "".join(uids)
        if not (digits.isascii() and digits.isdigit()) or "" in uids or "" in bases:
            return False
        numbers = list(map(int, uids))
        self.records.update(zip(bases, numbers, strict=True))
        self._last_uid = max(self._last_uid, max(numbers))
        return True

    def _parse_lines(self, lines: list[str]) -> None:
        records = self.records
        last = self._last_uid
        for line in lines:
            uid_text, _, rest = line.partition(" ")
            if not uid_text.isdigit():
                continue
            colon = rest.find(":")
            name = rest[colon + 1 :] if colon >= 0 else rest.rpartition(" ")[2]
            if not name:
                continue
            uid = int(uid_text)
            records[filenames.split(name)[0]] = uid
            if uid > last:
                last = uid
        self._last_uid = last

    def _parse_header(self, line: str) -> None:
        fields = line.split()
        if fields[0] == "1" and len(fields) >= 3:  # version 1: "1 <uidvalidity> <next>"
            self.uidvalidity, self._header_next = _int(fields[1]), _int(fields[2])
            return
        for field in fields[1:]:
            key, value = field[:1], field[1:]
            if key == "V":
                self.uidvalidity = _int(value)
            elif key == "N":
                self._header_next = max(_int(value), 1)
            elif key == "G":
                self.guid = value

    # -- writing (the caller holds the lock and has refreshed under it) -----------------

    def create(self, lock: DotLock, uidvalidity: int) -> None:
        """A new, empty list; releases ``lock``."""
        self._reset()
        self.uidvalidity = uidvalidity
        self.guid = secrets.token_hex(16)
        lock.replace(self._header().encode(), self.fsync)
        self.refresh()

    def add(self, bases: Iterable[str], sync: bool = True) -> list[int]:
        """Give each base the next UID and append the records; the new UIDs.

        ``sync=False`` leaves the fsync to a later :meth:`sync` (one journal commit can
        then cover the records and the renames that follow them)."""
        self.refresh()
        lines = []
        uids = []
        uid = self.next_uid
        for base in bases:
            lines.append(f"{uid} :{base}\n")
            uids.append(uid)
            uid += 1
        if not lines:
            return uids
        data = "".join(lines).encode("utf-8", "surrogateescape")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # end a line a crashed writer left half-written
            os.write(fd, data)
            if self.fsync and sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self.refresh()
        return uids

    def sync(self) -> None:
        """fsync the file (when fsync is configured)."""
        if self.fsync:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def rewrite(self, lock: DotLock, live: Iterable[str]) -> None:
        """Drop records of bases not in ``live`` (expunged files); releases ``lock``."""
        keep = set(live)
        body = [
            f"{uid} :{base}\n"
            for base, uid in sorted(self.records.items(), key=lambda item: item[1])
            if base in keep
        ]
        data = (self._header() + "".join(body)).encode("utf-8", "surrogateescape")
        lock.replace(data, self.fsync)
        self._reset()
        self.refresh()

    def _header(self) -> str:
        return f"{VERSION} V{self.uidvalidity} N{self.next_uid} G{self.guid}\n"

    @property
    def stale_records(self) -> int:
        """Records appended over time (an upper bound of those whose files are gone)."""
        return len(self.records)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0
