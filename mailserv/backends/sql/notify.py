"""PostgreSQL LISTEN, read by the reactor itself: change notices from the other frontends.

One dedicated connection LISTENs on the shared channel; its socket is registered with the
reactor (``addReader``), so a notice is handled the moment it arrives, without a thread or
a poll, under any reactor that watches file descriptors.  A burst (another frontend's change
of thousands of mailboxes or messages) is handled in time slices, the rest on the reactor's
next turns: a notice still queued is as good as one still on its way, which ``catch_up``
allows for already.  A lost connection is re-opened with growing delays; the owner is then
asked to resynchronise, since notices sent meanwhile are gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailserv.backends.sql.dialect import Dialect
from mailserv.backends.sql.pgsocket import PgSocket
from mailserv.backends.sql.tx import NOTIFY_CHANNEL
from mailserv.errors import BackendUnavailable
from mailserv.slicing import SLICE

RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
APPLICATION_NAME = "mailserv-listen"
"""How the LISTEN connection shows in ``pg_stat_activity`` (its last query is not always
the LISTEN: ``query`` runs short reads on it)."""
_TUPLES_OK = 2
"""libpq's PGRES_TUPLES_OK."""

_log = Logger()


@implementer(IReadDescriptor)
class _Socket(PgSocket):
    """The LISTEN connection's socket as the reactor sees it."""

    name = APPLICATION_NAME

    def __init__(self, listener: Listener, conn: Any) -> None:
        super().__init__(conn)
        self._listener = listener

    def doRead(self) -> None:
        pgconn = self.conn.pgconn
        try:
            pgconn.consume_input()
        except Exception as error:  # noqa: BLE001 - any failure means a dead connection
            self._listener.lost(self, str(error))
            return
        self._listener.take()
        self._listener.answer()

    def connectionLost(self, reason: Failure) -> None:
        self._listener.lost(self, reason.getErrorMessage())


class Listener:
    """Calls ``on_notice(payload)`` for every NOTIFY on the channel, in arrival order."""

    def __init__(
        self,
        dialect: Dialect,
        on_notice: Callable[[str], None],
        on_reconnect: Callable[[], None],
        reactor: Any,
    ) -> None:
        self._dialect = dialect
        self._on_notice = on_notice
        self._on_reconnect = on_reconnect
        self._reactor = reactor
        self._socket: _Socket | None = None
        self._stopped = False
        self._failures = 0
        self._retry: Any = None
        self._more: Any = None
        """The call that takes the rest of a burst of notices, when one is waiting."""
        self._asked: Deferred[list[list[bytes | None]]] | None = None
        """The answer to the query in flight on the connection (see ``query``)."""
        self._rows: list[list[bytes | None]] = []
        self._error: str | None = None

    async def start(self) -> None:
        """Connect and LISTEN; fails (BackendUnavailable) when the database cannot be reached."""
        conn = await threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._open
        )
        self._attach(conn)

    def _open(self) -> Any:
        psycopg = self._dialect.module()
        conn = psycopg.connect(
            *self._dialect.connargs, autocommit=True, application_name=APPLICATION_NAME
        )
        try:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _attach(self, conn: Any) -> None:
        if self._stopped:
            conn.close()
            return
        conn.pgconn.nonblocking = 1
        self._socket = _Socket(self, conn)
        self._reactor.addReader(self._socket)

    def take(self) -> None:
        """Handle the notices received, for one time slice at most; the rest later."""
        self._more = None
        socket = self._socket
        if socket is None:
            return
        pgconn = socket.conn.pgconn
        until = time.perf_counter() + SLICE
        while (notice := pgconn.notifies()) is not None:
            self.deliver(notice.extra.decode("utf-8", "replace"))
            if time.perf_counter() > until and self._socket is socket:
                self._more = self._reactor.callLater(0, self.take)
                return

    def query(self, sql: bytes, params: list[bytes]) -> Deferred[list[list[bytes | None]]] | None:
        """One short read on the LISTEN connection itself, sent and answered on the reactor
        (no thread, no pool connection): the rows, as text.  None when the connection is
        down or busy with another query (the caller reads through the pool)."""
        socket = self._socket
        if socket is None or self._asked is not None:
            return None
        pgconn = socket.conn.pgconn
        try:
            pgconn.send_query_params(sql, params)
            if pgconn.flush() != 0:  # an idle socket takes a short query at once
                raise OSError("the query could not be sent at once")
        except Exception as error:  # noqa: BLE001 - a dead connection: the pool reads
            self.lost(socket, str(error))
            return None
        asked: Deferred[list[list[bytes | None]]] = Deferred()
        self._asked, self._rows, self._error = asked, [], None
        return asked

    def answer(self) -> None:
        """The rows of the query in flight, once its results are all in (the notices that
        came before them were taken first)."""
        asked = self._asked
        socket = self._socket
        if asked is None or socket is None:
            return
        pgconn = socket.conn.pgconn
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                break
            if result.status == _TUPLES_OK:
                self._rows += [
                    [result.get_value(row, col) for col in range(result.nfields)]
                    for row in range(result.ntuples)
                ]
            else:
                message = result.error_message or b"query failed"
                self._error = message.decode("utf-8", "replace")
        else:
            return  # more to come
        self._asked = None
        self.take()  # notices parsed after the results
        if self._error is not None:
            asked.errback(BackendUnavailable(self._error))
        else:
            asked.callback(self._rows)

    def deliver(self, payload: str) -> None:
        try:
            self._on_notice(payload)
        except Exception:  # noqa: BLE001 - one bad notice must not stop the others
            _log.failure("Handling change notice {payload!r} failed", payload=payload)

    def poll(self) -> None:
        """Take the notices received already, now (before a command answers), for one time
        slice at most."""
        if self._socket is not None:
            self._socket.doRead()

    def lost(self, socket: _Socket, why: str) -> None:
        if socket is not self._socket:
            return
        self._detach()
        if not self._stopped:
            _log.warn("Change notices connection lost ({why}); reconnecting", why=why)
            self._schedule()

    def _detach(self) -> None:
        if self._more is not None and self._more.active():
            self._more.cancel()
        self._more = None
        socket, self._socket = self._socket, None
        if socket is not None:
            self._reactor.removeReader(socket)
            socket.close()
        asked, self._asked = self._asked, None
        if asked is not None:
            asked.errback(BackendUnavailable("the change notices connection was lost"))

    def _schedule(self) -> None:
        delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS) - 1)]
        self._failures += 1
        self._retry = self._reactor.callLater(delay, self._reconnect)

    def _reconnect(self) -> None:
        self._retry = None
        d = threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._open)
        d.addCallbacks(self._reconnected, self._reconnect_failed)

    def _reconnected(self, conn: Any) -> None:
        self._attach(conn)
        if self._socket is None:
            return
        _log.info("Change notices connection restored")
        self._failures = 0
        try:
            self._on_reconnect()
        except Exception:  # noqa: BLE001
            _log.failure("Resynchronising after a lost notices connection failed")

    def _reconnect_failed(self, failure: Failure) -> None:
        if not self._stopped:
            _log.warn("Cannot reconnect for change notices: {why}", why=failure.getErrorMessage())
            self._schedule()

    def stop(self) -> None:
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._detach()
