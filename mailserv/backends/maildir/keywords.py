"""``dovecot-keywords``: which keyword each of the letters ``a``..``z`` stands for.

One ``<index> <keyword>`` per line; letter ``a`` is index 0.  New keywords take the first
free index under ``dovecot-keywords.lock``.  Keywords beyond the 26 letters cannot travel in
file names: the backend keeps those in its own index only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from mailserv.backends.maildir.dotlock import DotLock
from mailserv.backends.maildir.filenames import KEYWORD_LETTERS, LETTER_FLAGS
from mailserv.backends.maildir.perms import PRIVATE, Permissions

FILENAME = "dovecot-keywords"


class Keywords:
    """One mailbox's table, re-read when the file changes.  Used by one task at a time."""

    def __init__(self, directory: str, fsync: bool, perms: Permissions = PRIVATE) -> None:
        self.path = os.path.join(directory, FILENAME)
        self.fsync = fsync
        self.perms = perms
        self.by_letter: dict[str, str] = {}
        self.by_name: dict[str, str] = {}
        self._signature: tuple[int, int, int] | None = None

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when the table is different now."""
        before = self.by_letter
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._set({})
            self._signature = None
            return before != self.by_letter
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self._signature:
            return False
        with open(self.path, "rb") as f:
            self._set(_parse(f.read()))
        self._signature = signature
        return before != self.by_letter

    def _set(self, table: dict[str, str]) -> None:
        self.by_letter = table
        self.by_name = {name: letter for letter, name in table.items()}

    def flags(self, letters: str) -> tuple[frozenset[str], str]:
        """IMAP flags of a ``:2,`` info, and the letters that map to nothing we know."""
        flags = []
        unknown = []
        for letter in letters:
            flag = LETTER_FLAGS.get(letter) or self.by_letter.get(letter)
            if flag:
                flags.append(flag)
            else:
                unknown.append(letter)
        return frozenset(flags), "".join(unknown)

    def ensure(self, flags: Iterable[str]) -> None:
        """Give letters to the keywords among ``flags`` that have none, while any are free.
        Without keywords among them, nothing is read (a STORE of system flags)."""
        names = {f for f in flags if not f.startswith("\\")}
        if not names:
            return
        self.refresh()
        wanted = sorted(names.difference(self.by_name))
        if not wanted:
            return
        free = [c for c in KEYWORD_LETTERS if c not in self.by_letter]
        if not free:
            return
        with DotLock(self.path, perms=self.perms) as lock:
            self._signature = None
            self.refresh()
            table = dict(self.by_letter)
            free = [c for c in KEYWORD_LETTERS if c not in table]
            for name in wanted:
                if name in self.by_name or not free:
                    continue
                table[free.pop(0)] = name
            body = "".join(
                f"{KEYWORD_LETTERS.index(letter)} {name}\n"
                for letter, name in sorted(table.items())
            )
            lock.replace(body.encode("utf-8"), self.fsync)
        self._signature = None
        self.refresh()


def _parse(data: bytes) -> dict[str, str]:
    table: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        index, _, name = line.partition(" ")
        name = name.strip()
        if index.isdigit() and int(index) < len(KEYWORD_LETTERS) and name:
            table[KEYWORD_LETTERS[int(index)]] = name
    return table
