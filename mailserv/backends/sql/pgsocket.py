"""A PostgreSQL connection's socket as the reactor sees it (``notify``'s and ``pgquick``'s)."""

from __future__ import annotations

import os
from typing import Any


class PgSocket:
    """``conn``'s socket for ``addReader``/``addWriter``.

    The reactor watches a duplicate of libpq's descriptor: libpq closes its own the moment
    it notices the connection died, and the reactor must still be able to unregister ours.
    """

    name = "mailserv-postgresql"
    """What the reactor's log lines about it say (``logPrefix``)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._fd = os.dup(conn.pgconn.socket)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return self.name

    def close(self) -> None:
        """The connection and the duplicate (the caller unregisters it first)."""
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - it is going away anyway
            pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
