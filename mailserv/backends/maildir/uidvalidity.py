"""New UIDVALIDITY values for a user's mailboxes, shared with Dovecot.

The root holds ``dovecot-uidvalidity`` (the last value handed out, in hex) and an empty
marker ``dovecot-uidvalidity.<hex>`` for it.  A value is taken by creating its marker with
O_EXCL, so two processes never hand out the same one; it is at least the current time, so
a mailbox deleted and created again gets a new value even after the file was lost.
"""

from __future__ import annotations

import os
import time

from mailserv.backends.maildir.perms import PRIVATE, Permissions

FILENAME = "dovecot-uidvalidity"
MAX_TRIES = 1000


def allocate(root: str, perms: Permissions = PRIVATE) -> int:
    """A UIDVALIDITY no mailbox under ``root`` had before (nonzero, 32 bits)."""
    path = os.path.join(root, FILENAME)
    try:
        with open(path, "rb") as f:
            last = int(f.read(16).strip() or b"0", 16)
    except (OSError, ValueError):
        last = 0
    last = max(last, *_markers(root).keys(), 0)  # the file may be lost; the marker is not
    candidate = max(last + 1, int(time.time()))
    for _ in range(MAX_TRIES):
        candidate = candidate % 0xFFFFFFFF or 1
        marker = f"{path}.{candidate:08x}"
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            candidate += 1
            continue
        try:
            if not perms.private:
                Permissions(perms.dir_mode, perms.file_mode & 0o444, perms.gid).apply_fd(fd)
        finally:
            os.close(fd)
        _record(root, path, candidate, perms)
        return candidate
    raise RuntimeError(f"no free UIDVALIDITY under {root}")


def _record(root: str, path: str, value: int, perms: Permissions) -> None:
    """Write the value, then drop the older markers (best effort)."""
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "wb") as f:
        perms.apply_fd(f.fileno())
        f.write(b"%08x" % value)
    os.replace(temp, path)
    for older, name in _markers(root).items():
        if older < value:
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                continue


def _markers(root: str) -> dict[int, str]:
    """The ``dovecot-uidvalidity.<hex>`` markers by value."""
    prefix = FILENAME + "."
    found = {}
    for entry in os.listdir(root):
        if entry.startswith(prefix):
            try:
                found[int(entry[len(prefix) :], 16)] = entry
            except ValueError:
                continue
    return found
