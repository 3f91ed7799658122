"""The first login the instant the port opens is served (every backend).

The sql backend on an empty PostgreSQL used to accept connections before its schema
existed: the first LOGINs got ``NO [SERVERBUG]``.  Ports are now bound at start but accept
only once the backend's start has finished; a client that connects at once waits for
the greeting instead of meeting a half-started server.
"""

from __future__ import annotations

import socket
import textwrap
import time
from pathlib import Path

import pytest
from imapserver import new_user

from bench.harness import HOST, BackendSpec, RawClient, Response, ServerProcess

pytestmark = pytest.mark.timeout(120)


class _EagerServer(ServerProcess):
    """Connects the moment the IMAP port accepts a TCP connection, and logs in at once."""

    user_name = ""
    password = ""
    first: list[Response] = []

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                sock = socket.create_connection((HOST, self.imap_port), timeout=1)
            except OSError:
                time.sleep(0.002)  # as soon as the port is bound, not some time after
                continue
            client = RawClient(sock, timeout=60)
            client.greeting = client.read_response()
            self.first = [
                client.login(self.user_name, self.password),
                client.command("SELECT INBOX"),
                client.command("APPEND INBOX {9+}\r\nX: y\r\n\r\nz"),
                client.command("LOGOUT"),
            ]
            client.close()
            return super()._wait_ready(deadline - time.monotonic())
        return False


def test_first_login_as_the_port_opens(server: ServerProcess, tmp_path: Path) -> None:
    user = new_user()
    eager = _EagerServer(tmp_path / "eager", server.backend)
    eager.data_dir.mkdir()
    eager.add_user(user.name, user.password)
    eager.user_name, eager.password = user.name, user.password
    try:
        eager.start(timeout=60)
        assert [r.status for r in eager.first] == ["OK"] * 4, [r.line for r in eager.first]
        assert "SERVERBUG" not in eager.log_text()
    finally:
        eager.stop()


SLOW_BACKEND = textwrap.dedent(
    """
    from twisted.internet import reactor, task
    from zope.interface import implementer

    import mailserv.backends.memory as memory
    from mailserv.interfaces import IBackendFactory


    class Slow:
        \"\"\"The memory backend, with a start that takes 1.5 s (a schema being made).\"\"\"

        def __init__(self, inner):
            self.inner = inner
            self.started = False

        def start(self):
            def done():
                self.started = True
            return task.deferLater(reactor, 1.5, done)

        def stop(self):
            return self.inner.stop()

        def credentials_checker(self):
            return None

        def account(self, user):
            if not self.started:
                raise RuntimeError("account() before start() finished")
            return self.inner.account(user)


    @implementer(IBackendFactory)
    class SlowFactory:
        name = "slowstart"
        description = "Memory, slow to start (a test of the listeners' order)."
        options = {}

        def build(self, options, data_dir, reactor):
            return Slow(memory.factory.build({}, data_dir, reactor))


    factory = SlowFactory()
    """
)


def test_no_connection_is_served_before_the_backend_has_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: a backend whose start takes 1.5 s, a client at the port at once."""
    plugins = tmp_path / "plugins" / "mailserv" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "slowstart_store.py").write_text(SLOW_BACKEND, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "plugins"))
    user = new_user()
    eager = _EagerServer(tmp_path / "eager", BackendSpec("slowstart"))
    eager.data_dir.mkdir()
    eager.add_user(user.name, user.password)
    eager.user_name, eager.password = user.name, user.password
    try:
        began = time.monotonic()
        eager.start(timeout=60)
        assert [r.status for r in eager.first] == ["OK"] * 4, [r.line for r in eager.first]
        assert time.monotonic() - began >= 1.5
    finally:
        eager.stop()
