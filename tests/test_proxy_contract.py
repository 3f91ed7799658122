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


def test_usage_in_one_list_status(upstream: Dovecot, tmp_path: Path) -> None:
    """Dovecot has LIST-STATUS and STATUS=SIZE: the account adds up its usage for our
    quotas in one LIST upstream, and it equals the sum of each mailbox's STATUS, a
    mailbox selected (its counts from the mirror) and a hollow parent among them."""
    from zope.interface.verify import verifyObject

    from mailserv.interfaces import IAccountUsage, IRefreshMailbox
    from mailserv.testing import Recorder, message, resolve

    shutil.rmtree(upstream.home("alice"), ignore_errors=True)
    backend = proxy.factory.build(options(upstream), str(tmp_path), reactor)
    resolve(backend.start())
    try:
        account = resolve(backend.account("alice"))
        assert verifyObject(IAccountUsage, account)
        for name in ("Work", "Work/Old", "Deep/Down"):
            resolve(account.create(name))
        selected = resolve(account.open("Work"))
        assert verifyObject(IRefreshMailbox, selected)  # NOOP and CHECK ask upstream
        listener = Recorder()
        selected.add_listener(listener)
        for n, name in enumerate(["INBOX", "Work", "Work", "Work/Old", "Deep/Down"]):
            box = resolve(account.open(name))
            resolve(box.append(message(n) + b"x" * (100 * n), frozenset(), None, None))
        expected = [0, 0]
        for info in resolve(account.list_mailboxes()):
            if "\\Noselect" in info.attributes:
                continue
            status = resolve(resolve(account.open(info.name)).status())
            expected[0] += status.size
            expected[1] += status.messages
        assert expected[1] == 5
        assert resolve(account.usage()) == (expected[0], expected[1])
        selected.remove_listener(listener)
        resolve(account.close())
    finally:
        resolve(backend.stop())
        settle()
