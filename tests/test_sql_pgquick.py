"""PostgreSQL's quick reads on the reactor (``mailserv/backends/sql/pgquick.py``): no pool
thread, the driver's values, one snapshot when asked for, the pool when they cannot."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pgcluster
import psycopg
import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults

from mailserv.backends.sql import hierarchy, messages, reads, schema
from mailserv.backends.sql.db import InlineDatabase, ThreadedDatabase
from mailserv.backends.sql.dialect import parse_url
from mailserv.backends.sql.pgquick import APPLICATION_NAME, CONNECTIONS, LOCK_WAIT_MS, ROWS
from mailserv.backends.sql.rows import Zones
from mailserv.backends.sql.tx import Tx
from mailserv.errors import MailboxNotFound
from mailserv.testing import resolve

HERE = threading.get_ident()
MESSAGE = b"From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n"


@pytest.fixture
def url() -> str:
    return pgcluster.database_url()


@pytest.fixture
def db(url: str) -> Iterator[ThreadedDatabase]:
    opened = ThreadedDatabase(parse_url(url, "", "full", "fast"), 2)
    opened._pool.start()  # the reactor does not run here: it would at its startup
    resolve(opened.run(schema.prepare, write=True))
    yield opened
    opened.close()


def _ready(db: ThreadedDatabase) -> None:
    """The quick connections open (the first reads that find none go to the pool)."""
    resolve(gatherResults([db.run(_where, quick=True) for _ in range(CONNECTIONS)]))
    deadline = time.monotonic() + 10
    while len(db._far._idle) < CONNECTIONS:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the quick connections did not open"
        reactor.iterate(0.01)  # type: ignore[attr-defined]


def _where(tx: Tx) -> int:
    tx.scalar("SELECT 1")
    return threading.get_ident()


def test_a_quick_read_runs_on_the_reactor(db: ThreadedDatabase) -> None:
    _ready(db)
    assert resolve(db.run(_where, quick=True)) == HERE
    assert resolve(db.run(_where)) != HERE  # not quick: the pool


VALUES = (
    "SELECT 1::int2, 2::int4, 3::int8, -4::int8, 'ü text'::text, 'v'::varchar,"
    " '\\x00ff10'::bytea, true, false, 1.5::float8, NULL::int8, NULL::text, ''::text,"
    " ''::bytea, 9223372036854775807::int8"
)


def _values(tx: Tx) -> Any:
    return tx.one(VALUES), threading.get_ident()


def test_values_come_back_as_the_driver_gives_them(db: ThreadedDatabase) -> None:
    _ready(db)
    quick, where = resolve(db.run(_values, quick=True))
    pooled, elsewhere = resolve(db.run(_values))
    assert where == HERE and elsewhere != HERE
    assert quick == pooled
    assert [type(value) for value in quick] == [type(value) for value in pooled]


def test_parameters_go_as_the_driver_sends_them(db: ThreadedDatabase) -> None:
    def echo(tx: Tx) -> Any:
        row = tx.one(
            "SELECT ?::int8, ?::text, ?::bytea, ?::bool, ?::int8, ?::text",
            (7, "ä?b", b"\x00\x01\xff", True, None, ""),
        )
        # Bytes are bytea without a cast, as the driver types them (not hex text).
        return (
            *row,
            tx.scalar("SELECT octet_length(?)", (b"\x00\x01\xff",)),
        ), threading.get_ident()

    _ready(db)
    quick, where = resolve(db.run(echo, quick=True))
    assert where == HERE
    assert quick == (7, "ä?b", b"\x00\x01\xff", True, None, "", 3)


def test_a_type_not_decoded_here_is_read_by_the_pool(db: ThreadedDatabase) -> None:
    ran: list[int] = []

    def numeric(tx: Tx) -> Any:
        ran.append(threading.get_ident())
        return tx.scalar("SELECT sum(x::int8) FROM (VALUES (1), (2)) v(x)")  # numeric

    _ready(db)
    assert resolve(db.run(numeric, quick=True)) == Decimal(3)
    assert HERE in ran and ran[-1] != HERE


def test_a_snapshot_read_sees_one_snapshot_and_ends_its_transaction(
    db: ThreadedDatabase, url: str
) -> None:
    resolve(db.run(_scratch, write=True))

    def counts(snapshot: bool) -> Any:
        inserted: list[bool] = []

        def fn(tx: Tx) -> tuple[int, int, int]:
            if snapshot:
                tx.snapshot()
            first = int(tx.scalar("SELECT count(*) FROM scratch"))
            if not inserted:  # between the two statements, another session's insert
                inserted.append(True)
                with psycopg.connect(url, autocommit=True) as other:
                    other.execute("INSERT INTO scratch VALUES (1)")
            second = int(tx.scalar("SELECT count(*) FROM scratch"))
            return first, second, threading.get_ident()

        return fn

    _ready(db)
    first, second, where = resolve(db.run(counts(snapshot=False), quick=True))
    assert where == HERE and second == first + 1
    first, second, where = resolve(db.run(counts(snapshot=True), quick=True))
    assert where == HERE and second == first
    with psycopg.connect(url, autocommit=True) as look:
        deadline = time.monotonic() + 10
        while _in_transaction(look):
            assert time.monotonic() < deadline, "a quick connection stayed in its transaction"
            reactor.iterate(0.01)  # type: ignore[attr-defined]


def _scratch(tx: Tx) -> None:
    tx.later("CREATE TABLE scratch (n int8)")


def _in_transaction(conn: Any) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        " AND state LIKE 'idle in transaction%%'",
        (APPLICATION_NAME,),
    ).fetchone()
    return int(row[0])


def test_errors_are_the_drivers_and_the_functions_own(db: ThreadedDatabase) -> None:
    def wrong(tx: Tx) -> None:
        tx.execute("SELECT * FROM no_such_table")

    def missing(tx: Tx) -> None:
        tx.scalar("SELECT 1")
        raise MailboxNotFound("gone")

    _ready(db)
    with pytest.raises(psycopg.errors.UndefinedTable):
        resolve(db.run(wrong, quick=True))
    with pytest.raises(MailboxNotFound):
        resolve(db.run(missing, quick=True))
    assert resolve(db.run(_where, quick=True)) == HERE  # the connection still serves


def test_more_reads_than_connections_wait_their_turn(db: ThreadedDatabase) -> None:
    _ready(db)
    many = [db.run(_where, quick=True) for _ in range(5 * CONNECTIONS)]
    assert resolve(gatherResults(many)) == [HERE] * (5 * CONNECTIONS)


def test_lost_connections_are_replaced_and_nothing_waits_forever(
    db: ThreadedDatabase, url: str
) -> None:
    _ready(db)
    waiting: list[Deferred[int]] = [db.run(_where, quick=True) for _ in range(3 * CONNECTIONS)]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (APPLICATION_NAME,),
        )
    found = resolve(gatherResults(waiting))
    assert len(found) == 3 * CONNECTIONS  # answered, here or by the pool
    _ready(db)  # new connections
    assert resolve(db.run(_where, quick=True)) == HERE


def _filled(url: str, count: int, flags: frozenset[str]) -> tuple[int, int]:
    """Alice's account and INBOX, with ``count`` messages of ``flags`` (UIDs 1...)."""
    inline = InlineDatabase(parse_url(url, "", "full", "fast"))
    try:
        account = inline.call(hierarchy.create_account, "alice", write=True)
        box = int(inline.call(hierarchy.open_mailbox, account, "INBOX").id)
        for n in range(count):
            incoming = messages.Incoming.prepare(MESSAGE + b"%d" % n, flags, None)
            inline.call(messages.append, box, incoming, "t", write=True)
    finally:
        inline.close()
    return account, box


def test_the_backends_quick_reads_give_what_the_pool_gives(db: ThreadedDatabase, url: str) -> None:
    account, box = _filled(url, 30, frozenset({"$x"}))
    _ready(db)
    zones = Zones()
    uids = list(range(1, 31, 2))
    calls: list[tuple[Any, tuple[Any, ...]]] = [
        (hierarchy.open_with_look, (account, "INBOX")),
        (reads.look, (box, None)),
        (reads.first_unseen, (box,)),
        (reads.fetch_flags, (box, uids, zones)),
        (reads.uids_since, (box, None)),
    ]
    for fn, args in calls:
        assert resolve(db.run(fn, *args, quick=True)) == resolve(db.run(fn, *args)), fn
    quick, sizes, highest = resolve(db.run(reads.fetch_with_sizes, box, uids, zones, quick=True))
    pooled = resolve(db.run(reads.fetch_with_sizes, box, uids, zones))
    assert (sizes, highest) == (pooled[1], pooled[2])
    assert [(m.uid, m.flags, m.size, m.info.envelope) for m in quick] == [
        (m.uid, m.flags, m.size, m.info.envelope) for m in pooled[0]
    ]


# -- writes ------------------------------------------------------------------------------


def _scratch_checked(tx: Tx) -> None:
    tx.later("CREATE TABLE scratch (n int8 CHECK (n < 100))")


def _scratch_rows(tx: Tx) -> list[int]:
    return [int(n) for (n,) in tx.all("SELECT n FROM scratch ORDER BY n")]


def test_a_quick_write_runs_on_the_reactor_and_commits_once(db: ThreadedDatabase, url: str) -> None:
    """Held-back statements go with the next one; the statements sent are not sent again
    when the function runs again; the notices go with COMMIT."""
    resolve(db.run(_scratch_checked, write=True))
    ran: list[int] = []

    def write(tx: Tx) -> tuple[int, int]:
        ran.append(threading.get_ident())
        tx.later("INSERT INTO scratch VALUES (?)", (1,))
        seen = int(tx.scalar("SELECT count(*) FROM scratch"))
        tx.later("INSERT INTO scratch VALUES (?)", (2,))
        tx.later("INSERT INTO scratch VALUES (?)", (3,))
        again = int(tx.scalar("SELECT count(*) FROM scratch"))
        tx.notify("quick-test")
        tx.later("INSERT INTO scratch VALUES (?)", (4,))
        return seen, again

    _ready(db)
    with psycopg.connect(url, autocommit=True) as listening:
        listening.execute("LISTEN mailserv_changes")
        assert resolve(db.run(write, write=True, flags_only=True, quick=True)) == (1, 3)
        assert set(ran) == {HERE} and len(ran) == 3  # stopped at each of the two reads
        assert resolve(db.run(_scratch_rows)) == [1, 2, 3, 4]
        got = [notice.payload for notice in listening.notifies(timeout=5, stop_after=1)]
        assert got == ["quick-test"]


def test_a_quick_write_that_fails_is_rolled_back_and_made_by_the_pool(
    db: ThreadedDatabase,
) -> None:
    resolve(db.run(_scratch_checked, write=True))
    ran: list[int] = []

    def write(tx: Tx) -> None:
        ran.append(threading.get_ident())
        tx.later("INSERT INTO scratch VALUES (?)", (1,))
        tx.scalar("SELECT count(*) FROM scratch")
        tx.later("INSERT INTO scratch VALUES (?)", (500,))  # fails its CHECK at COMMIT's trip

    _ready(db)
    with pytest.raises(psycopg.errors.CheckViolation):
        resolve(db.run(write, write=True, flags_only=True, quick=True))
    assert ran[0] == HERE and ran[-1] != HERE  # tried here, then the pool (which raises)
    assert resolve(db.run(_scratch_rows)) == []  # nothing of either committed
    assert resolve(db.run(_where, quick=True)) == HERE  # the connection serves again


def test_the_backends_store_on_the_reactor(db: ThreadedDatabase, url: str) -> None:
    from mailserv.interfaces import SEEN, StoreMode

    _, box = _filled(url, 3, frozenset())
    _ready(db)
    args = (box, [2], StoreMode.ADD, frozenset({SEEN}), None, "t")
    stored = resolve(db.run(messages.store_and_show, *args, write=True, quick=True))
    assert [(change.uid, change.flags) for change in stored.changed] == [(2, frozenset({SEEN}))]
    flags = resolve(db.run(reads.fetch_flags, box, [1, 2, 3], Zones()))
    assert [meta.flags for meta in flags] == [frozenset(), frozenset({SEEN}), frozenset()]
    assert resolve(db.run(reads.status, box)).unseen == 2


def test_an_answer_of_many_rows_is_read_by_the_pool(db: ThreadedDatabase) -> None:
    """Decoding them would hold the reactor: a read answered with more than ROWS rows goes
    to the pool (as SQLite's past its time budget)."""

    def numbers(count: int) -> Any:
        def fn(tx: Tx) -> tuple[int, int]:
            rows = tx.all("SELECT generate_series(1, ?::int8)", (count,))
            return len(rows), threading.get_ident()

        return fn

    _ready(db)
    assert resolve(db.run(numbers(ROWS), quick=True)) == (ROWS, HERE)
    count, where = resolve(db.run(numbers(ROWS + 1), quick=True))
    assert count == ROWS + 1 and where != HERE


def test_a_write_waiting_for_a_lock_leaves_the_connections_to_the_others(
    db: ThreadedDatabase, url: str
) -> None:
    """Writes that wait for a lock held elsewhere go to the pool after LOCK_WAIT_MS: they do
    not keep the few connections here, and the quick reads of everyone else, waiting."""
    resolve(db.run(_scratch_checked, write=True))
    resolve(db.run(_insert_one, write=True))

    def locking(tx: Tx) -> int:
        tx.later("UPDATE scratch SET n = n + 1")
        tx.scalar("SELECT 1")
        return threading.get_ident()

    _ready(db)
    with psycopg.connect(url) as holder:  # a transaction holding the row, as a long COPY might
        holder.execute("UPDATE scratch SET n = n")
        writes = [db.run(locking, write=True, quick=True) for _ in range(2 * CONNECTIONS)]
        done: list[Any] = []
        for write in writes:
            write.addBoth(lambda result: (done.append(result), result)[1])
        started = time.monotonic()
        assert resolve(db.run(_where, quick=True)) == HERE
        assert time.monotonic() - started < 5 * LOCK_WAIT_MS / 1000 + 1
        assert done == []  # the writes wait, in the pool
        holder.rollback()
    made = resolve(gatherResults(writes))
    # The first ones waited their LOCK_WAIT_MS and went to the pool; a later one may have
    # found the lock free and committed here.
    assert sum(where != HERE for where in made) >= CONNECTIONS
    assert resolve(db.run(_scratch_rows)) == [1 + 2 * CONNECTIONS]


def _insert_one(tx: Tx) -> None:
    tx.later("INSERT INTO scratch VALUES (1)")
