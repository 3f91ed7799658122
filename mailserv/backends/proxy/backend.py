"""The proxy backend's plugin, the backend object, and its upstream credentials checker."""

from __future__ import annotations

from collections.abc import Mapping

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import alsoProvides, implementer

from mailserv import errors
from mailserv.backends.proxy.account import ProxyAccount
from mailserv.backends.proxy.cache import ContentCache, InfoStore
from mailserv.backends.proxy.connect import Connector, LoginRefused
from mailserv.backends.proxy.options import OPTIONS, ProxyConfig, parse_options
from mailserv.backends.proxy.user import UserState
from mailserv.interfaces import (
    IAccountUsage,
    IBackend,
    IBackendFactory,
    IMailboxIdAccount,
    IMultiAppendAccount,
    IMultiProcessBackend,
    IQuotaAccount,
    ISlicedBackend,
)
from mailserv.slicing import Turns

_log = Logger()


@implementer(IBackendFactory)
class ProxyBackendFactory:
    """``--backend proxy``: mailboxes of an upstream IMAP server."""

    name = "proxy"
    description = "Serve the mailboxes of an upstream IMAP server (logins checked upstream)."
    options: Mapping[str, str] = OPTIONS

    def build(self, options: dict[str, str], data_dir: str, reactor: IReactorTime) -> ProxyBackend:
        """Parsed messages are cached under ``data_dir`` (option ``cache_dir``)."""
        return ProxyBackend(parse_options(options, data_dir), reactor)


@implementer(IBackend, IMultiProcessBackend, ISlicedBackend)
class ProxyBackend:
    """The users' upstream sessions, by mailserv user name.

    Under ``--workers N`` each process has sessions of its own upstream; what one process
    changes reaches the others as any change made elsewhere does (their channels IDLE on
    the mailbox), and the parsed-message files on disk are safe to share (``cache``).
    Searches answered here, and the upstream's big answers, share the reactor's ``turns``
    with the sessions."""

    def __init__(self, config: ProxyConfig, reactor: IReactorTime) -> None:
        self.config = config
        self.reactor = reactor
        self.turns = Turns(reactor)
        self.connector = Connector(config.upstream, reactor, self.turns)
        self.content = ContentCache(config.cache_bytes)
        self.infos = None if config.cache_dir is None else InfoStore(config.cache_dir)
        self._users: dict[str, UserState] = {}

    async def start(self) -> None:
        _log.info("Proxying to {label}", label=self.config.upstream.label)

    async def stop(self) -> None:
        users, self._users = list(self._users.values()), {}
        for user in users:
            await user.close()
        self.content.clear()
        # The last LOGOUT's answer is read inside an upstream connection's read callback:
        # the rest of the shutdown (the reactor dropping every connection) starts from a
        # turn of its own.  From inside, Twisted's TLS went on with a connection dropped
        # meanwhile and logged an AttributeError at every shutdown.
        await deferLater(self.reactor, 0, lambda: None)

    async def account(self, username: str) -> ProxyAccount:
        user = self._users.get(username)
        if user is None:
            config = self.config
            if config.master_user is None or config.master_password is None:
                raise errors.BackendUnavailable("No upstream session for this user; log in again")
            upstream_name = f"{username}{config.master_separator}{config.master_user}"
            user = UserState(self, username, upstream_name, config.master_password)
            self._users[username] = user
        account = ProxyAccount(user)  # a session of the user from here (it keeps the user)
        if not user.pool.capabilities:
            # Master-user mode: no login check opened a connection, so the upstream's
            # extensions (QUOTA, OBJECTID) are not known yet; a first connection tells them.
            try:
                await user.pool.naming()
            except BaseException:
                await account.close()
                raise
        caps = user.pool.capabilities
        if "MULTIAPPEND" in caps:  # RFC 3502: a batch (a pipelined burst too) in one APPEND
            alsoProvides(account, IMultiAppendAccount)
        if "QUOTA" in caps:  # RFC 9208 passed through: the upstream's quotas
            alsoProvides(account, IQuotaAccount)
        if "OBJECTID" in caps:  # RFC 8474: the upstream's MAILBOXIDs (EMAILID/THREADID: ours)
            alsoProvides(account, IMailboxIdAccount)
        if "LIST-STATUS" in caps and "STATUS=SIZE" in caps:  # our quotas' usage in one LIST
            alsoProvides(account, IAccountUsage)
        return account

    def credentials_checker(self) -> UpstreamChecker | None:
        """Logins are checked upstream, except in master-user mode (then mailserv's own
        passwd-file checks them and the upstream trusts the master user)."""
        if self.config.master_user is not None:
            return None
        return UpstreamChecker(self)

    def forget(self, user: UserState) -> None:
        if self._users.get(user.username) is user:
            del self._users[user.username]

    async def authenticate(self, username: str, password: bytes) -> str:
        """Log in upstream; the connection is kept for the user's first commands."""
        try:
            conn = await self.connector.open_as(username, password)
        except LoginRefused as exc:
            raise UnauthorizedLogin("upstream refused the credentials") from exc
        user = self._users.get(username)
        if user is None or user.closed:
            user = UserState(self, username, username, password)
            self._users[username] = user
        else:
            user.pool.secret = password
        user.pool.adopt(conn)
        return username


@implementer(ICredentialsChecker)
class UpstreamChecker:
    """Checks IUsernamePassword by logging in upstream; the avatar id is the user name
    (UTF-8 bytes, as twisted.cred types it; the realm decodes it)."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, backend: ProxyBackend) -> None:
        self.backend = backend

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[bytes | tuple[()]]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> bytes | tuple[()]:
        username = credentials.username
        password = credentials.password
        try:
            name = username.decode("utf-8") if isinstance(username, bytes) else str(username)
            secret = password if isinstance(password, bytes) else str(password).encode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnauthorizedLogin("malformed user name") from exc
        if not name or any(c in name for c in "\r\n\0"):
            raise UnauthorizedLogin("malformed user name")
        return (await self.backend.authenticate(name, secret)).encode("utf-8")
