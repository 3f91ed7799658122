"""Users and password hashes in the SQL backend's database (``--backend-option auth=sql``).

The ``users`` table holds the same ``{SCHEME}hash`` strings as a passwd-file, so hashes move
between the two unchanged.  :class:`SqlUsers` is the synchronous IUserAdmin the admin CLI
edits; :class:`SqlUserStore` is the IUserStore the server reads.  Both run the transaction
functions below through whatever database object they are given (the SQL backend's), so this
module needs no backend import: a transaction only needs :class:`Tx`'s three methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from zope.interface import implementer

from mailserv.auth.passwd import (
    InvalidField,
    PasswdEntry,
    UserExists,
    UserNotFound,
    check_username,
)
from mailserv.auth.users import IUserAdmin, IUserStore
from mailserv.quota import StoredQuota, rule_fields

T = TypeVar("T")


class Tx(Protocol):
    """One transaction of the SQL backend (``?`` placeholders)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any: ...


class Inline(Protocol):
    """Runs a transaction function in the calling thread (the CLI's database)."""

    def call(self, fn: Callable[..., T], *args: Any, write: bool = False) -> T: ...


Run = Callable[..., "Deferred[Any]"]
"""``run(fn, *args)``: a transaction function's result, later (the server's database)."""


# -- transaction functions ----------------------------------------------------------------


def password_of(tx: Tx, user: str) -> str | None:
    found = tx.scalar("SELECT password FROM users WHERE name = ?", (user,))
    return None if found is None else str(found)


def entry_of(tx: Tx, user: str) -> PasswdEntry | None:
    """The user's row as an entry; its quota columns as Dovecot's extra fields."""
    rows = tx.all(
        "SELECT password, quota_storage_kib, quota_messages FROM users WHERE name = ?", (user,)
    )
    if not rows:
        return None
    password, storage, messages = rows[0]
    quota = StoredQuota(
        None if storage is None else int(storage), None if messages is None else int(messages)
    )
    return PasswdEntry(user, str(password), extra=" ".join(rule_fields(quota)))


def update_quota(tx: Tx, user: str, quota: StoredQuota) -> None:
    if password_of(tx, user) is None:
        raise UserNotFound(f"no user {user!r}")
    tx.execute(
        "UPDATE users SET quota_storage_kib = ?, quota_messages = ? WHERE name = ?",
        (quota.storage, quota.messages, user),
    )


def insert_user(tx: Tx, user: str, hashed: str) -> None:
    if password_of(tx, user) is not None:
        raise UserExists(f"user {user!r} already exists")
    tx.execute(
        "INSERT INTO users (name, password, created) VALUES (?, ?, ?)",
        (user, hashed, int(time.time())),
    )


def update_password(tx: Tx, user: str, hashed: str) -> None:
    if password_of(tx, user) is None:
        raise UserNotFound(f"no user {user!r}")
    tx.execute("UPDATE users SET password = ? WHERE name = ?", (hashed, user))


def delete_user(tx: Tx, user: str) -> None:
    if password_of(tx, user) is None:
        raise UserNotFound(f"no user {user!r}")
    tx.execute("DELETE FROM users WHERE name = ?", (user,))


def user_names(tx: Tx) -> list[str]:
    return [str(name) for (name,) in tx.all("SELECT name FROM users ORDER BY name")]


def _check_hash(hashed: str) -> None:
    if not hashed or any(ord(c) < 0x20 or ord(c) == 0x7F for c in hashed):
        raise InvalidField("password hash is empty or contains a control character")


# -- the CLI's store ----------------------------------------------------------------------


@implementer(IUserAdmin)
class SqlUsers:
    """The users table, edited synchronously (each call is one transaction)."""

    def __init__(self, database: Inline) -> None:
        self.database = database

    def lookup(self, user: str) -> PasswdEntry | None:
        return self.database.call(entry_of, user)

    def users(self) -> list[str]:
        return self.database.call(user_names)

    def add_user(self, user: str, hashed: str) -> PasswdEntry:
        check_username(user)
        _check_hash(hashed)
        self.database.call(insert_user, user, hashed, write=True)
        return PasswdEntry(user, hashed)

    def set_password(self, user: str, hashed: str) -> None:
        check_username(user)
        _check_hash(hashed)
        self.database.call(update_password, user, hashed, write=True)

    def remove_user(self, user: str) -> None:
        check_username(user)
        self.database.call(delete_user, user, write=True)

    def set_quota(self, user: str, quota: StoredQuota) -> None:
        """Set the user's own limits (None in ``quota``: the configuration's)."""
        check_username(user)
        self.database.call(update_quota, user, quota, write=True)


# -- the server's store ---------------------------------------------------------------


@implementer(IUserStore)
class SqlUserStore:
    """The users table read by the server; ``run`` runs a transaction function later."""

    def __init__(self, run: Run) -> None:
        self._run = run

    async def find(self, user: str) -> PasswdEntry | None:
        entry: PasswdEntry | None = await self._run(entry_of, user)
        return entry
