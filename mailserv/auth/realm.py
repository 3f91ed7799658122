"""The realm: turns an authenticated user name into the backend's IAccount."""

from __future__ import annotations

from collections.abc import Callable

from twisted.cred.portal import IRealm
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from mailserv.interfaces import IAccount, IBackend

_log = Logger()

Logout = Callable[[], None]


@implementer(IRealm)
class MailRealm:
    """Hands out ``(IAccount, account, logout)``; ``logout`` closes the account once."""

    def __init__(self, backend: IBackend) -> None:
        self.backend = backend

    def requestAvatar(
        self, avatarId: object, mind: object, *interfaces: type[Interface]
    ) -> Deferred[tuple[type[Interface], object, Logout]]:
        if IAccount not in interfaces:
            return defer.fail(NotImplementedError("MailRealm only provides IAccount"))
        if isinstance(avatarId, bytes):
            try:
                avatarId = avatarId.decode("utf-8")
            except UnicodeDecodeError:
                return defer.fail(ValueError("avatar id is not UTF-8"))
        if not isinstance(avatarId, str):
            return defer.fail(TypeError(f"avatar id is a {type(avatarId).__name__}"))
        user = avatarId
        return Deferred.fromCoroutine(self._avatar(user))

    async def _avatar(self, user: str) -> tuple[type[Interface], object, Logout]:
        account: IAccount = await self.backend.account(user)
        return IAccount, account, _logout_once(user, account)


def _logout_once(user: str, account: IAccount) -> Logout:
    closed = False

    def logout() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        d = defer.maybeDeferred(account.close)
        d.addErrback(_log_close_failure, user)

    return logout


def _log_close_failure(failure: Failure, user: str) -> None:
    _log.failure("Closing the account of {user} failed", failure, user=user)
