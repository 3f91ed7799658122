"""The memory backend: mail kept in process memory, and the model for backend plugins.

Read it to learn the contract of :mod:`mailserv.interfaces` by example: this module is the
``IBackendFactory`` plugin and the ``IBackend``; ``account.py`` the ``IAccount`` (the
hierarchy rules come from the kit, :mod:`mailserv.backends.kit`); ``mailbox.py`` the
``IMailbox`` (listeners, modseqs, counters, STORE planning and the lane from the kit).
Every I/O method of the contract is declared ``Awaitable``, so each is ``async def`` here;
nothing waits for I/O, but a change to many messages waits for its turn in the mailbox's
lane and gives way to other sessions between batches.  Listener events are plain calls made
after the change they describe, with the ``origin`` of the call that caused it.
``mailserv/plugins/builtin.py`` registers ``factory`` below.
"""

from __future__ import annotations

import itertools
import time

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from mailserv.backends.kit import AclIndex, OptionSchema
from mailserv.backends.memory.account import MemoryAccount
from mailserv.backends.memory.mailbox import MemoryMailbox
from mailserv.interfaces import IBackend, IBackendFactory, ISlicedBackend
from mailserv.slicing import Turns

OPTIONS = OptionSchema("memory", {})
"""No ``--backend-option`` keys; a backend with some declares them here (see the kit)."""


@implementer(IBackendFactory)
class MemoryBackendFactory:
    """Found by twisted.plugin; turns ``--backend memory`` into a :class:`MemoryBackend`."""

    name = "memory"
    description = "Mail kept in process memory, lost on exit (tests, demos, reference)."
    options = OPTIONS.help

    def build(self, options: dict[str, str], data_dir: str, reactor: IReactorTime) -> MemoryBackend:
        """``data_dir`` is unused: nothing is written.  Long changes give way to ``reactor``."""
        OPTIONS.parse(options, data_dir)  # BackendOptionError for any key
        return MemoryBackend(reactor)


@implementer(IBackend, ISlicedBackend)
class MemoryBackend:
    """All accounts of the process; they live as long as this object.  Their mailboxes' long
    changes share the reactor's turns with the sessions (``turns``)."""

    def __init__(self, clock: IReactorTime) -> None:
        self.turns = Turns(clock)
        self._accounts: dict[str, MemoryAccount] = {}
        self._shared = AclIndex()
        """The mailboxes whose list names someone, for every account (shared mailboxes)."""
        # Seeded from the clock so a restarted server does not hand out old UIDVALIDITYs.
        self._uidvalidities = itertools.count(int(time.time()))

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """The mail goes with the process; the work in the background ends now (a service
        stopped inside an application that goes on must leave its reactor alone)."""
        for account in self._accounts.values():
            account.stop()

    async def account(self, username: str) -> MemoryAccount:
        if username not in self._accounts:
            self._accounts[username] = MemoryAccount(
                self._uidvalidities.__next__, self.turns, username, self._accounts, self._shared
            )
        return self._accounts[username]

    def credentials_checker(self) -> None:
        """None: the configured checker stays in charge."""


factory = MemoryBackendFactory()

__all__ = ["MemoryAccount", "MemoryBackend", "MemoryBackendFactory", "MemoryMailbox", "factory"]
