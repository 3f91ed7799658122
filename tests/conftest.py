"""Fixtures of the black-box protocol tests: a running server per backend, fresh users,
clients (raw socket, imaplib, imapclient, TLS) and servers with custom limits.

Backends: ``BACKENDS`` maps a name to a ``BackendSpec`` (extra ``--backend-option`` values
and optional prepare/cleanup of an external store).  ``MAILSERV_TEST_BACKENDS=a,b`` runs a
subset (the ``one_backend`` tests are spread over it: see ``one_backend_for``).
``MAILSERV_TEST_SERVER_CLASS=module:Class`` swaps the ``ServerProcess`` class, which
lets the suite itself be checked against a reference IMAP server.
"""

from __future__ import annotations

import imaplib
import importlib
import os
import sys
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

_REPO = Path(__file__).resolve().parent.parent
_HERE = Path(__file__).resolve().parent
for _path in (str(_REPO), str(_HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import dovecot  # noqa: E402
import pgcluster  # noqa: E402
from imapserver import Connector, ServerFactory, User, UserPool  # noqa: E402

from bench.harness import BackendSpec, RawClient, ServerProcess  # noqa: E402

BACKENDS: dict[str, BackendSpec] = {
    "memory": BackendSpec("memory"),
    # A fresh account must hold only INBOX here, so no special-use folders on first login.
    "maildir": BackendSpec("maildir", {"autocreate": "false"}),
    "sql-sqlite": BackendSpec("sql"),  # the database file goes in the server's data dir
    "sql-postgresql": BackendSpec(
        "sql", prepare=pgcluster.prepare_backend, cleanup=pgcluster.cleanup_backend
    ),
    "proxy": dovecot.proxy_backend_spec(),  # a private Dovecot upstream per server
}
"""Every backend the protocol suite runs against; add one entry per new backend."""

SESSION_LIMITS: Mapping[str, object] = {"auth_failure_delay": 0.05}
"""Limits of the shared server: failed logins must not make the suite slow."""

PROTOCOL_TEST_TIMEOUT = 60

ONE_WORKER = ("--workers", "1")


def _selected_backends() -> list[str]:
    wanted = os.environ.get("MAILSERV_TEST_BACKENDS")
    if not wanted:
        return list(BACKENDS)
    return [name.strip() for name in wanted.split(",") if name.strip()]


def _server_class() -> type[ServerProcess]:
    spec = os.environ.get("MAILSERV_TEST_SERVER_CLASS")
    if not spec:
        return ServerProcess
    module, _, name = spec.partition(":")
    cls: type[ServerProcess] = getattr(importlib.import_module(module), name)
    return cls


def _log_tail(server: ServerProcess, limit: int = 6000) -> str:
    text = server.log_text()
    return text[-limit:]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "one_backend(not_on=()): run against ONE of the selected backends (what the engine"
        " answers by itself, e.g. syntax errors, whatever the backend): picked by a stable hash"
        " (zlib.crc32) of the node id without the backend's part, so each backend runs its"
        " share and a test always lands on the same one; never on a backend named in not_on"
        " (it cannot apply there) while another is selected",
    )


def _spread_key(item: pytest.Item, backend: str) -> str:
    """``item``'s node id without the backend's part: the same for its runs against each
    backend."""
    base, _, _ = item.nodeid.partition("[")
    parts = list(getattr(getattr(item, "callspec", None), "_idlist", ()))
    if backend not in parts:  # pytest keeps the id's parts elsewhere: the id's text
        return item.nodeid.replace(backend, "", 1)
    parts.remove(backend)
    return f"{base}[{'-'.join(parts)}]"


def one_backend_for(key: str, backends: Sequence[str], not_on: Collection[str] = ()) -> str:
    """The backend a ``one_backend`` test runs on: one of ``backends`` (those it was
    collected for, but the ones its marker names in ``not_on`` while another is left) picked
    by the CRC-32 of its ``_spread_key``, so every backend of a run gets a share of the
    tests and each test the same backend in every run."""
    choices = [name for name in backends if name not in not_on] or list(backends)
    return choices[zlib.crc32(key.encode()) % len(choices)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every protocol test a timeout, so a silent server fails the test, not the run;
    run each ``one_backend`` test against one backend (``one_backend_for``) only."""
    selected = _selected_backends()
    spread: list[tuple[pytest.Item, str, str]] = []
    found: dict[str, list[str]] = {}
    for item in items:
        if item.path.name.startswith("test_protocol_") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(PROTOCOL_TEST_TIMEOUT))
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("server") if callspec is not None else None
        if item.get_closest_marker("one_backend") is not None and isinstance(backend, str):
            key = _spread_key(item, backend)
            spread.append((item, key, backend))
            found.setdefault(key, []).append(backend)
    order = {name: index for index, name in enumerate(selected)}
    dropped = set()
    for item, key, backend in spread:
        backends = sorted(set(found[key]), key=lambda name: (order.get(name, len(order)), name))
        marker = item.get_closest_marker("one_backend")
        not_on = marker.kwargs.get("not_on", ()) if marker is not None else ()
        if backend != one_backend_for(key, backends, not_on):
            dropped.add(item)
    if dropped:
        config.hook.pytest_deselected(items=[item for item in items if item in dropped])
        items[:] = [item for item in items if item not in dropped]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the server's log to a failed test's report."""
    outcome: Any = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    servers = [v for v in funcargs.values() if isinstance(v, ServerProcess)]
    factory = funcargs.get("server_factory")
    if isinstance(factory, ServerFactory):
        servers += factory.servers
    for server in servers:
        report.sections.append((f"server log ({server.data_dir})", _log_tail(server)))


def _start(server: ServerProcess) -> ServerProcess:
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session", params=_selected_backends())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The shared server of one backend (session-scoped, one per ``BACKENDS`` entry)."""
    name = str(request.param)
    if name not in BACKENDS:
        pytest.skip(f"unknown backend {name!r}")
    data_dir = tmp_path_factory.mktemp(f"server-{name}")
    # One process: tests reach into it (its sockets through pidfd, its RSS).
    proc = _server_class()(data_dir, BACKENDS[name], limits=SESSION_LIMITS, extra_args=ONE_WORKER)
    _start(proc)
    yield proc
    proc.stop()
    if request.session.testsfailed:
        sys.stderr.write(f"\n--- log of the {name} server (tail) ---\n{_log_tail(proc)}\n")


@pytest.fixture(scope="session")
def user_pool(server: ServerProcess) -> Iterator[UserPool]:
    pool = UserPool(server)
    yield pool
    pool.close()


@pytest.fixture
def user(server: ServerProcess, user_pool: UserPool) -> User:
    """A fresh user (unique name, password that needs quoting) on the shared server."""
    if not server.alive:
        pytest.fail(f"the server died:\n{_log_tail(server)}")
    return user_pool.get()


@pytest.fixture(scope="module")
def module_user(server: ServerProcess, user_pool: UserPool) -> User:
    """One user shared by a module's tests that only need *a* login (cheaper than ``user``)."""
    return user_pool.get()


@pytest.fixture
def shared_connect(server: ServerProcess, module_user: User) -> Iterator[Connector]:
    """Like ``connect``, but as the module's shared user."""
    connector = Connector(server, module_user)
    yield connector
    connector.close()


@pytest.fixture
def connect(server: ServerProcess, user: User) -> Iterator[Connector]:
    """Opens any number of clients as ``user``; all closed after the test."""
    connector = Connector(server, user)
    yield connector
    connector.close()


@pytest.fixture
def raw(connect: Connector) -> RawClient:
    """A logged-in raw socket client."""
    return connect.raw()


@pytest.fixture
def imap(connect: Connector) -> imaplib.IMAP4:
    """A logged-in ``imaplib.IMAP4``."""
    return connect.imaplib()


@pytest.fixture
def client(connect: Connector) -> IMAPClient:
    """A logged-in ``imapclient.IMAPClient``."""
    return connect.imapclient()


@pytest.fixture
def server_factory(server: ServerProcess, tmp_path: Path) -> Iterator[ServerFactory]:
    """``server_factory(limits={...})`` → a started server of the same backend as ``server``."""
    factory = ServerFactory(tmp_path, server.backend, _server_class())
    yield factory
    factory.stop()
