"""Access control lists of a Maildir++ tree, kept as Dovecot keeps them.

Each mailbox's list is the file ``dovecot-acl`` in its directory (INBOX: the root), one
``identifier rights`` line per entry, in Dovecot's spelling: ``user=NAME``, ``anyone``,
with ``-`` before either for negative rights; Dovecot's ``owner``, ``authenticated`` and
``group=`` lines are read as the owner's (always every right: skipped), ``anyone`` and
nothing.  The file lives in the folder's directory, so RENAME and DELETE take it along.

Which users ever shared a mailbox is the backend-wide file ``shared-owners`` in the data
directory (one user a line): LIST of the shared namespace looks only at their trees.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mailserv.backends.maildir.dotlock import DotLock
from mailserv.backends.maildir.perms import PRIVATE, Permissions

ACL_FILE = "dovecot-acl"
OWNERS_FILE = "shared-owners"
_ANYONE = "anyone"


def _to_identifier(word: str) -> str | None:
    negative = word.startswith("-")
    word = word.removeprefix("-")
    if word.startswith("user="):
        name = word[len("user=") :]
    elif word in (_ANYONE, "authenticated"):
        name = _ANYONE
    else:
        return None  # owner (always everything), group= (no groups here)
    return ("-" if negative else "") + name


def _to_word(identifier: str) -> str:
    negative = identifier.startswith("-")
    name = identifier.removeprefix("-")
    word = _ANYONE if name == _ANYONE else "user=" + name
    return ("-" if negative else "") + word


def read_acl(directory: str) -> dict[str, str]:
    """The list in ``directory``; empty when it has none."""
    try:
        with open(os.path.join(directory, ACL_FILE), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    acl: dict[str, str] = {}
    for line in lines:
        word, _, rights = line.strip().rpartition(" ")
        identifier = _to_identifier(word.strip()) if word else None
        if identifier is not None and rights:
            acl[identifier] = rights
    return acl


def write_acl(
    directory: str, identifier: str, rights: str, perms: Permissions, fsync: bool
) -> bool:
    """Give ``identifier`` ``rights`` (``""``: none) in ``directory``'s list, under its lock;
    whether the list has entries after."""
    path = os.path.join(directory, ACL_FILE)
    with DotLock(path, perms=perms) as lock:
        acl = read_acl(directory)
        if rights:
            acl[identifier] = rights
        else:
            acl.pop(identifier, None)
        text = "".join(f"{_to_word(who)} {what}\n" for who, what in sorted(acl.items()))
        lock.replace(text.encode("utf-8"), fsync)
    return bool(acl)


def owners(data_dir: str) -> list[str]:
    """The users who ever shared a mailbox."""
    try:
        with open(os.path.join(data_dir, OWNERS_FILE), encoding="utf-8") as f:
            return [line for line in f.read().splitlines() if line]
    except FileNotFoundError:
        return []


def add_owner(data_dir: str, user: str, fsync: bool) -> None:
    if user in owners(data_dir):
        return
    path = os.path.join(data_dir, OWNERS_FILE)
    with DotLock(path, perms=PRIVATE) as lock:
        known = owners(data_dir)
        if user not in known:
            lock.replace("".join(f"{name}\n" for name in [*known, user]).encode(), fsync)


def names_user(acl: Mapping[str, str], user: str) -> bool:
    """Whether the list has an entry that concerns ``user``."""
    return bool({user, _ANYONE, "-" + user, "-" + _ANYONE} & acl.keys())
