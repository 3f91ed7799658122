"""The public backend contract suite (``mailserv.testing``) against the proxy backend.

The proxy really waits on an upstream: the suite's ``resolve`` turns the global reactor
until each result is there.  The backend works in master-user mode (the contract addresses
accounts by name, without passwords) against a private Dovecot whose users' mail is wiped
before each test, once with ``/`` and once with ``.`` as the upstream's hierarchy delimiter.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dovecot import Dovecot, available
from twisted.internet import reactor

from mailserv.backends import proxy
from mailserv.testing import BackendContract

pytestmark = pytest.mark.skipif(not available(), reason="dovecot-imapd is not installed")

USERS = ("alice", "bob", "carol")


def settle(seconds: float = 0.05) -> None:
    """Let background work (IDLE, releases) run for a moment."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reactor.iterate(0.002)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def _threads() -> Iterator[None]:
    pool = reactor.getThreadPool()  # type: ignore[attr-defined]
    started = not pool.started
    if started:
        pool.start()  # name resolution runs there; nobody runs the reactor here
    yield
    if started:
        pool.stop()  # its threads would keep the interpreter from exiting


@pytest.fixture(scope="module", params=["fs", ""], ids=["slash", "dot"])
def upstream(request: pytest.FixtureRequest, _threads: None) -> Iterator[Dovecot]:
    """Dovecot with ``/`` (LAYOUT=fs) and with ``.`` (Maildir++) as hierarchy delimiter:
    the contract's ``/`` names are translated either way."""
    server = Dovecot(layout=request.param)
    for name in USERS:
        server.add_user(name, "secret")
    server.add_master_user("gateway", "master-secret")
    server.start()
    yield server
    server.stop()


def options(server: Dovecot) -> dict[str, str]:
    return {
        "upstream": f"tls:127.0.0.1:{server.imaps_port}",
        "ca": str(server.ca.ca_cert),
        "master_user": "gateway",
        "master_password": "master-secret",
        "linger": "0",
        "timeout": "10",
    }


class TestProxy(BackendContract):
    factory = proxy.factory

    @pytest.fixture
    def backend_options(self, upstream: Dovecot) -> dict[str, str]:
        for name in USERS:
            shutil.rmtree(upstream.home(name), ignore_errors=True)
        return options(upstream)

    @pytest.fixture
    def backend(self, backend_options: dict[str, str], tmp_path: Path) -> Iterator[Any]:
        built = self.factory.build(backend_options, str(tmp_path), reactor)
        self.resolve(built.start())
        yield built
        self.resolve(built.stop())
        settle()
