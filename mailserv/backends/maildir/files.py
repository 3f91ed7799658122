"""Maildir files on disk: the directory layout and writing, syncing and reading a file.

Plain blocking helpers, used by the tasks of a mailbox's lane and by the account."""

from __future__ import annotations

import os
import re

from mailserv.backends.maildir.perms import PRIVATE, Permissions
from mailserv.errors import MailboxNotFound

CUR, NEW, TMP = "cur", "new", "tmp"

_BARE_LF = re.compile(rb"(?<!\r)\n")


class MailboxGone(MailboxNotFound):
    """The mailbox directory disappeared (deleted or renamed by another program)."""


def crlf(raw: bytes) -> bytes:
    """Message bytes with CRLF line ends (Dovecot and MDAs store plain LF)."""
    if raw.count(b"\n") == raw.count(b"\r\n"):
        return raw
    return _BARE_LF.sub(b"\r\n", raw)


def write_file(
    path: str,
    data: bytes,
    fsync: bool,
    mtime: float | None = None,
    perms: Permissions = PRIVATE,
) -> None:
    """Create ``path`` (it must not exist) holding ``data``; on error nothing is left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perms.file_mode)
    try:
        perms.apply_fd(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_maildir(directory: str, folder: bool, perms: Permissions = PRIVATE) -> None:
    """``cur``/``new``/``tmp`` (and Maildir++'s ``maildirfolder`` marker for folders)."""
    for sub in (CUR, NEW, TMP):
        perms.makedirs(os.path.join(directory, sub))
    if folder:
        marker = os.path.join(directory, "maildirfolder")
        if not os.path.exists(marker):
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT, perms.file_mode)
            try:
                perms.apply_fd(fd)
            finally:
                os.close(fd)


def read_crlf(path: str) -> bytes:
    """A message file's bytes with CRLF line ends."""
    with open(path, "rb") as f:
        return crlf(f.read())
