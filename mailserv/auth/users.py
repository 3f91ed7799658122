"""The user stores behind sign-in: one interface for the passwd-file and the SQL users table.

:class:`IUserStore` is what the server reads (awaited, so a store may query a database);
:class:`IUserAdmin` is what ``mailserv user ...`` edits (synchronous, one call per change).
:class:`UserStoreChecker` is the one twisted.cred checker over any store; besides passwords it
checks :class:`IStoredSecretProof` credentials (a SCRAM exchange's proof against the stored
keys), and mechanisms that need the stored secrets mid-exchange find the store through it
(:class:`IStoreChecker`), with its :class:`IScramCensus` telling whether to offer them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import threads
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface, implementer

from mailserv.auth.verified import ThreadRunner, VerifiedCache, user_and_password

if TYPE_CHECKING:
    from twisted.cred.portal import Portal

    from mailserv.auth.passwd import PasswdEntry
    from mailserv.quota import StoredQuota


class IUserStore(Interface):
    """Users and their stored ``{SCHEME}hash`` secrets, as the server reads them."""

    def find(user: str) -> Awaitable[PasswdEntry | None]:
        """The entry for ``user``, or None; awaited.  Never raises for odd names."""


class IUserAdmin(Interface):
    """The same users, edited by the admin CLI; every method is synchronous."""

    def lookup(user: str) -> PasswdEntry | None:
        """The entry for ``user``, or None."""

    def users() -> list[str]:
        """Every user name."""

    def add_user(user: str, hashed: str) -> PasswdEntry:
        """Add a user with a ``{SCHEME}hash`` password; UserExists if present."""

    def set_password(user: str, hashed: str) -> None:
        """Replace a user's password hash; UserNotFound if absent."""

    def remove_user(user: str) -> None:
        """Remove a user; UserNotFound if absent."""

    def set_quota(user: str, quota: StoredQuota) -> None:
        """Set the user's own quota limits (None in ``quota``: the configuration's);
        UserNotFound if absent."""


def portal_store(portal: Portal) -> IUserStore | None:
    """The user store behind ``portal``'s checker, if the server checks passwords itself."""
    for checker in portal.checkers.values():
        if IStoreChecker.providedBy(checker):
            store: IUserStore = IStoreChecker(checker).store
            return store
    return None


class IStoredSecretProof(ICredentials):
    """A challenge-response exchange's proof that the client knows ``username``'s secret."""

    username = Attribute("The user name (str).")

    def check(stored: str) -> bool:
        """Whether the proof holds against ``stored``, the user's ``{SCHEME}`` value now."""


class IScramCensus(Interface):
    """Whether every user of a store can sign in with SCRAM (``offer_scram=auto``)."""

    def all_scram() -> bool:
        """The answer as last known: synchronous and cheap (asked for every CAPABILITY);
        False while not yet known, and for a store with no user."""


class IStoreChecker(ICredentialsChecker):
    """A checker over an IUserStore, which it lends to mechanisms that read stored keys."""

    store = Attribute("The IUserStore it checks against.")

    def scram_for_all() -> bool:
        """Whether every user it signs in can do SCRAM now (IScramCensus.all_scram)."""


@implementer(IStoreChecker)
class UserStoreChecker:
    """Checks IUsernamePassword against an IUserStore; the avatar id is the user name (str).

    Hash verification runs through ``in_thread`` (default: the reactor's thread pool; argon2
    takes tens of milliseconds of CPU); ``cache`` spares a reconnecting client that work (see
    :mod:`mailserv.auth.verified`).  An unknown user costs one verification too, so timing
    does not tell which names exist.
    """

    credentialInterfaces = (IUsernamePassword, IStoredSecretProof)

    def __init__(
        self,
        store: IUserStore,
        in_thread: ThreadRunner | None = None,
        cache: VerifiedCache | None = None,
        census: IScramCensus | None = None,
    ) -> None:
        self.store = store
        self._in_thread: ThreadRunner = in_thread or threads.deferToThread
        self.cache = cache if cache is not None else VerifiedCache()
        self.census = census

    def scram_for_all(self) -> bool:
        return self.census is not None and self.census.all_scram()

    def requestAvatarId(  # type: ignore[override]  # the avatar id is text, not bytes
        self, credentials: IUsernamePassword | IStoredSecretProof
    ) -> Deferred[str]:
        if IStoredSecretProof.providedBy(credentials):
            return Deferred.fromCoroutine(self._check_proof(IStoredSecretProof(credentials)))
        return Deferred.fromCoroutine(self._check(IUsernamePassword(credentials)))

    async def _check_proof(self, proof: IStoredSecretProof) -> str:
        user = str(proof.username)
        entry = await self.store.find(user)
        if entry is None or not proof.check(entry.password):
            raise UnauthorizedLogin("authentication failed")
        return user

    async def _check(self, credentials: IUsernamePassword) -> str:
        user, password = user_and_password(credentials)
        entry = await self.store.find(user)
        await self.cache.check(entry.password if entry else None, password, self._in_thread)
        return user
