"""Mailbox names and their Maildir++ directories, as Dovecot lays them out.

INBOX is the user's root itself; ``a/b`` lives in ``<root>/.a.b``.  Each level is stored in
modified UTF-7 (Dovecot's default), so ``Entwürfe`` is ``.Entw&APw-rfe``.  Because ``.``
separates levels on disk, a name may not contain one (Dovecot refuses it the same way);
this also rules out ``..``.  A name can therefore never leave the root: it becomes one
directory entry starting with ``.`` and containing no ``/``.  For the same reason a
mailbox called ``cur``, ``new`` or ``tmp`` cannot collide with INBOX's own directories:
it is ``.cur``, ``.new``, ``.tmp``.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailserv.errors import InvalidMailboxName
from mailserv.interfaces import DELIMITER, INBOX
from mailserv.syntax import utf7

DISK_SEPARATOR = "."
MAX_DIR_BYTES = 255
"""NAME_MAX of common file systems: the whole ``.a.b`` entry must fit in one name."""

SUBSCRIPTIONS_HEADER = "V\t2\n\n"
"""Dovecot's subscriptions file, version 2: levels separated by a tab, one name a line."""


def check_name(name: str) -> str:
    """``name`` if it can be a mailbox here, else InvalidMailboxName saying why."""
    if not name:
        raise InvalidMailboxName("Empty mailbox name")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidMailboxName("Mailbox names may not hold control characters")
    levels = name.split(DELIMITER)
    if "" in levels:
        raise InvalidMailboxName(f"Mailbox name {name!r} has an empty level")
    if DISK_SEPARATOR in name:
        raise InvalidMailboxName("Character not allowed in mailbox name: '.'")
    if name != INBOX and len(folder_dir(name).encode()) > MAX_DIR_BYTES:
        raise InvalidMailboxName("Mailbox name too long for the file system")
    return name


def folder_dir(name: str) -> str:
    """The directory entry under the root: ``""`` for INBOX, ``.a.b`` for ``a/b``."""
    if name == INBOX:
        return ""
    return "".join(DISK_SEPARATOR + _encode(level) for level in name.split(DELIMITER))


def folder_name(entry: str) -> str | None:
    """The mailbox name of a root entry such as ``.a.b``, or None when it is not one."""
    if not entry.startswith(DISK_SEPARATOR) or entry in (".", ".."):
        return None
    levels = entry[1:].split(DISK_SEPARATOR)
    try:
        name = DELIMITER.join(
            utf7.decode(level.encode("utf-8", "surrogateescape")) for level in levels
        )
    except (ValueError, UnicodeError):
        return None
    if name == INBOX:
        return None  # a stray ".INBOX" would shadow the real one
    try:
        return check_name(name)
    except InvalidMailboxName:
        return None


def _encode(level: str) -> str:
    try:
        return utf7.encode(level).decode("ascii")
    except ValueError as exc:
        raise InvalidMailboxName("Mailbox name is not valid Unicode") from exc


def ancestors(name: str) -> list[str]:
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:depth]) for depth in range(1, len(levels))]


def encode_subscriptions(names: Iterable[str]) -> bytes:
    """The file body Dovecot 2.3 writes: header, then each name's levels in mUTF-7."""
    lines = []
    for name in sorted(set(names)):
        try:
            lines.append("\t".join(_encode(level) for level in name.split(DELIMITER)))
        except InvalidMailboxName:
            continue
    return (SUBSCRIPTIONS_HEADER + "".join(line + "\n" for line in lines)).encode("ascii")


def decode_subscriptions(data: bytes) -> list[str]:
    """Names in a subscriptions file (version 2, or the older one name a line)."""
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    separator = DELIMITER
    if lines and lines[0].startswith("V\t"):
        separator = "\t"
        try:
            lines = lines[lines.index("", 1) + 1 :]
        except ValueError:
            lines = []
    names = []
    for line in lines:
        if not line:
            continue
        try:
            levels = [utf7.decode(level.encode()) for level in line.split(separator)]
        except ValueError:
            continue
        names.append(DELIMITER.join(levels))
    return names
