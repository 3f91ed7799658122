"""Small SQLite transactions in the calling thread, not a database thread.

Handing a transaction to an adbapi thread and its result back costs more than most of the
server's transactions do: the pool's queue, a wake-up of the reactor, and the interpreter
lock changing hands at every row SQLite steps to (the module releases it around each
step).  Under load that is most of a one-message STORE's or a 20-message FETCH's time.  So
a transaction its caller knows to be small (``quick``: a bounded number of rows, found by
index) runs on the reactor thread, on a connection of its own, when it can do so without
waiting:

- A read never waits in WAL mode (the connection's ``busy_timeout`` is 0: the rare busy
  answer, a recovery, sends it to the pool).
- A write is only a flag-only one that commits without an fsync (``synchronous = NORMAL``:
  ``flag-durability=fast``, or ``sqlite-sync=normal``), and only when this process's write
  lock is free and SQLite's is too (``BEGIN IMMEDIATE`` with no busy wait).  This connection
  never checkpoints on its own (a checkpoint syncs files); every :data:`CHECKPOINT_EVERY`
  writes here the pool runs a passive one.
- Whatever runs past :data:`BUDGET` seconds is interrupted by SQLite's progress handler,
  rolled back, and run in the pool instead: a caller's "small" that the data proves wrong
  costs the reactor the budget once, not the whole work.

PostgreSQL is a network round trip away: its transactions always go to the pool.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mailserv.backends.sql.dialect import Dialect
from mailserv.backends.sql.tx import Tx, rollback

T = TypeVar("T")

BUDGET = 0.002
"""Seconds a quick transaction may run here before it goes to the pool."""
PROGRESS_STEPS = 2000
"""SQLite virtual-machine steps between two looks at the clock."""
CHECKPOINT_EVERY = 200
"""Writes committed here between two passive checkpoints run in the pool."""


class Offload(Exception):
    """The transaction could not run here without waiting, or ran past its budget: run it
    in the pool (nothing of it was committed)."""


class QuickConnection:
    """The calling thread's own SQLite connection for quick transactions (see the module).
    ``writing``: the lock the pool's writers hold (one writer of this process at a time)."""

    def __init__(self, dialect: Dialect, writing: threading.Lock) -> None:
        self.dialect = dialect
        self._writing = writing
        self._conn: sqlite3.Connection | None = None
        self._thread: int | None = None
        """The thread that opened the connection, the only one that uses it."""
        self._deadline = math.inf
        self.writes = 0
        """Writes committed here since the pool last checkpointed for them."""

    @property
    def writes_lazily(self) -> bool:
        """Flag-only writes commit without an fsync (see the module)."""
        dialect = self.dialect
        return dialect.lazy_sqlite_flags or dialect.sqlite_sync == "normal"

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            conn = self.dialect.connect()
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA synchronous = NORMAL")  # only lazy writes come here
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.set_progress_handler(self._over_budget, PROGRESS_STEPS)
            self._conn = conn
            self._thread = threading.get_ident()
        return conn

    def _over_budget(self) -> int:
        return int(time.perf_counter() > self._deadline)

    def run(self, fn: Callable[..., T], args: Sequence[Any], write: bool, flags_only: bool) -> T:
        """``fn(tx, *args)`` here, or :class:`Offload`; its own errors are raised as they are."""
        if self._thread not in (None, threading.get_ident()):
            raise Offload("another thread's connection")
        if write and not (flags_only and self.writes_lazily):
            raise Offload("a write that syncs")
        if write and not self._writing.acquire(blocking=False):
            raise Offload("another write of this process is running")
        try:
            return self._transact(fn, args, write)
        finally:
            if write:
                self._writing.release()

    def _transact(self, fn: Callable[..., T], args: Sequence[Any], write: bool) -> T:
        conn = self._connection()
        self._deadline = time.perf_counter() + BUDGET
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            tx = Tx(conn, self.dialect, reading=not write)
            result = fn(tx, *args)
            self._deadline = math.inf  # the commit is never interrupted
            tx.commit()
        except sqlite3.OperationalError as error:
            rollback(conn)
            if _waits_or_interrupted(error):
                raise Offload(str(error)) from error
            raise
        except BaseException:
            rollback(conn)
            raise
        finally:
            self._deadline = math.inf
        if write:
            self.writes += 1
        return result

    def checkpoint_due(self) -> bool:
        """Whether enough writes were committed here for the pool to checkpoint (and the
        count starts again)."""
        if self.writes < CHECKPOINT_EVERY:
            return False
        self.writes = 0
        return True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _waits_or_interrupted(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "interrupted" in text or "locked" in text or "busy" in text


def checkpoint(conn: Any) -> None:
    """A passive checkpoint (in a pool thread, outside a transaction): what the quick
    connection's writes left in the WAL goes to the database file when no reader needs it."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
