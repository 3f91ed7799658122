"""twisted.cred checker for users of a passwd-file."""

from __future__ import annotations

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet import threads
from twisted.internet.defer import Deferred
from zope.interface import implementer

from mailserv.auth.passwd import PasswdFile
from mailserv.auth.verified import ThreadRunner, VerifiedCache, user_and_password


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
        await self.cache.check(entry.password if entry else None, password, self._run_in_thread)
        return user
