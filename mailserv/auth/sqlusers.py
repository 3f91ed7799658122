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
        password = self.database.call(password_of, user)
        return None if password is None else PasswdEntry(user, password)

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


# -- the server's store ---------------------------------------------------------------


@implementer(IUserStore)
class SqlUserStore:
    """The users table read by the server; ``run`` runs a transaction function later."""

    def __init__(self, run: Run) -> None:
        self._run = run

    async def find(self, user: str) -> PasswdEntry | None:
        password: str | None = await self._run(password_of, user)
        return None if password is None else PasswdEntry(user, password)
