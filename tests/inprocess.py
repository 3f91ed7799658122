"""A server in the test's own process, on the real reactor, over a real socket: for tests
that look at the server's objects while a client (in a thread) talks to it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import hash_password
from mailserv.config import Config
from mailserv.tap import build_server


class InProcessServerTests(TestCase):
    """``self.parts`` (``build_server``'s) with the memory backend, listening on
    ``self.port``; user ``ann``, password ``pw ann``."""

    async def before_start(self) -> None:
        """What a test class must wait for before the server is made."""

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.Deferred.fromCoroutine(self._set_up())

    async def _set_up(self) -> None:
        await self.before_start()
        # Earlier tests of this process that used the shared reactor as a clock without
        # running it (sessions on a StringTransport) leave their timeouts on it; trial would
        # count them against this test (it cancels them too, and fails the test).
        for call in reactor.getDelayedCalls():  # type: ignore[attr-defined]
            if call.active():
                call.cancel()
        data = Path(tempfile.mkdtemp(prefix="mailserv-inprocess-"))
        self.addCleanup(shutil.rmtree, data, True)
        PasswdFile(data / "passwd").add_user("ann", hash_password(b"pw ann"))
        self.parts = build_server(Config(data_dir=str(data), backend="memory"), reactor)  # type: ignore[arg-type]
        self.port = reactor.listenTCP(0, self.parts.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(self.port.stopListening)
        await self.parts.backend.start()

    def tearDown(self) -> defer.Deferred[None]:  # type: ignore[override]
        async def stop() -> None:
            await self.parts.factory.shutdown()
            await self.parts.backend.stop()

        return defer.Deferred.fromCoroutine(stop())
