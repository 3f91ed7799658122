"""The backend contract suite (tests/test_backend_contract.py) against the proxy backend.

The contract suite's ``resolve`` expects results that are ready without a reactor; the proxy
really waits on an upstream, so here every test of that module runs with a ``resolve`` that
turns the global reactor until the result is there.  The backend works in master-user mode
(the contract addresses accounts by name, without passwords) against a private Dovecot
whose users' mail is wiped before each test, once with ``/`` and once with ``.`` as the
upstream's hierarchy delimiter.
"""

from __future__ import annotations

import inspect
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_backend_contract as contract
from dovecot import Dovecot, available
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from mailserv.backends import proxy

pytestmark = pytest.mark.skipif(not available(), reason="dovecot-imapd is not installed")

USERS = ("alice", "bob", "carol")
_TIMEOUT = 30.0


def reactor_resolve(value: Any) -> Any:
    """The result of a backend call, turning the reactor until it is there."""
    if inspect.iscoroutine(value):
        value = Deferred.fromCoroutine(value)
    if not isinstance(value, Deferred):
        return value
    outcome: list[Any] = []
    value.addBoth(outcome.append)
    deadline = time.monotonic() + _TIMEOUT
    while not outcome:
        if time.monotonic() > deadline:
            raise TimeoutError("the backend did not answer")
        reactor.iterate(0.002)  # type: ignore[attr-defined]
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


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


@pytest.fixture(autouse=True)
def _reactor_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contract, "resolve", reactor_resolve)


@pytest.fixture
def case(upstream: Dovecot) -> contract.BackendCase:
    for name in USERS:
        shutil.rmtree(upstream.home(name), ignore_errors=True)
    return contract.BackendCase(proxy.factory, lambda data_dir: options(upstream))


@pytest.fixture
def backend(case: contract.BackendCase, tmp_path: Path) -> Iterator[Any]:
    built = case.factory.build(case.options(tmp_path), str(tmp_path), reactor)
    reactor_resolve(built.start())
    yield built
    reactor_resolve(built.stop())
    settle()


account = contract.account
inbox = contract.inbox
recorder = contract.recorder

for _name, _test in vars(contract).items():
    if _name.startswith("test_") and callable(_test):
        globals()[_name] = _test
