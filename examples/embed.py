"""Embed mailserv's IMAP server in a Twisted program of your own.

    python examples/embed.py PORT [USER PASSWORD]

Serves the memory backend on 127.0.0.1:PORT (0 picks a free port) to one user checked in
memory (default: alice / secret), and prints the address.  No TLS here: clients on the
loopback interface may log in without it (``ServerSettings.allow_plaintext_auth`` governs
the others); pass ``tls=CertificateOptions(...)`` to IMAPServerFactory to offer STARTTLS.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import react

from mailserv.auth.portal import build_portal
from mailserv.backends.memory import factory as memory
from mailserv.imap.factory import IMAPServerFactory
from mailserv.imap.settings import ServerSettings


async def main(reactor: Any, port: str, user: str = "alice", password: str = "secret") -> None:
    backend = memory.build({}, ".", reactor)  # the memory backend writes nothing
    await backend.start()
    reactor.addSystemEventTrigger("before", "shutdown", backend.stop)

    checker = InMemoryUsernamePasswordDatabaseDontUse()
    checker.addUser(user.encode("utf-8"), password.encode("utf-8"))
    factory = IMAPServerFactory(build_portal(backend, checker), ServerSettings(max_pipelined=16))

    endpoint = TCP4ServerEndpoint(reactor, int(port), interface="127.0.0.1")
    listening = await endpoint.listen(factory)
    print(f"listening on 127.0.0.1:{listening.getHost().port}", flush=True)
    await Deferred()  # serve until the process is interrupted


if __name__ == "__main__":
    react(lambda reactor, *args: Deferred.fromCoroutine(main(reactor, *args)), sys.argv[1:])
