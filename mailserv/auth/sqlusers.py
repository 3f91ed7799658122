"""Users and password hashes in the SQL backend's database (``--backend-option auth=sql``).

The ``users`` table holds the same ``{SCHEME}hash`` strings as a passwd-file, so hashes move
between the two unchanged.  :class:`SqlUsers` is the synchronous store the admin CLI edits
(the same methods as :class:`~mailserv.auth.passwd.PasswdFile`); :class:`SqlUsersChecker`
is the server's twisted.cred checker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.defer import Deferred
from zope.interface import implementer

from mailserv.auth.passwd import (
    InvalidField,
    PasswdEntry,
    UserExists,
    UserNotFound,
    check_username,
)
from mailserv.auth.verified import VerifiedCache, user_and_password
from mailserv.backends.sql.db import InlineDatabase, Tx

Run = Callable[..., "Deferred[Any]"]
"""``run(fn, *args)``: a transaction function's result, later."""


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


class SqlUsers:
    """The users table, edited synchronously (each call is one transaction)."""

    def __init__(self, database: InlineDatabase) -> None:
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


# -- the server's checker -----------------------------------------------------------------


@implementer(ICredentialsChecker)
class SqlUsersChecker:
    """Checks IUsernamePassword against the users table; the avatar id is the user name.

    ``run`` runs a transaction function (the backend's database), ``in_thread`` runs the
    slow hash verification off the reactor.  An unknown user costs one verification too, so
    timing does not tell which names exist.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, run: Run, in_thread: Run, cache: VerifiedCache | None = None) -> None:
        self._run = run
        self._in_thread = in_thread
        self.cache = cache if cache is not None else VerifiedCache()

    def requestAvatarId(  # type: ignore[override]  # the avatar id is text, not bytes
        self, credentials: IUsernamePassword
    ) -> Deferred[str]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> str:
        user, password = user_and_password(credentials)
        stored = await self._run(password_of, user)
        await self.cache.check(stored, password, self._in_thread)
        return user
