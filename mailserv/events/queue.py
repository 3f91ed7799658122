"""The webhooks' durable queue: an SQLite file under the data dir, and the dead-letter log.

``DATA/webhooks/queue.sqlite`` holds one row per (event, hook) until the hook took it (the
row is deleted) or it was given up (moved to ``DATA/webhooks/dead-letter.jsonl``, one JSON
object a line).  Rows keep their attempt count and next retry time, so a restart goes on
where the last run stopped.  Every call runs in one thread of its own (SQLite's I/O never
holds the reactor) and in the order made; the file is WAL-journalled, so the workers of
``--workers N`` append to it while the master delivers.  Freed pages are given back to the
file system as rows go (incremental vacuum).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["QueuedEvent", "StoredEvent", "WebhookQueue"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hook TEXT NOT NULL,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_order ON events (hook, key, id);
CREATE TABLE IF NOT EXISTS lanes (
    hook TEXT NOT NULL,
    key TEXT NOT NULL,
    next_at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (hook, key)
);
CREATE INDEX IF NOT EXISTS lanes_due ON lanes (next_at);
CREATE TABLE IF NOT EXISTS depth (hook TEXT PRIMARY KEY, events INTEGER NOT NULL);
"""
"""``events`` in arrival order; a lane per (hook, key) with events waiting, and when its
oldest may be tried (the others wait behind it); ``depth``, the events waiting per hook."""
_VACUUM_EVERY = 1000
"""Rows removed between two incremental vacuums."""
_COLUMNS = "id, hook, key, type, body, created, attempts"


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """An event for one hook, as the sink appends it."""

    hook: str
    key: str
    """The order it keeps: its (user, mailbox)."""
    type: str
    body: bytes
    created: float


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """The oldest waiting event of one (hook, key), due now."""

    id: int
    hook: str
    key: str
    type: str
    body: bytes
    created: float
    attempts: int


Heads = tuple[list[StoredEvent], float | None, int]


class WebhookQueue:
    """The queue file at ``path``; ``limits`` caps the rows waiting per hook URL."""

    def __init__(
        self, reactor: Any, path: str, dead_letter: str, limits: Mapping[str, int]
    ) -> None:
        self._reactor = reactor
        self.path = path
        self.dead_letter = dead_letter
        self._limits = dict(limits)
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="webhook-queue")
        self._db: sqlite3.Connection | None = None
        self._removed = 0

    # -- the reactor's side: each call a Deferred of the thread's answer ------------------

    def start(self) -> Deferred[None]:
        self._pool.start()
        return self._call(self._open)

    async def stop(self) -> None:
        """Closes the file after the calls made before; then the thread ends."""
        try:
            await self._call(self._close)
        finally:
            self._pool.stop()

    def append(self, events: Sequence[QueuedEvent]) -> Deferred[None]:
        return self._call(self._append, list(events))

    def heads(self, now: float, limit: int) -> Deferred[Heads]:
        """The oldest event of each (hook, key) if due by ``now`` (at most ``limit``, oldest
        first); the earliest time one that is not due yet will be (None: none waits); and
        how many events wait in all."""
        return self._call(self._heads, now, limit)

    def delivered(self, event: StoredEvent) -> Deferred[None]:
        return self._call(self._delete, [event])

    def retry(self, event: StoredEvent, attempts: int, at: float) -> Deferred[None]:
        """Try ``event`` (and so its lane) again at ``at``."""
        return self._call(self._retry, event, attempts, at)

    def give_up(self, event: StoredEvent, attempts: int, reason: str) -> Deferred[None]:
        """To the dead-letter log with ``reason``; the next event of its key goes on."""
        return self._call(self._give_up, [event], attempts, reason)

    def _call(self, f: Callable[..., T], *args: object) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, f, *args)

    # -- the thread's side -----------------------------------------------------------------

    def _open(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table only
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)
        os.chmod(self.path, 0o600)
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.execute("PRAGMA incremental_vacuum")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

    @property
    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "the webhook queue is not open"
        return self._db

    def _append(self, events: list[QueuedEvent]) -> None:
        db = self._conn
        added: dict[str, int] = {}
        for event in events:
            added[event.hook] = added.get(event.hook, 0) + 1
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO events (hook, key, type, body, created) VALUES (?, ?, ?, ?, ?)",
                [(e.hook, e.key, e.type, e.body, e.created) for e in events],
            )
            db.executemany(
                "INSERT OR IGNORE INTO lanes (hook, key) VALUES (?, ?)",
                {(e.hook, e.key) for e in events},
            )
            db.executemany(
                "INSERT INTO depth VALUES (?, ?) "
                "ON CONFLICT (hook) DO UPDATE SET events = events + excluded.events",
                added.items(),
            )
        for hook in added:
            self._enforce_limit(hook)

    def _enforce_limit(self, hook: str) -> None:
        """Past the hook's limit, its oldest events go to the dead-letter log."""
        limit = self._limits.get(hook)
        found = self._conn.execute("SELECT events FROM depth WHERE hook = ?", (hook,)).fetchone()
        if limit is None or found is None or found[0] <= limit:
            return
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE hook = ? ORDER BY id LIMIT ?",
            (hook, found[0] - limit),
        ).fetchall()
        self._give_up([StoredEvent(*row) for row in rows], None, "queue full")

    def _heads(self, now: float, limit: int) -> Heads:
        due = []
        lanes = self._conn.execute(
            "SELECT hook, key FROM lanes WHERE next_at <= ? ORDER BY next_at LIMIT ?",
            (now, limit),
        ).fetchall()
        for hook, key in lanes:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE hook = ? AND key = ? ORDER BY id LIMIT 1",
                (hook, key),
            ).fetchone()
            if row is not None:
                due.append(StoredEvent(*row))
            else:  # emptied by another process between two looks
                self._conn.execute("DELETE FROM lanes WHERE hook = ? AND key = ?", (hook, key))
        (wake,) = self._conn.execute(
            "SELECT min(next_at) FROM lanes WHERE next_at > ?", (now,)
        ).fetchone()
        (depth,) = self._conn.execute("SELECT coalesce(sum(events), 0) FROM depth").fetchone()
        return sorted(due, key=lambda event: event.id), wake, int(depth)

    def _retry(self, event: StoredEvent, attempts: int, at: float) -> None:
        with self._conn as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE events SET attempts = ? WHERE id = ?", (attempts, event.id))
            db.execute(
                "UPDATE lanes SET next_at = ? WHERE hook = ? AND key = ?",
                (at, event.hook, event.key),
            )

    def _delete(self, events: list[StoredEvent]) -> None:
        """Remove ``events``; a lane left empty goes, the next of another may go now."""
        with self._conn as db:
            db.execute("BEGIN IMMEDIATE")
            gone: dict[str, int] = {}
            for event in events:  # one in flight may have gone already (queue full)
                if db.execute("DELETE FROM events WHERE id = ?", (event.id,)).rowcount:
                    gone[event.hook] = gone.get(event.hook, 0) + 1
            for hook, key in {(e.hook, e.key) for e in events}:
                left = db.execute(
                    "SELECT 1 FROM events WHERE hook = ? AND key = ? LIMIT 1", (hook, key)
                ).fetchone()
                if left is None:
                    db.execute("DELETE FROM lanes WHERE hook = ? AND key = ?", (hook, key))
                else:
                    db.execute(
                        "UPDATE lanes SET next_at = 0 WHERE hook = ? AND key = ?", (hook, key)
                    )
            db.executemany(
                "UPDATE depth SET events = max(0, events - ?) WHERE hook = ?",
                [(count, hook) for hook, count in gone.items()],
            )
        self._removed += len(events)
        if self._removed >= _VACUUM_EVERY:
            self._removed = 0
            self._conn.execute("PRAGMA incremental_vacuum")

    def _give_up(self, events: list[StoredEvent], attempts: int | None, reason: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = []
        for event in events:
            try:
                body: object = json.loads(event.body)
            except ValueError:
                body = event.body.decode("utf-8", "replace")
            record = {
                "dropped": stamp,
                "reason": reason,
                "hook": event.hook,
                "attempts": event.attempts if attempts is None else attempts,
                "event": body,
            }
            lines.append(json.dumps(record, separators=(",", ":")) + "\n")
        fd = os.open(self.dead_letter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        self._delete(events)
