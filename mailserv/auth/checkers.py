"""twisted.cred checker for users of a passwd-file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import threads
from twisted.internet.defer import Deferred
from zope.interface import implementer

from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import verify_password
from mailserv.auth.verified import VerifiedCache, user_and_password

ThreadRunner = Callable[..., "Deferred[Any]"]

_DUMMY_HASH = (
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$dbyhgGRjTl1UsjOeWMGOPQ"
    "$P2L+7FaLWPDU1m1MoQfsC6+swTjNOCA2nNjpJbNf+4I"
)
"""Verified when the user is unknown, so a failed login takes as long either way."""


@implementer(ICredentialsChecker)
class PasswdFileChecker:
    """Checks IUsernamePassword against a PasswdFile; the avatar id is the user name (str).

    Hash verification runs in the reactor's thread pool (argon2 takes tens of milliseconds);
    ``run_in_thread`` replaces ``deferToThread``, e.g. to run inline in tests.  ``cache``
    spares a reconnecting client that verification (see :mod:`mailserv.auth.verified`).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        passwd: PasswdFile,
        run_in_thread: ThreadRunner | None = None,
        cache: VerifiedCache | None = None,
    ) -> None:
        self.passwd = passwd
        self._run_in_thread: ThreadRunner = run_in_thread or threads.deferToThread
        self.cache = cache if cache is not None else VerifiedCache()

    def requestAvatarId(  # type: ignore[override]  # the avatar id is text, not bytes
        self, credentials: IUsernamePassword
    ) -> Deferred[str]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> str:
        user, password = user_and_password(credentials)
        entry = self.passwd.lookup(user)
        known = entry is not None and bool(entry.password)
        stored = entry.password if entry is not None and known else _DUMMY_HASH
        if known and self.cache.verified(stored, password):
            return user
        matched = await self._run_in_thread(verify_password, stored, password)
        if not (known and matched):
            raise UnauthorizedLogin("authentication failed")
        self.cache.remember(stored, password)
        return user
