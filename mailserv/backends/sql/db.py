"""Running transactions: in a thread pool for the server, in the caller's thread for tools.

Every piece of SQL the backend runs is a plain function ``fn(tx, *args)`` executed inside one
transaction.  The server runs those functions in ``twisted.enterprise.adbapi`` threads (one
connection per thread), so any reactor works and SQLite and PostgreSQL share one code path;
the admin CLI and unit tests run them inline.  Transient failures (SQLite's busy lock,
PostgreSQL serialization failures and lost unique-key races) retry the whole function.

Round trips to PostgreSQL are counted.  Connections are in autocommit mode: psycopg's own
BEGIN is a round trip of its own, even in a pipeline.  A write transaction holds back a
BEGIN of its own, which goes with its first statement.  Statements whose result is not read
(``Tx.later``: writes, locks) wait and go with the next statement, or with the change
notices and COMMIT, in one pipelined round trip.  A read runs without BEGIN: PostgreSQL's
READ COMMITTED gives each statement of a transaction its own snapshot anyway, so BEGIN and
COMMIT would buy nothing and cost two round trips; a read of one statement is one round
trip.  A read whose statements must see one snapshot says so first (``Tx.snapshot``): BEGIN
goes with its first statement, and COMMIT ends it.
"""

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

from mailserv.backends.sql.dialect import Dialect
from mailserv.errors import BackendUnavailable

T = TypeVar("T")

MAX_ATTEMPTS = 8
NOTIFY_CHANNEL = "mailserv_changes"
"""The PostgreSQL LISTEN/NOTIFY channel every frontend of one database shares."""

_READS = ("SELECT", "WITH")
"""How the statements a read transaction may run begin."""
_BEGIN: tuple[str, tuple[Any, ...]] = ("BEGIN", ())

_log = Logger()


class ReadOnly(RuntimeError):
    """A read transaction (``write=False``) tried to write: a bug of its function (on
    PostgreSQL each statement of a read commits alone, in autocommit mode)."""


class Tx:
    """One transaction: statements in the dialect's placeholder style, notices sent at commit."""

    __slots__ = ("_conn", "_cur", "_later", "dialect", "notices", "reading")

    def __init__(self, conn: Any, dialect: Dialect, reading: bool = False) -> None:
        self.dialect = dialect
        self.reading = reading
        """A read (``write=False``): it may not write.  On PostgreSQL it runs in autocommit
        mode (see the module); SQLite's deferred BEGIN would let it write."""
        self._conn = conn
        self._cur = conn.cursor()
        self._later: list[tuple[str, tuple[Any, ...]]] = []
        self.notices: list[str] = []
        if dialect.is_postgres and not reading:
            # Our own BEGIN, held back to go with the first statement (psycopg's, outside
            # autocommit mode, is a round trip of its own even in a pipeline).
            self._later.append(_BEGIN)

    def snapshot(self) -> None:
        """The statements from here on see one snapshot (REPEATABLE READ on PostgreSQL, set
        with the next statement; SQLite's transactions always do).  Before the first one."""
        if not self.dialect.is_postgres:
            return
        if self.reading:
            self._later.append(("BEGIN ISOLATION LEVEL REPEATABLE READ", ()))
        else:
            self._later.append(("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", ()))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (after the held-back ones, in the same round trip)."""
        if self.reading and not sql.startswith(_READS):
            raise ReadOnly(f"a read transaction ran a statement that is not a read: {sql}")
        if self._later:
            self._later.append((self.dialect.sql(sql), tuple(params)))
            self._flush()
        else:
            self._cur.execute(self.dialect.sql(sql), tuple(params))
        return self._cur

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A statement whose result nobody reads (a write, a lock).  PostgreSQL: held back
        and sent in one round trip with the next statement, or with the notices and COMMIT;
        its errors are raised there.  SQLite, in process: run now."""
        if self.reading:
            raise ReadOnly(f"a read transaction held back a write: {sql}")
        if self.dialect.is_postgres:
            self._later.append((self.dialect.sql(sql), tuple(params)))
        else:
            self.execute(sql, params)

    def _flush(self, commit: bool = False) -> None:
        """The held-back statements in one round trip (the cursor keeps the last one's rows)."""
        later, self._later = self._later, []
        with self._conn.pipeline():
            for sql, params in later:
                self._cur.execute(sql, params)
            if commit:  # a statement, not ``commit()``, which syncs: one more round trip
                self._cur.execute("COMMIT")

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.reading:
            raise ReadOnly(f"a read transaction ran a write: {sql}")
        if self._later:
            self._flush()
        if rows:
            self._cur.executemany(self.dialect.sql(sql), [tuple(row) for row in rows])

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row, or None."""
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.execute(sql, params).fetchall())

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.one(sql, params)
        return None if row is None else row[0]

    def notify(self, payload: str) -> None:
        """Tell the other frontends, when (and only if) this transaction commits."""
        if self.reading:
            raise ReadOnly("a read transaction sent a change notice")
        if self.dialect.is_postgres:
            self.notices.append(payload)

    def send_notices(self) -> None:
        for payload in self.notices:
            self.later("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, payload))

    def commit(self) -> None:
        """The held-back writes, the notices and COMMIT: one round trip on PostgreSQL."""
        self.send_notices()
        if self._later == [_BEGIN]:
            self._later = []  # a write that wrote nothing: no transaction was opened
        if self._later:
            self._flush(commit=True)
        else:
            self._conn.commit()


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
            _rollback(conn)
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


def _rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001 - the original error matters more
        _log.failure("Rollback failed")


class Database:
    """Where transactions run; see :class:`ThreadedDatabase` and :class:`InlineDatabase`."""

    dialect: Dialect

    def run(
        self, fn: Callable[..., T], *args: Any, write: bool = False, flags_only: bool = False
    ) -> Deferred[T]:
        """``fn(tx, *args)`` in a transaction (``write``: one that writes; ``flags_only``:
        it writes flags and nothing else, see :func:`transact`)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class ThreadedDatabase(Database):
    """An adbapi connection pool: each thread keeps its own connection."""

    def __init__(self, dialect: Dialect, max_connections: int, reactor: Any = None) -> None:
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

    def run(
        self, fn: Callable[..., T], *args: Any, write: bool = False, flags_only: bool = False
    ) -> Deferred[T]:
        if write and self._writing is not None:
            d: Deferred[T] = self._pool.runWithConnection(
                _one_writer, self._writing, self._synchronous, self.dialect, fn, args, flags_only
            )
        else:
            d = self._pool.runWithConnection(transact, self.dialect, fn, args, write)
        return d

    def close(self) -> None:
        self._pool.close()


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
    """One connection used in the calling thread: for the CLI and tests (it blocks)."""

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
        self, fn: Callable[..., T], *args: Any, write: bool = False, flags_only: bool = False
    ) -> Deferred[T]:
        try:
            return defer.succeed(self.call(fn, *args, write=write, flags_only=flags_only))
        except Exception:
            return defer.fail()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
