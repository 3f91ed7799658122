"""Accounts, the mailbox hierarchy and subscriptions: transaction functions.

Each function takes a :class:`~mailserv.backends.sql.tx.Tx` and runs inside one
transaction.  A ``\\Noselect`` placeholder (what RFC 3501 6.3.4 leaves of a deleted mailbox
with inferiors) is a ``mailboxes`` row with ``selectable = 0``; re-creating the name gives a
new row, hence a new id and UIDVALIDITY.  Hierarchies are small, so names are matched in
Python rather than with collation-dependent SQL ranges.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailserv.backends.kit import new_mailbox_id
from mailserv.backends.kit.names import Hierarchy
from mailserv.backends.sql import messages, reads
from mailserv.backends.sql.rows import RENAMED, Notice
from mailserv.backends.sql.tx import Tx
from mailserv.errors import (
    MailboxNotFound,
    MailboxNotSelectable,
)
from mailserv.interfaces import INBOX, MailboxInfo


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
            " uidnext, highestmodseq, recent_mark, messages, unseen, size, mailboxid)"
            " VALUES (?, ?, ?, ?, ?, 1, 1, 0, 0, 0, 0, ?) RETURNING id",
            (account_id, name, int(selectable), special_use, validity, new_mailbox_id()),
        )
    )


# -- reading ------------------------------------------------------------------------------


def list_mailboxes(tx: Tx, account_id: int) -> list[MailboxInfo]:
    rows = tx.all(
        "SELECT name, selectable, special_use FROM mailboxes WHERE account_id = ?", (account_id,)
    )
    uses = {name: special_use for name, _, special_use in rows}

    def attributes(name: str) -> frozenset[str]:
        use = uses.get(name)
        return frozenset({use}) if use else frozenset()

    return Hierarchy({name: bool(selectable) for name, selectable, _ in rows}).listing(attributes)


def open_mailbox(tx: Tx, account_id: int, name: str) -> BoxRow:
    row = _selectable(
        tx.one(
            "SELECT id, selectable, uidvalidity, highestmodseq, uidnext FROM mailboxes"
            " WHERE account_id = ? AND name = ?",
            (account_id, name),
        ),
        name,
    )
    return BoxRow(int(row[0]), name, int(row[2]), int(row[3]), int(row[4]))


def open_with_look(tx: Tx, account_id: int, name: str) -> tuple[BoxRow, Sequence[Any]]:
    """:func:`open_mailbox`, and in the same statement the columns of the mailbox's status
    (``reads.look_columns``): a SELECT or STATUS that follows needs no second round trip."""
    row = _selectable(
        tx.one(
            f"SELECT id, selectable, {reads.look_columns(tx.dialect)} FROM mailboxes"
            " WHERE account_id = ? AND name = ?",
            (account_id, name),
        ),
        name,
    )
    look = row[2:]  # uidvalidity, uidnext, messages, unseen, recent_mark, highestmodseq...
    return BoxRow(int(row[0]), name, int(look[0]), int(look[5]), int(look[1])), look


def _selectable(row: Sequence[Any] | None, name: str) -> Sequence[Any]:
    """``row`` (``id, selectable, ...``) of a mailbox that exists and can be selected."""
    if row is None:
        raise MailboxNotFound(name)
    if not row[1]:
        raise MailboxNotSelectable(name)
    return row


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


def _hierarchy(names: dict[str, tuple[int, bool]]) -> Hierarchy:
    return Hierarchy({name: selectable for name, (_, selectable) in names.items()})


# -- changing -----------------------------------------------------------------------------


def create_mailbox(tx: Tx, account_id: int, name: str, special_use: str | None) -> None:
    """A trailing delimiter only announces future children (RFC 3501 6.3.3)."""
    names = _names(tx, account_id)
    plan = _hierarchy(names).create(name)
    if plan.replaces:
        tx.execute("DELETE FROM mailboxes WHERE id = ?", (names[plan.name][0],))
    for parent in plan.parents:
        _insert_box(tx, account_id, parent, True, None)
    _insert_box(tx, account_id, plan.name, True, special_use)


def delete_mailbox(tx: Tx, account_id: int, name: str, sender: str) -> Removal | None:
    """RFC 3501 6.3.4; the messages removed (None when ``name`` was a placeholder)."""
    names = _names(tx, account_id)
    plan = _hierarchy(names).delete(name)
    box_id = names[name][0]
    removal = None
    if plan.selectable:
        removal = Removal(box_id, messages.remove_all(tx, box_id, sender))
    tx.execute("DELETE FROM mailboxes WHERE id = ?", (box_id,))
    if plan.keep:
        _insert_box(tx, account_id, name, False, None)
    return removal


def rename_mailbox(tx: Tx, account_id: int, old: str, new: str, sender: str) -> Renaming:
    """Ids keep their UIDs and UIDVALIDITY under the new names; INBOX moves its messages."""
    names = _names(tx, account_id)
    plan = _hierarchy(names).rename(old, new)
    if plan.inbox is not None:
        create_mailbox(tx, account_id, new, None)
        inbox = names[INBOX][0]
        box = open_mailbox(tx, account_id, new)
        moved = messages.transfer(tx, inbox, reads.uids(tx, inbox), box.id, True, sender)
        return Renaming(move=moved)
    renamed = []
    for name, target in plan.moves:
        box_id = names[name][0]
        tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (target, box_id))
        tx.notify(Notice(sender, RENAMED, box_id, 0, target).encode())
        renamed.append((box_id, target))
    for parent in plan.parents:
        _insert_box(tx, account_id, parent, True, None)
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
