"""The maildir backend's plugin and store objects."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from mailserv.backends.maildir.account import MaildirAccount
from mailserv.backends.maildir.filenames import BaseNames
from mailserv.backends.maildir.infos import KeptInfos
from mailserv.backends.maildir.io import INLINE_BUDGET, InlineIO, IORunner, ThreadIO, Turn
from mailserv.backends.maildir.options import (
    OPTIONS,
    MaildirSettings,
    parse_options,
    resolve_root,
)
from mailserv.backends.maildir.watch import Hub, InotifyHub, PollHub, inotify_available
from mailserv.errors import BackendUnavailable
from mailserv.interfaces import (
    IBackend,
    IBackendFactory,
    IHomeLookupConsumer,
    IMultiProcessBackend,
    ISlicedBackend,
)
from mailserv.slicing import Turns

_log = Logger()

HomeLookup = Callable[[str], str | None]


@implementer(IBackendFactory)
class MaildirBackendFactory:
    """Found by twisted.plugin; turns ``--backend maildir`` into a :class:`MaildirBackend`."""

    name = "maildir"
    description = "Maildir++ on disk, compatible with Dovecot (the default)."
    options: Mapping[str, str] = OPTIONS

    def build(
        self, options: dict[str, str], data_dir: str, reactor: IReactorTime
    ) -> MaildirBackend:
        return MaildirBackend(parse_options(options), data_dir, reactor)


async def _no_other(user: str) -> None:
    return None


@dataclass
class Services:
    """What every account and mailbox of one backend shares."""

    settings: MaildirSettings
    io: IORunner
    reads: IORunner
    turn: Turn
    hub: Hub
    clock: IReactorTime
    names: BaseNames
    release: Callable[[MaildirAccount], None]
    turns: Turns
    """The reactor's turns, shared with the server's sessions (``ISlicedBackend``)."""
    infos: KeptInfos
    """The parsed messages kept on the entries of every mailbox, within ``kept-infos``."""
    data_dir: str = ""
    """Where the backend keeps what is no user's (``shared-owners``)."""
    other: Callable[[str], Awaitable[MaildirAccount | None]] = field(default=_no_other)
    """Another user's account when its tree exists (shared mailboxes), else None."""


@implementer(IBackend, IHomeLookupConsumer, IMultiProcessBackend, ISlicedBackend)
class MaildirBackend:
    """Accounts by user; each lives while any of its sessions does, and ``linger`` seconds
    more (a client that reconnects, or polls every few minutes, finds its mailboxes loaded).

    ``home_of`` tells a user's home directory, for a ``root`` starting with ``~``;
    ``twistd imapserv`` sets it from the passwd-file (see ``set_home_lookup``).
    """

    def __init__(
        self,
        settings: MaildirSettings,
        data_dir: str,
        reactor: IReactorTime,
        home_of: HomeLookup | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.home_of = home_of
        self._reactor = reactor
        self.turns = Turns(reactor)
        self._accounts: dict[str, MaildirAccount] = {}
        self._lingering: dict[str, IDelayedCall] = {}
        self._services: Services | None = None
        self._stopped = False
        """Stopped: nothing starts the store's threads again (see ``ThreadIO``) until
        ``start``."""

    def set_home_lookup(self, home_of: HomeLookup) -> None:
        """Where ``~`` in ``root`` points for each user (the passwd-file's home field)."""
        self.home_of = home_of

    async def start(self) -> None:
        self._stopped = False
        self._ensure_started()

    def _ensure_started(self) -> Services:
        if self._stopped:
            raise BackendUnavailable("the maildir store is stopping")
        if self._services is None:
            settings = self.settings
            io: IORunner
            reads: IORunner
            if settings.io_threads:
                io = ThreadIO(self._reactor, settings.io_threads)
                reads = ThreadIO(self._reactor, settings.io_threads, "maildir-read")
            else:
                io = reads = InlineIO()
            io.start()
            reads.start()
            turn = Turn(self._reactor, INLINE_BUDGET)
            self._services = Services(
                settings,
                io,
                reads,
                turn,
                self._make_hub(),
                self._reactor,
                BaseNames(),
                self._release,
                self.turns,
                KeptInfos(settings.kept_infos),
                data_dir=self.data_dir,
                other=self._other,
            )
        return self._services

    def _make_hub(self) -> Hub:
        settings = self.settings
        if settings.watch != "poll" and inotify_available():
            try:
                return InotifyHub(self._reactor)
            except Exception as exc:  # noqa: BLE001 - no inotify here (limits, platform)
                if settings.watch == "inotify":
                    raise
                _log.warn("inotify unavailable ({error}); polling maildirs", error=exc)
        elif settings.watch == "inotify":
            raise RuntimeError("watch=inotify but twisted.internet.inotify is unavailable")
        return PollHub(self._reactor, settings.poll_interval)

    async def stop(self) -> None:
        self._stopped = True
        for call in self._lingering.values():
            if call.active():
                call.cancel()
        self._lingering.clear()
        services, self._services = self._services, None
        accounts, self._accounts = list(self._accounts.values()), {}
        try:
            for account in accounts:
                await account.shutdown()
        finally:  # the threads stop whatever failed: the process could not exit otherwise
            if services is not None:
                services.hub.close()
                services.io.stop()
                services.reads.stop()

    async def account(self, username: str) -> MaildirAccount:
        services = self._ensure_started()
        account = self._accounts.get(username)
        if account is None:
            root = resolve_root(self.settings.root, username, self.data_dir, self.home_of)
            account = MaildirAccount(services, username, root)
            account.prepare()
            self._accounts[username] = account
        call = self._lingering.pop(username, None)
        if call is not None and call.active():
            call.cancel()
        account.sessions += 1
        return account

    async def _other(self, username: str) -> MaildirAccount | None:
        """``account`` of a user whose tree exists; None, creating nothing, otherwise."""
        if username not in self._accounts:
            try:
                root = resolve_root(self.settings.root, username, self.data_dir, self.home_of)
            except BackendUnavailable:
                return None
            if not os.path.isdir(os.path.join(root, "cur")):
                return None
        return await self.account(username)

    def _release(self, account: MaildirAccount) -> None:
        account.sessions -= 1
        if account.sessions > 0 or self._accounts.get(account.user) is not account:
            return
        if self.settings.linger > 0:
            self._lingering[account.user] = self._reactor.callLater(
                self.settings.linger, self._drop, account
            )
        else:
            self._drop(account)

    def _drop(self, account: MaildirAccount) -> None:
        self._lingering.pop(account.user, None)
        if account.sessions > 0 or self._accounts.get(account.user) is not account:
            return
        del self._accounts[account.user]
        d = Deferred.fromCoroutine(account.shutdown())
        d.addErrback(lambda f: _log.failure("Closing {user}'s mail failed", f, user=account.user))

    def credentials_checker(self) -> None:
        """None: the configured checker stays in charge."""
