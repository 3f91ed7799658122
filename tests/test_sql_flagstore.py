"""How the SQL backend commits a STORE: ``flag-durability`` (PostgreSQL commits flag
changes without waiting for the WAL flush unless told ``full``, SQLite without an fsync;
messages and EXPUNGE always wait) and the writes held back to be sent with COMMIT in one
round trip, which must stay one transaction: all of it or nothing, in order.

Transactions run inline against a throwaway PostgreSQL cluster (``pgcluster``) and SQLite.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pgcluster
import psycopg
import pytest
from psycopg import pq
from sqlsession import count_transactions, inline_session
from twisted.internet import reactor

from mailserv.backends.sql import SqlBackendFactory, hierarchy, messages
from mailserv.backends.sql.db import InlineDatabase
from mailserv.backends.sql.dialect import parse_url
from mailserv.backends.sql.tx import Tx
from mailserv.errors import BackendOptionError, MailboxNotFound
from mailserv.interfaces import DELETED, SEEN, StoreMode
from mailserv.testing import resolve

SYNCHRONOUS = "?options=-csynchronous_commit%3Don"
MESSAGE = b"From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/mail.db"
    return pgcluster.database_url()


def _inbox(db: InlineDatabase) -> int:
    from mailserv.backends.sql import schema

    db.call(schema.prepare, write=True)
    account = db.call(hierarchy.create_account, "alice", write=True)
    return int(db.call(hierarchy.open_mailbox, account, "INBOX").id)


@pytest.fixture
def pg(tmp_path: Path) -> Callable[[str], tuple[InlineDatabase, int]]:
    opened: list[InlineDatabase] = []

    def open_(durability: str) -> tuple[InlineDatabase, int]:
        # The test cluster commits asynchronously throughout; these sessions do not.
        url = pgcluster.database_url() + SYNCHRONOUS
        db = InlineDatabase(parse_url(url, str(tmp_path), flag_durability=durability))
        opened.append(db)
        return db, _inbox(db)

    yield open_  # type: ignore[misc]
    for db in opened:
        db.close()


def _then_setting(write: Callable[..., Any]) -> Callable[..., tuple[Any, str]]:
    """``write`` followed, in its transaction, by a look at ``synchronous_commit``."""

    def fn(tx: Tx, *args: Any) -> tuple[Any, str]:
        result = write(tx, *args)
        return result, str(tx.scalar("SELECT current_setting('synchronous_commit')"))

    return fn


@pytest.mark.parametrize("durability", ["fast", "full"])
def test_only_flag_changes_skip_the_flush_wait(
    pg: Callable[[str], tuple[InlineDatabase, int]], durability: str
) -> None:
    db, box = pg(durability)
    incoming = messages.Incoming.prepare(MESSAGE, frozenset(), None)
    (_, uid, _), setting = db.call(_then_setting(messages.append), box, incoming, "t", write=True)
    assert setting == "on"  # a message: always waits
    flags = frozenset({SEEN, DELETED})
    (changed, _), setting = db.call(
        _then_setting(messages.store_flags),
        box,
        [uid],
        StoreMode.ADD,
        flags,
        None,
        "t",
        write=True,
    )
    assert [c.uid for c in changed] == [uid]
    assert setting == ("off" if durability == "fast" else "on")
    (gone, _), setting = db.call(_then_setting(messages.expunge), box, None, "t", write=True)
    assert gone == [uid] and setting == "on"
    # A later transaction of the same connection is back to the server's setting.
    assert db.call(lambda tx: tx.scalar("SELECT current_setting('synchronous_commit')")) == "on"
    # The lock and the read of one round trip still tell a mailbox deleted meanwhile.
    db.call(lambda tx: tx.execute("DELETE FROM mailboxes WHERE id = ?", (box,)), write=True)
    for since in (None, 5):  # UID runs; row by row
        with pytest.raises(MailboxNotFound):
            db.call(messages.store_flags, box, [1], StoreMode.ADD, flags, since, "t", write=True)


def _sqlite_setting(write: Callable[..., Any]) -> Callable[..., tuple[Any, int]]:
    """``write`` followed, in its transaction, by a look at ``PRAGMA synchronous``."""

    def fn(tx: Tx, *args: Any) -> tuple[Any, int]:
        result = write(tx, *args)
        return result, int(tx.scalar("PRAGMA synchronous"))

    return fn


@pytest.mark.parametrize(("durability", "sync"), [("fast", 2), ("full", 2), ("fast", 1)])
def test_sqlite_commits_flag_changes_without_an_fsync(
    tmp_path: Path, durability: str, sync: int
) -> None:
    """``flag-durability=fast`` on SQLite (``sqlite-sync=full``): a STORE's transaction runs
    with ``synchronous = NORMAL`` (1, no fsync at its commit), every other write with the
    configured level (FULL is 2): the connection is set back to it by the next write that is
    not a STORE, not after each STORE (STOREs in a row set nothing)."""
    level = {2: "full", 1: "normal"}[sync]
    dialect = parse_url(f"sqlite://{tmp_path}/mail.db", "", level, durability)
    db = InlineDatabase(dialect)
    try:
        box = _inbox(db)
        incoming = messages.Incoming.prepare(MESSAGE, frozenset(), None)
        append = _sqlite_setting(messages.append)
        (_, uid, _), setting = db.call(append, box, incoming, "t", write=True, flags_only=False)
        assert setting == sync
        store = _sqlite_setting(messages.store_flags)
        args = (box, [uid], StoreMode.ADD, frozenset({SEEN}), None, "t")
        (changed, _), setting = db.call(store, *args, write=True, flags_only=True)
        assert [c.uid for c in changed] == [uid]
        assert setting == (1 if durability == "fast" else sync)
        seen: list[str] = []
        db._conn.set_trace_callback(seen.append)
        for mode in (StoreMode.REMOVE, StoreMode.ADD):
            (changed, _), setting = db.call(store, box, [uid], mode, frozenset({SEEN}), None,
                                            "t", write=True, flags_only=True)  # fmt: skip
            assert len(changed) == 1 and setting == (1 if durability == "fast" else sync)
        assert not [text for text in seen if "PRAGMA synchronous =" in text]  # in a row
        db._conn.set_trace_callback(None)
        again = messages.Incoming.prepare(MESSAGE + b"2", frozenset(), None)
        (_, second, _), setting = db.call(append, box, again, "t", write=True)
        assert setting == sync  # the next other write: the configured level
        with pytest.raises(MailboxNotFound):  # a failed STORE: the same
            db.call(store, box + 1, [1], StoreMode.ADD, frozenset({SEEN}), None, "t",
                    write=True, flags_only=True)  # fmt: skip
        delete = _sqlite_setting(messages.expunge)
        db.call(store, box, [second], StoreMode.ADD, frozenset({DELETED}), None, "t",
                write=True, flags_only=True)  # fmt: skip
        (gone, _), setting = db.call(delete, box, None, "t", write=True)
        assert gone == [second] and setting == sync
    finally:
        db.close()


def test_sqlite_pool_sets_the_level_back_for_other_writes(tmp_path: Path) -> None:
    """The server's pool (threads, each with its connection; adbapi hands every call a new
    wrapper of it): a STORE commits at NORMAL, the next APPEND on that connection at the
    configured FULL again.  The pool once kept the setting by wrapper, so an APPEND after
    a STORE committed at NORMAL."""
    from mailserv.backends.sql import schema
    from mailserv.backends.sql.db import ThreadedDatabase

    db = ThreadedDatabase(parse_url(f"sqlite://{tmp_path}/mail.db", "", "full", "fast"), 1)
    db._pool.start()  # the reactor does not run here: it would at its startup
    try:
        resolve(db.run(schema.prepare, write=True))
        account = resolve(db.run(hierarchy.create_account, "alice", write=True))
        box = int(resolve(db.run(hierarchy.open_mailbox, account, "INBOX")).id)
        append = _sqlite_setting(messages.append)
        store = _sqlite_setting(messages.store_flags)
        levels = []
        for n in range(3):
            incoming = messages.Incoming.prepare(MESSAGE + b"%d" % n, frozenset(), None)
            (_, uid, _), level = resolve(db.run(append, box, incoming, "t", write=True))
            levels.append(level)
            for mode in (StoreMode.ADD, StoreMode.REMOVE):
                args = (box, [uid], mode, frozenset({SEEN}), None, "t")
                _, level = resolve(db.run(store, *args, write=True, flags_only=True))
                levels.append(level)
        assert levels == [2, 1, 1] * 3
    finally:
        db.close()


def test_flag_durability_option(tmp_path: Path) -> None:
    for value in ("fast", "full"):
        built = SqlBackendFactory().build({"flag-durability": value}, str(tmp_path), reactor)
        assert built.dialect.flag_durability == value
    with pytest.raises(BackendOptionError, match="flag-durability"):
        SqlBackendFactory().build({"flag-durability": "never"}, str(tmp_path), reactor)


@pytest.fixture
def db(url: str, tmp_path: Path) -> Iterator[tuple[InlineDatabase, int]]:
    opened = InlineDatabase(parse_url(url, str(tmp_path), sqlite_sync="normal"))
    yield opened, _inbox(opened)
    opened.close()


def test_held_back_writes_are_seen_by_later_statements(db: tuple[InlineDatabase, int]) -> None:
    database, box = db

    def fn(tx: Tx) -> Any:
        tx.later("UPDATE mailboxes SET recent_mark = 7 WHERE id = ?", (box,))
        tx.later("UPDATE mailboxes SET recent_mark = recent_mark * 3 WHERE id = ?", (box,))
        return tx.scalar("SELECT recent_mark FROM mailboxes WHERE id = ?", (box,))

    assert database.call(fn, write=True) == 21


def test_a_failing_held_back_write_commits_nothing(db: tuple[InlineDatabase, int]) -> None:
    """The error of a write sent with COMMIT reaches the caller, and the writes before it
    in the transaction are rolled back with it."""
    database, box = db

    def fn(tx: Tx) -> None:
        tx.later("UPDATE mailboxes SET recent_mark = 99 WHERE id = ?", (box,))
        tx.later("UPDATE mailboxes SET name = NULL WHERE id = ?", (box,))

    with pytest.raises((psycopg.errors.NotNullViolation, sqlite3.IntegrityError)):
        database.call(fn, write=True)
    mark = database.call(lambda tx: tx.scalar("SELECT recent_mark FROM mailboxes"))
    assert mark == 0


def test_a_small_store_gives_back_the_messages_it_left_unchanged(url: str, tmp_path: Path) -> None:
    """Up to ``SHOWN_MAX`` messages, a STORE gives back the flags and modseqs of the
    messages it left as they were, read in its own transaction (the engine's FETCH
    responses need no second one), exactly as a read afterwards finds them; expunged UIDs
    are in neither list.  A bigger STORE leaves them to the engine to read (None)."""
    from test_sql_backend import resolve, started

    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    flagged = frozenset({"\\Flagged"})
    uids = [
        resolve(box.append(MESSAGE + b"%d" % n, flags, None, None)).uid
        for n, flags in enumerate([flagged, frozenset(), flagged | {SEEN}, frozenset(), flagged])
    ]
    resolve(box.store([uids[3]], StoreMode.ADD, frozenset({DELETED}), None))
    resolve(box.expunge([uids[3]], None))
    result = resolve(box.store(uids, StoreMode.ADD, flagged, None))
    assert [c.uid for c in result.changed] == [uids[1]]
    after = {m.uid: m for m in resolve(box.fetch_flags(uids))}
    assert result.unchanged is not None
    assert [(c.uid, c.flags, c.modseq) for c in result.unchanged] == [
        (uid, after[uid].flags, after[uid].modseq) for uid in (uids[0], uids[2], uids[4])
    ]
    nothing = resolve(box.store(uids[:1], StoreMode.ADD, flagged, None))
    assert nothing.changed == [] and nothing.unchanged is not None
    assert [(c.uid, c.flags) for c in nothing.unchanged] == [(uids[0], flagged)]

    many = [
        resolve(box.append(MESSAGE + b"x%d" % n, flagged, None, None)).uid
        for n in range(messages.SHOWN_MAX + 1)
    ]
    big = resolve(box.store(many, StoreMode.ADD, flagged, None))
    assert big.changed == [] and big.unchanged is None
    resolve(backend.stop())


def test_a_store_that_changes_nothing_is_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine answers a small STORE's FETCH responses from what the STORE read: the
    message it left as it was (already flagged) costs no second transaction, and the
    responses are those of a read (flags, MODSEQ with CONDSTORE)."""
    send, close = inline_session(f"sqlite://{tmp_path}/mail.db", tmp_path)
    for n, flags in enumerate((b"(\\Flagged)", b"()")):
        message = MESSAGE + b"%d" % n
        line = b"b APPEND INBOX %s {%d+}\r\n%s" % (flags, len(message), message)
        assert b"OK [APPENDUID" in send(line)
    assert b"c OK [READ-WRITE]" in send(b"c SELECT INBOX (CONDSTORE)")
    transactions = count_transactions(monkeypatch)
    reply = send(b"d STORE 1:2 +FLAGS (\\Flagged)")
    assert reply.startswith(
        b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent) MODSEQ (2))\r\n"
        b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) MODSEQ (4))\r\nd OK"
    ), reply
    assert transactions == ["store_and_show"]
    transactions.clear()
    reply = send(b"e STORE 2 +FLAGS (\\Flagged)")
    assert reply.startswith(b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) MODSEQ (4))\r\ne OK"), (
        reply
    )
    assert transactions == ["store_and_show"]
    monkeypatch.undo()
    close()


def _round_trips(db: InlineDatabase, fn: Callable[..., Any], *args: Any, **kw: Any) -> int:
    """The round trips of one transaction, read from libpq's trace of the connection: each
    time the client, having sent, reads again."""
    trace = Path(tempfile.mkstemp(prefix="pq-trace-")[1])
    try:
        with trace.open("w") as out:
            db._conn.pgconn.trace(out.fileno())
            db._conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            try:
                db.call(fn, *args, **kw)
            finally:
                db._conn.pgconn.untrace()
        sides = [line.split("\t", 1)[0] for line in trace.read_text().splitlines() if line]
    finally:
        trace.unlink()
    return sum(1 for sent, got in itertools.pairwise(sides) if (sent, got) == ("F", "B"))


def test_an_append_and_a_store_take_the_round_trips_they_say(
    pg: Callable[[str], tuple[InlineDatabase, int]],
) -> None:
    """PostgreSQL: an APPEND of new content is the lock (with BEGIN), the content row, then
    every held-back write with COMMIT; a one-message STORE is the lock with the read, then
    the writes with COMMIT.  (psycopg's own BEGIN would be a round trip of its own, and its
    ``commit()`` in a pipeline syncs once more, a round trip that carries nothing.)"""
    db, box = pg("fast")
    incoming = messages.Incoming.prepare(MESSAGE, frozenset(), None)
    db.call(messages.append, box, incoming, "t", write=True)
    new = messages.Incoming.prepare(MESSAGE + b"new content\r\n", frozenset(), None)
    assert _round_trips(db, messages.append, box, new, "t", write=True) == 3
    args = (box, [1], StoreMode.ADD, frozenset({SEEN}), None, "t")
    db.call(messages.store_flags, *args, write=True, flags_only=True)
    args = (box, [1], StoreMode.REMOVE, frozenset({SEEN}), None, "t")
    assert _round_trips(db, messages.store_flags, *args, write=True, flags_only=True) == 2
