"""Permissions of what the backend creates follow the user's Maildir root, as with Dovecot.

A root made by us is private (0700, files 0600).  An operator who shares maildirs between
programs running as different users (Postfix, Dovecot, mailserv) makes the root group
accessible, e.g. mode 2770 with group ``vmail``: new directories then get the root's mode
and new files that mode without the execute bits, both with the root's group, whatever the
umask.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Permissions:
    dir_mode: int = 0o700
    file_mode: int = 0o600
    gid: int = -1  # -1: the creating process's group

    @classmethod
    def of(cls, directory: str) -> Permissions:
        st = os.stat(directory)
        mode = stat.S_IMODE(st.st_mode)
        gid = st.st_gid if st.st_gid != os.getegid() or mode & stat.S_ISGID else -1
        found = cls(mode | 0o700, (mode & 0o666) | 0o600, gid)
        return PRIVATE if found == PRIVATE else found

    @property
    def private(self) -> bool:
        return self == PRIVATE

    def apply_fd(self, fd: int) -> None:
        """Give a file we just created the shared mode and group (no-op when private)."""
        if self.private:
            return
        os.fchmod(fd, self.file_mode)
        if self.gid != -1:
            os.fchown(fd, -1, self.gid)

    def mkdir(self, path: str) -> None:
        """Create a directory (FileExistsError as os.mkdir) with the shared mode and group."""
        os.mkdir(path, self.dir_mode)
        if not self.private:
            if self.gid != -1:
                os.chown(path, -1, self.gid)
            os.chmod(path, self.dir_mode)

    def makedirs(self, path: str) -> None:
        """``mkdir -p`` for the directories under an existing root."""
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent and parent != path:
            self.makedirs(parent)
        try:
            self.mkdir(path)
        except FileExistsError:
            pass


PRIVATE = Permissions()
