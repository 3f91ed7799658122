"""Running transactions: in a thread pool for the server, in the caller's thread for tools.

Every piece of SQL the backend runs is a plain function ``fn(tx, *args)`` executed inside one
transaction.  The server runs those functions in ``twisted.enterprise.adbapi`` threads (one
connection per thread), so any reactor works and SQLite and PostgreSQL share one code path;
the admin CLI and unit tests run them inline.  Transient failures (SQLite's busy lock,
PostgreSQL serialization failures and lost unique-key races) retry the whole function.

What one transaction runs, and in how many round trips, is ``tx.Tx``'s."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailserv.backends.sql.dialect import Dialect
from mailserv.backends.sql.pgquick import PgQuick
from mailserv.backends.sql.quick import Offload, QuickConnection, checkpoint
from mailserv.backends.sql.tx import Tx, rollback
from mailserv.errors import BackendUnavailable

T = TypeVar("T")

MAX_ATTEMPTS = 8
_log = Logger()


class Synchronous:
    """SQLite: the ``synchronous`` setting one connection's last write left it at (see
    :func:`transact`).  A connection starts at the dialect's ``sqlite_sync``."""

    __slots__ = ("lazy",)

    def __init__(self) -> None:
        self.lazy = False
        """At ``NORMAL`` for flag-only writes (``Dialect.lazy_sqlite_flags``)."""


def transact(
    conn: Any,
    dialect: Dialect,
    fn: Callable[..., T],
    args: Sequence[Any],
    write: bool,
    flags_only: bool = False,
    sync: Synchronous | None = None,
) -> T:
    """Run ``fn(tx, *args)`` in a transaction on ``conn``, retrying transient failures.

    A connection the server dropped (a restart, a failover) is replaced at once, and the
    transaction retried on the new one unless the failure came during COMMIT, when it may
    have taken effect.  ``flags_only``: a write of flags and nothing else, which SQLite
    commits without an fsync when ``Dialect.lazy_sqlite_flags`` says so (PostgreSQL's
    statements ask for theirs, ``Dialect.lazy_flag_commit``).  ``sync``: the connection's
    setting as the writes before left it (a connection writes one transaction at a time):
    the setting changes only when a write of the other kind comes (STOREs in a row, one
    statement each way fewer); without it, it is set for a flag-only write and back after.
    """
    if not (write and dialect.lazy_sqlite_flags):
        return _transact(conn, dialect, fn, args, write)
    if sync is not None:
        if sync.lazy != flags_only:
            level = "NORMAL" if flags_only else dialect.sqlite_sync.upper()
            conn.execute(f"PRAGMA synchronous = {level}")  # not inside a transaction
            sync.lazy = flags_only
        return _transact(conn, dialect, fn, args, write)
    if not flags_only:
        return _transact(conn, dialect, fn, args, write)
    conn.execute("PRAGMA synchronous = NORMAL")  # not inside a transaction: SQLite refuses
    try:
        return _transact(conn, dialect, fn, args, write)
    finally:
        try:
            conn.execute(f"PRAGMA synchronous = {dialect.sqlite_sync.upper()}")
        except Exception:  # noqa: BLE001 - the transaction's own outcome matters more
            _log.failure("Restoring PRAGMA synchronous failed")


def _transact(
    conn: Any, dialect: Dialect, fn: Callable[..., T], args: Sequence[Any], write: bool
) -> T:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        committing = False
        try:
            if not dialect.is_postgres:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            else:
                _autocommit(conn)  # a write's BEGIN is the Tx's own
            tx = Tx(conn, dialect, reading=not write)
            result = fn(tx, *args)
            committing = True  # COMMIT may reach the server from here on: no retry
            tx.commit()
            return result
        except Exception as error:
            if _broken(conn):
                if not _reconnect(conn):
                    raise BackendUnavailable(f"database connection lost: {error}") from error
                if committing or attempt == MAX_ATTEMPTS:
                    raise BackendUnavailable(f"database connection lost: {error}") from error
                continue
            rollback(conn)
            if dialect.is_transient(error) and attempt < MAX_ATTEMPTS:
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
                continue
            if dialect.is_unavailable(error):
                raise BackendUnavailable(f"database error: {error}") from error
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _autocommit(conn: Any) -> None:
    """Put psycopg's ``conn`` (adbapi's wrapper, or the connection itself) in autocommit mode
    (see the module): a local setting, no round trip."""
    raw = getattr(conn, "_connection", conn)
    if not raw.autocommit:
        raw.autocommit = True


def _broken(conn: Any) -> bool:
    """A PostgreSQL connection that died under us (SQLite connections do not)."""
    return bool(getattr(conn, "broken", False) or getattr(conn, "closed", False) is True)


def _reconnect(conn: Any) -> bool:
    """Give this thread a new connection (adbapi's wrapper can); False when that fails."""
    reconnect = getattr(conn, "reconnect", None)
    if reconnect is None:
        return False
    try:
        reconnect()
    except Exception:  # noqa: BLE001 - the database is down; the caller reports it
        return False
    return True


class Database:
    """Where transactions run; see :class:`ThreadedDatabase` and :class:`InlineDatabase`."""

    dialect: Dialect

    def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        write: bool = False,
        flags_only: bool = False,
        quick: bool = False,
    ) -> Deferred[T]:
        """``fn(tx, *args)`` in a transaction (``write``: one that writes; ``flags_only``:
        it writes flags and nothing else, see :func:`transact`; ``quick``: it touches a
        bounded number of rows, found by index, see the module ``quick``)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class ThreadedDatabase(Database):
    """An adbapi connection pool: each thread keeps its own connection."""

    def __init__(
        self, dialect: Dialect, max_connections: int, reactor: Any = None, quick: bool = True
    ) -> None:
        """``quick``: small transactions on the calling (reactor's) thread, see ``run``."""
        self.dialect = dialect
        kw: dict[str, Any] = dict(dialect.connkw)
        if reactor is not None:
            kw["cp_reactor"] = reactor
        self._writing = threading.Lock() if not dialect.is_postgres else None
        """SQLite: this process's write transactions one at a time.  Two writers that
        both reach ``BEGIN IMMEDIATE`` leave the loser in SQLite's busy handler, which sleeps
        1, 2, 5, 10... ms between tries: behind this lock it starts the moment the other
        commits.  (Other processes, tools, still meet the busy handler.)"""
        self._synchronous = threading.local()
        """SQLite: the setting of each pool thread's connection, as ``.sync`` (adbapi keeps
        one connection per thread and hands each call a new wrapper of it, so the wrapper
        cannot be the key).  A thread that reconnects may think its new connection lazy
        while it is at the configured level: its next flag write is then durable, and the
        next other write sets the level again, which it has; never the other way round."""
        self._pool = adbapi.ConnectionPool(
            dialect.driver,
            *dialect.connargs,
            cp_min=1,
            cp_max=max_connections,
            cp_noisy=False,
            cp_openfun=dialect.prepare_connection,
            **kw,
        )
        self._here: QuickConnection | None = None
        """SQLite: the calling thread's connection for quick transactions."""
        if quick and self._writing is not None:
            self._here = QuickConnection(dialect, self._writing)
        self._far: PgQuick | None = None
        """PostgreSQL: quick transactions on the reactor (see the module ``pgquick``)."""
        if quick and dialect.is_postgres:
            self._far = PgQuick(
                dialect, reactor if reactor is not None else _reactor(), self._pool.threadpool
            )

    def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        write: bool = False,
        flags_only: bool = False,
        quick: bool = False,
    ) -> Deferred[T]:
        here = self._here
        if quick and here is not None:
            try:
                done = here.run(fn, args, write, flags_only)
            except Offload:
                pass
            except Exception:
                return defer.fail()
            else:
                if write and here.checkpoint_due():
                    self._pool.runWithConnection(checkpoint).addErrback(
                        lambda failure: _log.failure("Checkpoint failed", failure)
                    )
                return defer.succeed(done)
        elif quick and self._far is not None:
            far = Deferred.fromCoroutine(self._far.run(fn, args, write))
            return far.addErrback(self._instead, fn, args, write, flags_only)
        return self._pooled(fn, args, write, flags_only)

    def _instead(
        self,
        failure: Failure,
        fn: Callable[..., T],
        args: Sequence[Any],
        write: bool,
        flags_only: bool,
    ) -> Deferred[T]:
        """A quick transaction the reactor could not make (``Offload``: nothing of it was
        committed), made by the pool."""
        failure.trap(Offload)
        return self._pooled(fn, args, write, flags_only)

    def _pooled(
        self, fn: Callable[..., T], args: Sequence[Any], write: bool, flags_only: bool
    ) -> Deferred[T]:
        if write and self._writing is not None:
            d: Deferred[T] = self._pool.runWithConnection(
                _one_writer, self._writing, self._synchronous, self.dialect, fn, args, flags_only
            )
        else:
            d = self._pool.runWithConnection(transact, self.dialect, fn, args, write)
        return d

    def close(self) -> None:
        if self._here is not None:
            self._here.close()
        if self._far is not None:
            self._far.close()
        self._pool.close()


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _one_writer(
    conn: Any,
    lock: threading.Lock,
    settings: threading.local,
    dialect: Dialect,
    fn: Callable[..., T],
    args: Sequence[Any],
    flags_only: bool,
) -> T:
    """A write transaction on SQLite, holding ``lock`` (in a database thread); ``settings``:
    this thread's connection's ``synchronous`` as ``settings.sync``."""
    with lock:
        sync: Synchronous | None = getattr(settings, "sync", None)
        if sync is None:
            sync = settings.sync = Synchronous()
        return transact(conn, dialect, fn, args, True, flags_only, sync)


class InlineDatabase(Database):
    """One connection used in the calling thread: for the CLI and tests (it blocks; every
    transaction is as good as ``quick``)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._conn: Any = None
        self._sync = Synchronous()

    def call(
        self, fn: Callable[..., T], *args: Any, write: bool = False, flags_only: bool = False
    ) -> T:
        if self._conn is None:
            try:
                self._conn = self.dialect.connect()
                self._sync = Synchronous()
            except Exception as error:
                if self.dialect.is_unavailable(error):
                    raise BackendUnavailable(f"{self.dialect.display}: {error}") from error
                raise
        return transact(self._conn, self.dialect, fn, args, write, flags_only, self._sync)

    def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        write: bool = False,
        flags_only: bool = False,
        quick: bool = False,
    ) -> Deferred[T]:
        try:
            return defer.succeed(self.call(fn, *args, write=write, flags_only=flags_only))
        except Exception:
            return defer.fail()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
