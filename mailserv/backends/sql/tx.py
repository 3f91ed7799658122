"""One transaction's statements (:class:`Tx`), as ``db`` runs them.

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

from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger

from mailserv.backends.sql.dialect import Dialect

NOTIFY_CHANNEL = "mailserv_changes"
"""The PostgreSQL LISTEN/NOTIFY channel every frontend of one database shares."""

READS = ("SELECT", "WITH")
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
        if self.reading and not sql.startswith(READS):
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


def rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001 - the original error matters more
        _log.failure("Rollback failed")
