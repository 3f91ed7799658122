"""The configured backend, opened by an admin command (``mailserv import``/``export``).

The reactor runs in a thread of its own; the command's thread reads files or talks to
another server with blocking calls and hands each backend call to the reactor
(``blockingCallFromThread``), so the reactor is never held by the command's I/O and Ctrl-C
lands in the command's thread, between two backend calls.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread

from mailserv.auth.passwd import PasswdFile
from mailserv.backends import UnknownBackend, find_backend
from mailserv.config import Config
from mailserv.errors import BackendError, BackendOptionError
from mailserv.interfaces import IAccount, IBackend

T = TypeVar("T")

REFUSED_BACKENDS = {
    "memory": "the memory backend keeps mail inside the server process; there is nothing "
    "on disk to import into or export from",
    "proxy": "the proxy backend keeps no mail of its own; import into or export from its "
    "upstream server instead",
}


class StoreError(Exception):
    """The backend cannot be opened or used; the text is for the operator."""


@dataclass
class MailStore:
    """A started backend and one user's account on it; ``call`` runs a coroutine function
    on the reactor and waits for its result."""

    backend: IBackend
    account: IAccount
    _reactor: Any
    _thread: threading.Thread

    def call(self, function: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        def start() -> Deferred[T]:
            return Deferred.fromCoroutine(function(*args))

        return cast(T, blockingCallFromThread(self._reactor, start))  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the account, stop the backend and the reactor; safe after an interruption."""
        try:
            self.call(_close, self.account, self.backend)
        finally:
            self._reactor.callFromThread(self._reactor.stop)
            self._thread.join(30)


async def _close(account: IAccount, backend: IBackend) -> None:
    try:
        await account.close()
    finally:
        await backend.stop()


async def _open(backend: IBackend, user: str) -> IAccount:
    await backend.start()
    return await backend.account(user)


def open_store(config: Config, user: str, create: bool = False) -> MailStore:
    """Build and start ``config``'s backend in a reactor thread and open ``user``'s account;
    the data directory is made if ``create`` (as the server's start makes it)."""
    reason = REFUSED_BACKENDS.get(config.backend)
    if reason is not None:
        raise StoreError(f"cannot use the {config.backend} backend: {reason}")
    if create:
        os.makedirs(config.data_dir, mode=0o700, exist_ok=True)
    elif not os.path.isdir(config.data_dir):
        raise StoreError(f"data directory {config.data_dir} does not exist")
    from twisted.internet import reactor as running

    reactor: Any = running

    try:
        backend = find_backend(config.backend).build(
            dict(config.backend_options), config.data_dir, reactor
        )
    except (BackendOptionError, UnknownBackend) as exc:
        raise StoreError(str(exc)) from exc
    from mailserv.tap import _offer_homes  # the server's own hand-over of home dirs

    _offer_homes(backend, PasswdFile(config.passwd_path))
    thread = threading.Thread(
        target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
    )
    thread.start()
    store = MailStore(backend, None, reactor, thread)  # type: ignore[arg-type]
    try:
        store.account = store.call(_open, backend, user)
    except BackendError as exc:
        reactor.callFromThread(reactor.stop)
        thread.join(30)
        raise StoreError(f"cannot open the mail of {user!r}: {exc}") from exc
    return store
