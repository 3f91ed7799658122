"""Quick PostgreSQL transactions, sent and answered on the reactor: no thread, no hand-off.

A transaction marked quick (see the module ``quick``; SQLite runs those in the calling
thread) goes, on PostgreSQL, to one of a few connections of this module's own, in libpq's
non-blocking pipeline mode, whose sockets the reactor watches.  Its function is written for
a synchronous ``Tx``, so it runs against a :class:`Replay`, which answers each statement
sent already from what came back: at the first statement not sent yet the function stops,
that statement goes (with the held-back ones before it, ``Tx.later``, in one round trip),
and when its rows are in, the function runs again from its start.  A read of one statement
runs twice, the first time only as far as its statement.  That asks of a quick function
what every one of them is: its statements and result depend on nothing but the answers.

A write runs in a transaction (BEGIN goes with its first statement, and a lock wait of
``LOCK_WAIT_MS`` at most: a write waiting for a lock held elsewhere would keep one of the few
connections, and the reads of every user queued for it, waiting); when the function
returns, its held-back statements, its change notices and COMMIT go in one round trip.  A
read that asks for one snapshot (``Tx.snapshot``) gets it as the pool would: BEGIN ISOLATION
LEVEL REPEATABLE READ with its first statement, ROLLBACK after its last (sent as its answer
goes back: the connection is busy until that is done).

What cannot run here goes to the pool (:class:`~mailserv.backends.sql.quick.Offload`) with
nothing of it committed: a snapshot asked for by a write, an answer of more than ``ROWS``
rows or with a value of a type not decoded here, a lock it waited for too long, an error
from the server (the pool's run raises it as the driver does, or retries a transient one),
a lost connection before COMMIT was sent, or no connection (the first uses open them, in a
thread of the pool).  A connection lost while COMMIT was on its way leaves the outcome
unknown: ``BackendUnavailable``, as from the pool.  Only the rows a function reads are
decoded, so nothing fails here after the server ran a batch.  Parameters travel
as text, rows in binary.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailserv.backends.sql.dialect import Dialect
from mailserv.backends.sql.pgsocket import PgSocket
from mailserv.backends.sql.quick import Offload
from mailserv.backends.sql.tx import READS, Tx
from mailserv.errors import BackendUnavailable

T = TypeVar("T")

CONNECTIONS = 4
"""Connections for quick transactions, per process (opened as the first ones need them)."""
RETRY_AFTER = 5.0
"""Seconds without a new connection after one could not be opened (the pool serves)."""
ROWS = 2000
"""Rows a statement's answer may have here: one with more is read by the pool (decoding
them would hold the reactor; SQLite's budget is time, this is its measure here)."""
LOCK_WAIT_MS = 50
"""How long a write here waits for a lock another transaction holds before it goes to the
pool (which waits as long as it takes): a connection of the few here is not held by one."""
WAITING = 256
"""Transactions waiting for a busy connection at most (more go to the pool)."""
APPLICATION_NAME = "mailserv-quick"
_TUPLES_OK = 2
_COMMAND_OK = 1
_PIPELINE_SYNC = 10
_PIPELINE_ABORTED = 11
_BINARY = 1
_BYTEA = 17
_WRITING: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("BEGIN", ()),
    (f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}", ()),
)
_SNAPSHOT: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("BEGIN ISOLATION LEVEL REPEATABLE READ", ()),
)
_STATEMENTS = 1000
"""Statement texts kept converted to libpq's numbered placeholders (more: start again)."""

_log = Logger()


_int = partial(int.from_bytes, byteorder="big", signed=True)


def _float(value: bytes) -> float:
    found: float = struct.unpack("!d", value)[0]
    return found


_DECODERS: dict[int, Callable[[bytes], Any]] = {
    16: lambda value: value == b"\x01",  # bool
    17: bytes,  # bytea
    20: _int,  # int8
    21: _int,  # int2
    23: _int,  # int4
    25: bytes.decode,  # text
    1043: bytes.decode,  # varchar
    701: _float,  # float8
}
"""The binary output of the types the backend's quick transactions read, as the driver gives
them (numeric, from sums, is not among them: such a read goes to the pool)."""


def _param(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, int | float):
        return str(value).encode()
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return b"\\x" + value.hex().encode()
    raise Offload(f"a parameter of type {type(value).__name__}")


Statement = tuple[str, tuple[Any, ...]]
"""A statement as a function gives it: its text with ``?`` placeholders, its values."""
Sendable = tuple[bytes, list[bytes | None], list[int]]
"""A statement as libpq takes it: ``$n`` placeholders, the values as text, their types."""


def _type(value: Any) -> int:
    """The type a value is sent as: bytea for bytes (its text is hex), else the server's
    inference from the statement."""
    return _BYTEA if isinstance(value, bytes) else 0


class _Pending(BaseException):
    """A statement the :class:`Replay` has no answer for yet, and the held-back ones before
    it (not an ``Exception``: the function's own handlers must not take it)."""

    def __init__(self, statements: list[Statement]) -> None:
        self.statements = statements


class _Rows:
    """What ``Tx.execute`` gives a function: the rows of the statement."""

    __slots__ = ("_rows", "tag")

    def __init__(self, rows: list[tuple[Any, ...]], tag: bytes | None = None) -> None:
        self._rows = rows
        self.tag = tag
        """The command tag of a statement that returns no rows (``COMMIT``...)."""

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


class Replay(Tx):
    """The ``Tx`` a function runs against here: each statement sent already is answered
    from ``sent`` (statement, rows; no rows for a held-back one), in order; the first one
    that is not stops the function (:class:`_Pending`) with the held-back statements
    (``later``) before it."""

    __slots__ = ("_sent", "_seen", "held", "snapshots")

    def __init__(
        self, dialect: Dialect, sent: list[tuple[Statement, _Rows | None]], write: bool
    ) -> None:
        self.dialect = dialect
        self.reading = not write
        self.notices = []
        self._later = []
        self._sent = sent
        self._seen = 0
        self.held: list[Statement] = []
        """Held-back statements of this run not sent yet."""
        self.snapshots = False
        """A read asked for one snapshot, before its first statement."""

    def snapshot(self) -> None:
        if not self.reading or self._seen:
            raise Offload("a snapshot asked for by a write, or after a statement")
        self.snapshots = True

    def _replayed(self, statement: Statement) -> tuple[bool, _Rows | None]:
        """Whether ``statement`` was sent already (and its rows)."""
        index = self._seen
        self._seen += 1
        if index >= len(self._sent):
            return False, None
        was, rows = self._sent[index]
        if was != statement:
            raise Offload("the function gave other statements on another run")
        return True, rows

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.reading and not sql.startswith(READS):
            raise Offload("a read that writes")
        statement = (sql, tuple(params))
        sent, rows = self._replayed(statement)
        if not sent:
            raise _Pending([*self.held, statement])
        return rows

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        if self.reading:
            raise Offload("a read that writes")
        statement = (sql, tuple(params))
        sent, _ = self._replayed(statement)
        if not sent:
            self.held.append(statement)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise Offload("executemany")


class _Lost(Offload):
    """The connection went while statements were on their way: they may have run."""


@implementer(IReadDescriptor, IWriteDescriptor)
class _Link(PgSocket):
    """One connection in libpq's pipeline mode, one batch of statements at a time (sent
    with a sync, answered when the sync comes back), its socket watched by the reactor."""

    name = APPLICATION_NAME

    def __init__(self, owner: PgQuick, conn: Any) -> None:
        super().__init__(conn)
        self._owner = owner
        self.asked: Deferred[list[_Rows]] | None = None
        self._answers: list[_Rows] = []
        self._error: str | None = None
        self._rows_of = -1
        """The statement of the batch whose rows are decoded (-1: none)."""
        self._writing = False

    def ask(self, statements: list[Sendable], rows: bool = True) -> Deferred[list[_Rows]]:
        """The answers of ``statements``, sent in one round trip (``rows``: with the rows of
        the last one, the only one whose rows are read; the others' are not even decoded,
        so nothing here fails after the server ran them all); ``Offload`` with the server's
        message when one failed: the ones after it did not run."""
        pgconn = self.conn.pgconn
        asked: Deferred[list[_Rows]] = Deferred()
        self.asked, self._answers, self._error = asked, [], None
        self._rows_of = len(statements) - 1 if rows else -1
        try:
            for sql, params, types in statements:
                pgconn.send_query_params(sql, params, types, result_format=_BINARY)
            pgconn.pipeline_sync()
            if pgconn.flush() != 0:
                self._writing = True
                self._owner.reactor.addWriter(self)
        except Exception as error:  # noqa: BLE001 - a dead connection
            self._owner.lost(self, str(error))
        return asked

    def doWrite(self) -> None:
        try:
            if self.conn.pgconn.flush() == 0:
                self._writing = False
                self._owner.reactor.removeWriter(self)
        except Exception as error:  # noqa: BLE001
            self._owner.lost(self, str(error))

    def doRead(self) -> None:
        pgconn = self.conn.pgconn
        try:
            pgconn.consume_input()
        except Exception as lost:  # noqa: BLE001
            self._owner.lost(self, str(lost))
            return
        ended = False  # the last result was the end of one statement's
        while self.asked is not None and not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                if ended:
                    break  # nothing more now (two ends in a row)
                ended = True
                continue
            ended = False
            status = result.status
            if status == _PIPELINE_SYNC:
                self._answered()
            elif status == _TUPLES_OK and len(self._answers) == self._rows_of:
                if result.ntuples > ROWS:
                    self._error = self._error or f"{result.ntuples} rows"
                    continue
                try:
                    self._answers.append(_rows_of(result))
                except Offload as why:
                    self._error = self._error or str(why)
            elif status in (_COMMAND_OK, _TUPLES_OK):
                self._answers.append(_Rows([], result.command_status))
            elif status != _PIPELINE_ABORTED:
                message = result.error_message or b"the statement failed"
                self._error = self._error or message.decode("utf-8", "replace")

    def _answered(self) -> None:
        asked, self.asked = self.asked, None
        assert asked is not None
        if self._error is not None:
            asked.errback(Offload(self._error))
        else:
            asked.callback(self._answers)

    def connectionLost(self, reason: Failure) -> None:
        self._owner.lost(self, reason.getErrorMessage())

    def close(self) -> None:
        reactor = self._owner.reactor
        reactor.removeReader(self)
        if self._writing:
            reactor.removeWriter(self)
        super().close()
        asked, self.asked = self.asked, None
        if asked is not None:
            asked.errback(_Lost("the connection was lost"))


def _rows_of(result: Any) -> _Rows:
    """The rows of ``result``, decoded a column at a time (the loops in C)."""
    count = result.ntuples
    get = result.get_value
    columns = []
    for column in range(result.nfields):
        decode = _DECODERS.get(result.ftype(column))
        if decode is None:
            raise Offload(f"a column of type {result.ftype(column)}")
        values = [get(row, column) for row in range(count)]
        if None in values:
            columns.append([None if value is None else decode(value) for value in values])
        else:
            columns.append(list(map(decode, values)))
    return _Rows(list(zip(*columns, strict=True)) if columns else [() for _ in range(count)])


class PgQuick:
    """Quick transactions on the reactor (see the module); ``run`` fails with ``Offload``
    when the pool must make them instead."""

    def __init__(
        self, dialect: Dialect, reactor: Any, threadpool: Any, size: int = CONNECTIONS
    ) -> None:
        self.dialect = dialect
        self.reactor = reactor
        self._threadpool = threadpool
        """Where connections are opened (the database pool's threads)."""
        self._size = size
        self._idle: list[_Link] = []
        self._busy: set[_Link] = set()
        self._opening = 0
        self._quiet_until = 0.0
        self._closed = False
        self._statements: dict[str, bytes] = {}
        self._waiting: deque[Deferred[_Link]] = deque()
        """Transactions waiting for a busy connection, first come first served."""

    async def run(self, fn: Callable[..., T], args: Sequence[Any], write: bool = False) -> T:
        """``fn(tx, *args)`` here; ``write``: in a transaction committed here (an error of the
        commit's round trip that leaves its outcome unknown is ``BackendUnavailable``)."""
        link = await self._take()
        sent: list[tuple[Statement, _Rows | None]] = []
        begun = ended = False
        try:
            while True:
                replay = Replay(self.dialect, sent, write)
                try:
                    result = fn(replay, *args)
                except _Pending as pending:
                    statements = pending.statements
                    opening: tuple[Statement, ...] = ()
                    if not begun and (write or replay.snapshots):
                        opening = _WRITING if write else _SNAPSHOT
                        begun = True
                    answers = await link.ask([self._sendable(s) for s in (*opening, *statements)])
                    answers = answers[len(opening) :]
                    sent += [
                        (statement, rows if statement is statements[-1] else None)
                        for statement, rows in zip(statements, answers, strict=True)
                    ]
                    continue
                if write and begun:
                    await self._commit(link, replay)
                    ended = True
                return result
        finally:
            if begun and not ended:
                link.ask([(b"ROLLBACK", [], [])]).addBoth(lambda _: self._give_back(link))
            else:
                self._give_back(link)

    async def _commit(self, link: _Link, replay: Replay) -> None:
        """The held-back statements, the change notices and COMMIT, in one round trip."""
        replay.send_notices()
        final = [*replay.held, ("COMMIT", ())]
        try:  # a server error: the statements after it, COMMIT too, did not run
            answers = await link.ask([self._sendable(s) for s in final], rows=False)
        except _Lost as lost:
            raise BackendUnavailable(f"database connection lost: {lost}") from lost
        if answers[-1].tag != b"COMMIT":
            raise Offload("the transaction was rolled back")

    def _sendable(self, statement: Statement) -> Sendable:
        sql, params = statement
        return self._numbered(sql), [_param(value) for value in params], [_type(v) for v in params]

    async def _take(self) -> _Link:
        """An idle connection, or the next one given back when all are busy."""
        if self._idle:
            link = self._idle.pop()
            self._busy.add(link)
            return link
        if len(self._busy) + self._opening < self._size:
            self._open_one()
        if not self._busy or len(self._waiting) >= WAITING:
            raise Offload("no connection to wait for")
        turn: Deferred[_Link] = Deferred()
        self._waiting.append(turn)
        return await turn

    def _give_back(self, link: _Link) -> None:
        if link not in self._busy:
            return  # lost meanwhile
        if link.asked is not None or self._closed:
            self.lost(link, "given back with statements on their way")
        elif self._waiting:
            self._waiting.popleft().callback(link)
        else:
            self._busy.discard(link)
            self._idle.append(link)

    def _no_more_waiting(self) -> None:
        """Nothing will be given back: the transactions waiting go to the pool."""
        waiting, self._waiting = self._waiting, deque()
        for turn in waiting:
            turn.errback(Offload("the connections were lost"))

    def _numbered(self, sql: str) -> bytes:
        """``sql`` with libpq's ``$1, $2...`` for its ``?`` (the backend's statements have
        no ``?`` of their own)."""
        found = self._statements.get(sql)
        if found is None:
            parts = sql.split("?")
            text = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
            if len(self._statements) >= _STATEMENTS:
                self._statements.clear()
            found = self._statements[sql] = text.encode()
        return found

    def _open_one(self) -> None:
        count = len(self._idle) + len(self._busy) + self._opening
        if self._closed or count >= self._size or time.monotonic() < self._quiet_until:
            return
        self._opening += 1
        d = threads.deferToThreadPool(self.reactor, self._threadpool, self._connect)
        d.addCallbacks(self._opened, self._not_opened)

    def _connect(self) -> Any:
        psycopg = self.dialect.module()
        return psycopg.connect(
            *self.dialect.connargs, autocommit=True, application_name=APPLICATION_NAME
        )

    def _opened(self, conn: Any) -> None:
        self._opening -= 1
        if self._closed:
            conn.close()
            return
        conn.pgconn.nonblocking = 1
        conn.pgconn.enter_pipeline_mode()
        link = _Link(self, conn)
        self.reactor.addReader(link)
        self._idle.append(link)

    def _not_opened(self, failure: Failure) -> None:
        self._opening -= 1
        self._quiet_until = time.monotonic() + RETRY_AFTER
        why = failure.getErrorMessage()
        _log.warn("Cannot open a connection for quick transactions: {why}", why=why)

    def lost(self, link: _Link, why: str) -> None:
        if link in self._idle:
            self._idle.remove(link)
        self._busy.discard(link)
        if not self._closed:
            _log.info("A quick-transactions connection was lost ({why})", why=why)
        link.close()
        if not self._busy:
            self._no_more_waiting()

    def close(self) -> None:
        self._closed = True
        for link in [*self._idle, *self._busy]:
            link.close()
        self._idle.clear()
        self._busy.clear()
        self._no_more_waiting()
