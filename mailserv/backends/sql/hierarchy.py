"""Accounts, the mailbox hierarchy and subscriptions: transaction functions.

Each function takes a :class:`~mailserv.backends.sql.db.Tx` and runs inside one
transaction.  A ``\\Noselect`` placeholder (what RFC 3501 6.3.4 leaves of a deleted mailbox
with inferiors) is a ``mailboxes`` row with ``selectable = 0``; re-creating the name gives a
new row, hence a new id and UIDVALIDITY.  Hierarchies are small, so names are matched in
Python rather than with collation-dependent SQL ranges.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from mailserv.backends.sql import messages
from mailserv.backends.sql.db import Tx
from mailserv.backends.sql.rows import RENAMED, Notice
from mailserv.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MailboxNotSelectable,
)
from mailserv.interfaces import DELIMITER, INBOX, NOSELECT, MailboxInfo


@dataclass(frozen=True, slots=True)
class BoxRow:
    """What opening a mailbox needs: its id never changes, its name may."""

    id: int
    name: str
    uidvalidity: int
    highestmodseq: int
    uidnext: int


@dataclass(frozen=True, slots=True)
class Removal:
    """Messages a DELETE or RENAME INBOX took out of a mailbox, for the listeners."""

    mailbox_id: int
    uids: Sequence[int]


@dataclass(frozen=True, slots=True)
class Renaming:
    """What RENAME did: ids with their new names, or (for INBOX) a move."""

    renamed: Sequence[tuple[int, str]] = ()
    move: messages.Transfer | None = None


# -- accounts -----------------------------------------------------------------------------


def find_account(tx: Tx, name: str) -> int | None:
    found = tx.scalar("SELECT id FROM accounts WHERE name = ?", (name,))
    return None if found is None else int(found)


def create_account(tx: Tx, name: str) -> int:
    """The account ``name`` with its INBOX (write; a lost race finds the winner's row)."""
    found = find_account(tx, name)
    if found is not None:
        return found
    account_id = int(
        tx.scalar(
            "INSERT INTO accounts (name, next_uidvalidity) VALUES (?, ?) RETURNING id",
            (name, int(time.time())),
        )
    )
    _insert_box(tx, account_id, INBOX, True, None)
    return account_id


def _new_uidvalidity(tx: Tx, account_id: int) -> int:
    """Never one the account had before: the clock, or one more than the last handed out."""
    row = tx.one(
        "SELECT next_uidvalidity FROM accounts WHERE id = ?" + tx.dialect.for_update,
        (account_id,),
    )
    if row is None:
        raise MailboxNotFound("the account is gone")
    value = max(int(row[0]), int(time.time())) & 0xFFFFFFFF or 1
    tx.execute("UPDATE accounts SET next_uidvalidity = ? WHERE id = ?", (value + 1, account_id))
    return value


def _insert_box(
    tx: Tx, account_id: int, name: str, selectable: bool, special_use: str | None
) -> int:
    validity = _new_uidvalidity(tx, account_id) if selectable else 0
    return int(
        tx.scalar(
            "INSERT INTO mailboxes (account_id, name, selectable, special_use, uidvalidity,"
            " uidnext, highestmodseq, recent_mark, messages, unseen, size)"
            " VALUES (?, ?, ?, ?, ?, 1, 1, 0, 0, 0, 0) RETURNING id",
            (account_id, name, int(selectable), special_use, validity),
        )
    )


# -- reading ------------------------------------------------------------------------------


def list_mailboxes(tx: Tx, account_id: int) -> list[MailboxInfo]:
    rows = tx.all(
        "SELECT name, selectable, special_use FROM mailboxes WHERE account_id = ?", (account_id,)
    )
    out = []
    for name, selectable, special_use in sorted(rows):
        if not selectable:
            attributes = frozenset({NOSELECT})
        elif special_use:
            attributes = frozenset({special_use})
        else:
            attributes = frozenset()
        out.append(MailboxInfo(name, attributes))
    return out


def open_mailbox(tx: Tx, account_id: int, name: str) -> BoxRow:
    row = tx.one(
        "SELECT id, selectable, uidvalidity, highestmodseq, uidnext FROM mailboxes"
        " WHERE account_id = ? AND name = ?",
        (account_id, name),
    )
    if row is None:
        raise MailboxNotFound(name)
    if not row[1]:
        raise MailboxNotSelectable(name)
    return BoxRow(int(row[0]), name, int(row[2]), int(row[3]), int(row[4]))


def copy_messages(
    tx: Tx,
    account_id: int,
    source_id: int,
    uids: Sequence[int],
    destination: str,
    move: bool,
    sender: str,
) -> messages.Transfer:
    """COPY/MOVE to a mailbox of the same account, named as the client named it."""
    target = open_mailbox(tx, account_id, destination)
    return messages.transfer(tx, source_id, uids, target.id, move, sender)


def _names(tx: Tx, account_id: int) -> dict[str, tuple[int, bool]]:
    rows = tx.all("SELECT name, id, selectable FROM mailboxes WHERE account_id = ?", (account_id,))
    return {name: (int(box_id), bool(selectable)) for name, box_id, selectable in rows}


def _inferiors(names: dict[str, tuple[int, bool]], name: str) -> list[str]:
    prefix = name + DELIMITER
    return sorted(other for other in names if other.startswith(prefix))


def _checked(name: str) -> str:
    """Refuse names with an empty level (``a//b``, ``/a``): they cannot be listed."""
    if "" in name.split(DELIMITER):
        raise InvalidMailboxName(f"Invalid mailbox name {name!r}")
    return name


# -- changing -----------------------------------------------------------------------------


def create_mailbox(tx: Tx, account_id: int, name: str, special_use: str | None) -> None:
    """A trailing delimiter only announces future children (RFC 3501 6.3.3)."""
    name = _checked(name.removesuffix(DELIMITER))
    names = _names(tx, account_id)
    existing = names.get(name)
    if existing is not None:
        if existing[1]:
            raise MailboxExists(name)
        tx.execute("DELETE FROM mailboxes WHERE id = ?", (existing[0],))
    _make_parents(tx, account_id, name, names)
    _insert_box(tx, account_id, name, True, special_use)


def _make_parents(tx: Tx, account_id: int, name: str, names: dict[str, tuple[int, bool]]) -> None:
    levels = name.split(DELIMITER)
    for depth in range(1, len(levels)):
        parent = DELIMITER.join(levels[:depth])
        if parent not in names:
            names[parent] = (_insert_box(tx, account_id, parent, True, None), True)


def delete_mailbox(tx: Tx, account_id: int, name: str, sender: str) -> Removal | None:
    """RFC 3501 6.3.4; the messages removed (None when ``name`` was a placeholder)."""
    if name == INBOX:
        raise InvalidMailboxName("INBOX cannot be deleted")
    names = _names(tx, account_id)
    if name not in names:
        raise MailboxNotFound(name)
    box_id, selectable = names[name]
    has_inferiors = bool(_inferiors(names, name))
    if has_inferiors and not selectable:
        raise MailboxHasChildren(name)
    removal = None
    if selectable:
        removal = Removal(box_id, messages.remove_all(tx, box_id, sender))
    tx.execute("DELETE FROM mailboxes WHERE id = ?", (box_id,))
    if has_inferiors:
        _insert_box(tx, account_id, name, False, None)
    return removal


def rename_mailbox(tx: Tx, account_id: int, old: str, new: str, sender: str) -> Renaming:
    """Ids keep their UIDs and UIDVALIDITY under the new names; INBOX moves its messages."""
    new = _checked(new)
    names = _names(tx, account_id)
    if old not in names:
        raise MailboxNotFound(old)
    if new in names:
        raise MailboxExists(new)
    if old == INBOX:
        create_mailbox(tx, account_id, new, None)
        inbox = names[INBOX][0]
        box = open_mailbox(tx, account_id, new)
        moved = messages.transfer(tx, inbox, messages.uids(tx, inbox), box.id, True, sender)
        return Renaming(move=moved)
    if new.startswith(old + DELIMITER):
        raise InvalidMailboxName(f"{new} is inside {old}")
    moving = [old, *_inferiors(names, old)]
    targets = [new + name[len(old) :] for name in moving]
    clash = [target for target in targets if target in names]
    if clash:
        raise MailboxExists(clash[0])
    renamed = []
    for name, target in zip(moving, targets, strict=True):
        box_id = names.pop(name)[0]
        tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (target, box_id))
        tx.notify(Notice(sender, RENAMED, box_id, 0, target).encode())
        renamed.append((box_id, target))
    for box_id, target in renamed:
        names[target] = (box_id, True)
    _make_parents(tx, account_id, new, names)
    return Renaming(renamed=renamed)


# -- subscriptions ------------------------------------------------------------------------


def subscriptions(tx: Tx, account_id: int) -> list[str]:
    rows = tx.all("SELECT name FROM subscriptions WHERE account_id = ?", (account_id,))
    return sorted(name for (name,) in rows)


def subscribe(tx: Tx, account_id: int, name: str) -> None:
    tx.execute(
        "INSERT INTO subscriptions (account_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (account_id, name),
    )


def unsubscribe(tx: Tx, account_id: int, name: str) -> None:
    tx.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (account_id, name))
