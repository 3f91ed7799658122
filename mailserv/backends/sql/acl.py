"""Access control lists (RFC 4314) in the SQL store: table ``acl`` (schema version 9),
one row per mailbox and identifier, gone with its mailbox row (``ON DELETE CASCADE``),
kept by RENAME (the row's id stays).  Each function runs in one transaction
(``Database.run``)."""

from __future__ import annotations

from mailserv.backends.sql.hierarchy import open_mailbox
from mailserv.backends.sql.tx import Tx
from mailserv.interfaces import SharedEntry


def get_acl(tx: Tx, account_id: int, name: str) -> dict[str, str]:
    box = open_mailbox(tx, account_id, name)
    rows = tx.all("SELECT identifier, rights FROM acl WHERE mailbox_id = ?", (box.id,))
    return {str(identifier): str(rights) for identifier, rights in rows}


def set_acl(tx: Tx, account_id: int, name: str, identifier: str, rights: str) -> None:
    box = open_mailbox(tx, account_id, name)
    tx.execute("DELETE FROM acl WHERE mailbox_id = ? AND identifier = ?", (box.id, identifier))
    if rights:
        tx.execute(
            "INSERT INTO acl (mailbox_id, identifier, rights) VALUES (?, ?, ?)",
            (box.id, identifier, rights),
        )


def shared_mailboxes(tx: Tx, account_id: int, user: str) -> list[SharedEntry]:
    """The other accounts' mailboxes whose list names ``user`` or anyone, each with its list."""
    rows = tx.all(
        "SELECT m.id, a.name, m.name, l.identifier, l.rights FROM acl l"
        " JOIN mailboxes m ON m.id = l.mailbox_id JOIN accounts a ON a.id = m.account_id"
        " WHERE m.account_id <> ? AND m.selectable = 1 AND l.mailbox_id IN"
        " (SELECT mailbox_id FROM acl WHERE identifier IN (?, ?, ?, ?))"
        " ORDER BY m.id",
        (account_id, user, "anyone", "-" + user, "-anyone"),
    )
    lists: dict[int, tuple[str, str, dict[str, str]]] = {}
    for box_id, owner, name, identifier, rights in rows:
        lists.setdefault(int(box_id), (str(owner), str(name), {}))[2][str(identifier)] = str(rights)
    return [SharedEntry(owner, name, acl) for owner, name, acl in lists.values()]
