"""Assembles the twisted.cred Portal the IMAP engine logs in through."""

from __future__ import annotations

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred

from mailserv.auth.realm import MailRealm
from mailserv.interfaces import IBackend


def build_portal(backend: IBackend, checker: ICredentialsChecker | None) -> Portal:
    """A portal over ``MailRealm(backend)``; the backend's own checker wins over ``checker``.

    ``backend.credentials_checker()`` is called once, here, so it must answer synchronously
    (a plain value, or an already fired Deferred).
    """
    chosen = _backend_checker(backend) or checker
    if chosen is None:
        raise ValueError("no credentials checker: the backend offers none and none was given")
    if not ICredentialsChecker.providedBy(chosen):
        raise TypeError(f"{chosen!r} does not provide ICredentialsChecker")
    return Portal(MailRealm(backend), [chosen])


def _backend_checker(backend: IBackend) -> ICredentialsChecker | None:
    result: object = backend.credentials_checker()
    if isinstance(result, Deferred):
        fired: list[object] = []
        result.addBoth(fired.append)
        if not fired:
            raise TypeError("credentials_checker() must answer at once, not later")
        result = fired[0]
    if result is None:
        return None
    if hasattr(result, "raiseException"):  # a Failure from the Deferred
        result.raiseException()
    if hasattr(result, "send") and hasattr(result, "close"):  # a coroutine
        result.close()
        raise TypeError("credentials_checker() must not be a coroutine function")
    return result  # type: ignore[return-value]
