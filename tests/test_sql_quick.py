"""SQLite's quick transactions (``mailserv/backends/sql/quick.py``): in the calling thread
when they can run there without waiting, in the pool when they cannot, with one outcome
either way; and the server's small commands ask for them."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from mailserv.backends.sql import SqlBackendFactory, dialect, quick, schema
from mailserv.backends.sql.db import ThreadedDatabase
from mailserv.backends.sql.dialect import parse_url
from mailserv.backends.sql.tx import Tx
from mailserv.errors import MailboxNotFound
from mailserv.interfaces import DELETED, SEEN, StoreMode
from mailserv.search import HasFlag, SearchProgram
from mailserv.testing import resolve

MESSAGE = b"From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n"
HERE = threading.get_ident()
BLOB = 32768


def _open(tmp_path: Path, sync: str = "full", durability: str = "fast") -> ThreadedDatabase:
    db = ThreadedDatabase(parse_url(f"sqlite://{tmp_path}/mail.db", "", sync, durability), 2)
    db._pool.start()  # the reactor does not run here: it would at its startup
    resolve(db.run(schema.prepare, write=True))
    resolve(db.run(_make_table, write=True))
    return db


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ThreadedDatabase]:
    opened = _open(tmp_path)
    yield opened
    opened.close()


def _make_table(tx: Tx) -> None:
    tx.execute("CREATE TABLE scratch (n INTEGER, data BLOB)")


def _where(tx: Tx) -> int:
    tx.scalar("SELECT count(*) FROM scratch")
    return threading.get_ident()


def _insert(tx: Tx, size: int = 8) -> int:
    tx.execute("INSERT INTO scratch VALUES (1, ?)", (b"x" * size,))
    return threading.get_ident()


def _count(tx: Tx) -> int:
    return int(tx.scalar("SELECT count(*) FROM scratch"))


def test_a_quick_read_runs_here_and_at_once(db: ThreadedDatabase) -> None:
    assert resolve(db.run(_where, quick=True), wait=False) == HERE
    assert resolve(db.run(_where)) != HERE  # not quick: the pool


def test_a_quick_flag_write_that_commits_without_fsync_runs_here(db: ThreadedDatabase) -> None:
    assert resolve(db.run(_insert, write=True, flags_only=True, quick=True), wait=False) == HERE
    assert resolve(db.run(_count)) == 1  # committed: the pool's connection sees it


@pytest.mark.parametrize(
    ("sync", "durability", "flags_only", "here"),
    [
        ("full", "fast", False, False),  # a write that is not of flags syncs
        ("full", "full", True, False),  # flag-durability=full: flag writes sync too
        ("normal", "full", True, True),  # sqlite-sync=normal: nothing syncs
        ("normal", "full", False, False),  # only flag-only writes come here
    ],
)
def test_a_write_that_would_sync_goes_to_the_pool(
    tmp_path: Path, sync: str, durability: str, flags_only: bool, here: bool
) -> None:
    db = _open(tmp_path, sync, durability)
    try:
        ran = resolve(db.run(_insert, write=True, flags_only=flags_only, quick=True))
        assert (ran == HERE) is here
        assert resolve(db.run(_count)) == 1
    finally:
        db.close()


def test_a_quick_write_waits_in_the_pool_while_another_of_this_process_runs(
    db: ThreadedDatabase,
) -> None:
    lock = db._writing
    assert lock is not None
    with lock:  # a pool thread's write transaction, as far as the quick one can tell
        d = db.run(_insert, write=True, flags_only=True, quick=True)
        time.sleep(0.05)
        assert not d.called
    assert resolve(d) != HERE
    assert resolve(db.run(_count)) == 1


def test_a_quick_write_goes_to_the_pool_while_another_process_writes(
    db: ThreadedDatabase, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "mail.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO scratch VALUES (2, NULL)")
        started = time.perf_counter()
        d = db.run(_insert, write=True, flags_only=True, quick=True)
        assert time.perf_counter() - started < 0.5  # not SQLite's busy wait, here
        assert not d.called
        other.execute("COMMIT")
    finally:
        other.close()
    assert resolve(d) != HERE
    assert resolve(db.run(_count)) == 2


def test_past_its_budget_a_transaction_is_undone_here_and_done_in_the_pool(
    db: ThreadedDatabase,
) -> None:
    ran: list[int] = []

    def slow_write(tx: Tx) -> int:
        ran.append(threading.get_ident())
        tx.execute("INSERT INTO scratch VALUES (1, NULL)")
        # Some 20 ms of SQLite's work: past the 2 ms budget.
        tx.scalar(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300000)"
            " SELECT count(*) FROM c"
        )
        return int(tx.scalar("SELECT count(*) FROM scratch"))

    started = time.perf_counter()
    d = db.run(slow_write, write=True, flags_only=True, quick=True)
    held = time.perf_counter() - started
    assert held < 0.015  # the reactor's share: the budget, not the work
    assert resolve(d) == 1  # the insert made here was rolled back
    assert ran[0] == HERE and ran[1:] and all(n != HERE for n in ran[1:])
    assert resolve(db.run(_count)) == 1


def test_an_error_of_a_quick_transaction_is_its_own(db: ThreadedDatabase) -> None:
    def missing(tx: Tx) -> None:
        tx.scalar("SELECT 1")
        raise MailboxNotFound("gone")

    with pytest.raises(MailboxNotFound):
        resolve(db.run(missing, quick=True), wait=False)

    def wrong(tx: Tx) -> None:
        tx.execute("SELECT * FROM no_such_table")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        resolve(db.run(wrong, quick=True), wait=False)


def test_the_pool_checkpoints_what_quick_writes_leave_in_the_wal(
    db: ThreadedDatabase, tmp_path: Path
) -> None:
    """The quick connection never checkpoints (a checkpoint syncs): without the pool's
    passive checkpoint every CHECKPOINT_EVERY writes, its writes would stay in the WAL."""
    main = tmp_path / "mail.db"
    assert (quick.CHECKPOINT_EVERY - 1) * BLOB > 1000 * 4096  # past SQLite's own checkpoints
    resolve(db.run(_checkpoint_now))
    before = main.stat().st_size
    for _ in range(quick.CHECKPOINT_EVERY - 1):
        resolve(db.run(_insert, BLOB, write=True, flags_only=True, quick=True), wait=False)
    assert main.stat().st_size == before  # all in the WAL
    resolve(db.run(_insert, BLOB, write=True, flags_only=True, quick=True), wait=False)
    deadline = time.monotonic() + 10
    while main.stat().st_size < before + quick.CHECKPOINT_EVERY * BLOB:
        assert time.monotonic() < deadline, "no checkpoint"
        reactor.iterate(0.01)  # type: ignore[attr-defined]


def _checkpoint_now(tx: Tx) -> None:
    tx.scalar("SELECT 1")


# -- the backend's commands --------------------------------------------------------------


def _started(tmp_path: Path, options: dict[str, str]) -> Any:
    built = SqlBackendFactory().build(options, str(tmp_path), reactor)
    built.db._pool.start()  # the reactor does not run here: it would at its startup
    resolve(built.start())
    return built


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Any]:
    built = _started(tmp_path, {})
    yield built
    resolve(built.stop())


def test_small_commands_need_no_database_thread(backend: Any) -> None:
    """SELECT's reads (once the mailbox's UID list was read whole), a 20-message FETCH, a
    one-message STORE, a SEARCH of a small mailbox: each answered without the reactor
    turning (no pool thread)."""
    account = resolve(backend.account("alice"))
    box = resolve(account.open("INBOX"))
    uids = [
        resolve(box.append(MESSAGE + b"%d" % n, frozenset(), None, None)).uid for n in range(20)
    ]
    assert list(resolve(box.uids())) == uids  # the first read of them all: the pool
    assert resolve(box.claim_recent()) == uids  # a write that syncs: the pool
    box = resolve(account.open("INBOX"), wait=False)
    assert resolve(box.status(), wait=False).messages == 20
    assert list(resolve(box.uids(), wait=False)) == uids  # the kept list, brought up
    assert resolve(box.first_unseen(), wait=False) == uids[0]
    assert resolve(box.claim_recent(), wait=False) == []
    assert [meta.uid for meta in resolve(box.fetch(uids), wait=False)] == uids
    stored = resolve(box.store(uids[:1], StoreMode.ADD, frozenset({SEEN}), None), wait=False)
    assert [change.uid for change in stored.changed] == uids[:1]
    assert resolve(box.first_unseen(), wait=False) == uids[1]
    found = resolve(box.search(SearchProgram(HasFlag(SEEN)), tuple(uids)), wait=False)
    assert list(found) == uids[:1]


def test_a_big_store_is_not_quick(backend: Any) -> None:
    account = resolve(backend.account("alice"))
    box = resolve(account.open("INBOX"))
    many = [MESSAGE + b"%d" % n for n in range(70)]
    uids = [resolve(box.append(raw, frozenset(), None, None)).uid for raw in many]
    d = Deferred.fromCoroutine(box.store(uids, StoreMode.ADD, frozenset({SEEN}), None))
    assert not d.called  # in the pool
    assert len(resolve(d).changed) == 70


def test_quick_off_puts_every_transaction_in_the_pool(tmp_path: Path) -> None:
    built = _started(tmp_path, {"quick": "off"})
    try:
        account = resolve(built.account("alice"))
        box = resolve(account.open("INBOX"))
        uid = resolve(box.append(MESSAGE, frozenset(), None, None)).uid
        fetched = Deferred.fromCoroutine(box.fetch([uid]))
        assert not fetched.called  # in the pool, even one message
        assert [meta.uid for meta in resolve(fetched)] == [uid]
    finally:
        resolve(built.stop())


def test_a_big_uid_list_is_brought_up_to_date_in_the_pool(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leaving expunged UIDs out of a kept list is Python work as long as the list: past
    QUICK_VIEW messages SELECT's status read goes to the pool (here the bound is made 3)."""
    from mailserv.backends.sql import mailbox

    monkeypatch.setattr(mailbox, "QUICK_VIEW", 3)
    account = resolve(backend.account("alice"))
    box = resolve(account.open("INBOX"))
    uids = [resolve(box.append(MESSAGE + b"%d" % n, frozenset(), None, None)).uid for n in range(5)]
    assert list(resolve(box.uids())) == uids
    resolve(box.store(uids[:1], StoreMode.ADD, frozenset({DELETED}), None))
    assert resolve(box.expunge(uids[:1], None)) == uids[:1]
    box = resolve(account.open("INBOX"), wait=False)
    status = Deferred.fromCoroutine(box.status())
    assert not status.called  # the list of 5 is brought up to date in the pool
    assert resolve(status).messages == 4
    assert list(resolve(box.uids(), wait=False)) == uids[1:]  # that read brought it


def test_every_connection_reads_the_file_through_a_memory_map(db: ThreadedDatabase) -> None:
    """The pool's connections and the quick one (both opened by the dialect) map the
    database file: a page their caches lack is read without a system call."""

    def mapped(tx: Tx) -> int:
        return int(tx.scalar("PRAGMA mmap_size"))

    assert resolve(db.run(mapped, write=True)) == dialect.SQLITE_MMAP_BYTES > 0
    conn = db.dialect.connect()
    try:
        assert conn.execute("PRAGMA mmap_size").fetchone() == (dialect.SQLITE_MMAP_BYTES,)
    finally:
        conn.close()
