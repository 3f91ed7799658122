"""The SQL backend beyond the shared contract: URLs, options, schema versions, content
addressing, UID allocation under concurrent writers, SEARCH in SQL (checked against the
engine's evaluator), change notices between frontends, and the users table.

Transactions run inline (no reactor); each test runs on SQLite and, where the behaviour
differs, on PostgreSQL (a throwaway cluster from ``pgcluster``).
"""

from __future__ import annotations

import functools
import gc
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pgcluster
import psycopg
import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailserv import testing
from mailserv.auth.passwd import InvalidUsername, UserExists, UserNotFound
from mailserv.auth.schemes import hash_password
from mailserv.auth.sqlusers import SqlUsers, SqlUserStore, insert_user
from mailserv.auth.users import IUserAdmin, IUserStore, UserStoreChecker
from mailserv.backends.kit import flagchanges as changes
from mailserv.backends.sql import (
    SqlBackend,
    SqlBackendFactory,
    fulltext,
    inline_database,
    messages,
    reads,
    schema,
    search,
    unseen,
)
from mailserv.backends.sql import backend as sql_backend
from mailserv.backends.sql.db import InlineDatabase
from mailserv.backends.sql.dialect import parse_url
from mailserv.backends.sql.notify import Listener
from mailserv.backends.sql.rows import (
    FLAG_INDEXES_4,
    MARK_INDEXES,
    MAX_NOTICE,
    Notice,
    flag_test,
    flags_text,
    mark_test,
    uid_notices,
)
from mailserv.backends.sql.tx import NOTIFY_CHANNEL, ReadOnly, Tx
from mailserv.errors import BackendError, BackendOptionError, MailboxNotFound
from mailserv.imap.search.parse import parse_search
from mailserv.interfaces import IMailbox, IMailboxListener, Narrowed, NewMessage, StoreMode
from mailserv.message import store
from mailserv.message.headers import search_text
from mailserv.message.parse import parse_message
from mailserv.quota import StoredQuota
from mailserv.search import ModSeqAtLeast, SearchProgram
from mailserv.search.binding import bind
from mailserv.search.evaluate import SearchContext, evaluate
from mailserv.syntax.lexer import parse_command

FACTORY = SqlBackendFactory(database=inline_database)


resolve = functools.partial(testing.resolve, wait=False)  # I/O inline: no reactor needed


@implementer(IMailboxListener)
class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def messages_added(self, mailbox: IMailbox, uids: Any, origin: object) -> None:
        self.events.append(("added", list(uids)))

    def messages_expunged(self, mailbox: IMailbox, uids: Any, origin: object) -> None:
        self.events.append(("expunged", list(uids)))

    def flags_changed(self, mailbox: IMailbox, changes: Any, origin: object) -> None:
        self.events.append(("flags", list(changes)))

    def mailbox_lost(self, mailbox: Any, reason: str) -> None:
        self.events.append(("lost", [], reason))


def message(n: int, sender: str = "Alice <alice@example.org>", subject: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: bob@example.org\r\nSubject: {subject or f'Note {n}'}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{n}@example.org>\r\n"
        f"\r\nBody of note {n}.\r\n"
    ).encode()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/mail.db"
    return pgcluster.database_url()


def started(url: str, data_dir: Path, **options: str) -> SqlBackend:
    if url.startswith("sqlite"):
        options.setdefault("sqlite-sync", "normal")  # no fsync per commit: faster tests
    backend = FACTORY.build({"url": url, **options}, str(data_dir), reactor)
    resolve(backend.start())
    return backend


@pytest.fixture
def backend(url: str, tmp_path: Path) -> Iterator[SqlBackend]:
    built = started(url, tmp_path)
    yield built
    resolve(built.stop())


def query(
    backend: SqlBackend, sql: str, params: tuple[Any, ...] = (), write: bool = False
) -> list[Any]:
    """``sql``'s rows (``write``: a statement that writes, which a read transaction refuses)."""

    def fn(tx: Tx) -> list[Any]:
        return tx.all(sql, params)

    return list(resolve(backend.db.run(fn, write=write)))


# -- URLs and options ---------------------------------------------------------------------


def test_sqlite_urls(tmp_path: Path) -> None:
    data = str(tmp_path)
    assert parse_url(None, data).connargs == (f"{data}/mail.db",)
    assert parse_url("sqlite:", data).connargs == (f"{data}/mail.db",)
    assert parse_url("sqlite:box/m.db", data).connargs == (f"{data}/box/m.db",)
    assert parse_url("sqlite:///var/x%20y.db", data).connargs == ("/var/x y.db",)
    assert parse_url("sqlite://localhost/var/m.db", data).connargs == ("/var/m.db",)


def test_postgres_url_is_shown_without_password(tmp_path: Path) -> None:
    dialect = parse_url("postgresql://mail:secret@db.example:5433/mail?sslmode=require", "d")
    assert dialect.is_postgres
    assert dialect.display == "postgresql://mail@db.example:5433/mail"
    assert "secret" not in repr(dialect.display)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"url": "mysql://x/y"}, "url"),
        ({"url": "sqlite::memory:"}, "url"),
        ({"url": "sqlite://otherhost/x.db"}, "url"),
        ({"url": "postgresql://host/"}, "url"),
        ({"pool": "0"}, "pool"),
        ({"pool": "many"}, "pool"),
        ({"auth": "ldap"}, "auth"),
        ({"sqlite-sync": "off"}, "sqlite-sync"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, str], named: str, tmp_path: Path) -> None:
    with pytest.raises(BackendOptionError, match=named):
        SqlBackendFactory().build(options, str(tmp_path), reactor)


def test_sql_backend_is_a_plugin() -> None:
    from mailserv.backends import available_backends

    assert available_backends()["sql"].name == "sql"


# -- schema versions ----------------------------------------------------------------------


def test_schema_is_created_once_and_checked(url: str, tmp_path: Path) -> None:
    backend = started(url, tmp_path)
    assert resolve(backend.db.run(schema.current_version)) == schema.LATEST
    resolve(backend.stop())
    again = started(url, tmp_path)  # a second start finds it in place
    assert resolve(again.db.run(schema.upgrade, write=True)) == []
    resolve(again.stop())


def _set_version(url: str, data_dir: Path, version: int) -> None:
    db = InlineDatabase(parse_url(url, str(data_dir)))

    def fn(tx: Tx) -> None:
        tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = ?", (version,))

    db.call(fn, write=True)
    db.close()


def test_older_schema_needs_an_upgrade_and_newer_is_refused(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve(started(url, tmp_path).stop())
    later = schema.Migration(schema.LATEST + 1, "test", ("CREATE INDEX t_size ON mail (size)",))
    with monkeypatch.context() as patch:  # a newer mailserv, with one more migration
        patch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, later))
        patch.setattr(schema, "LATEST", later.version)
        with pytest.raises(BackendError, match="mailserv db upgrade"):
            resolve(FACTORY.build({"url": url}, str(tmp_path), reactor).start())
    _set_version(url, tmp_path, schema.LATEST + 1)  # written by a newer mailserv
    with pytest.raises(BackendError, match="newer"):
        resolve(FACTORY.build({"url": url}, str(tmp_path), reactor).start())


def _undo_version_15(tx: Tx) -> None:
    """What migration 15 added goes (each message's kept FETCH heads)."""
    tx.execute("ALTER TABLE message_info DROP COLUMN heads")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 14")


def _undo_version_14(tx: Tx) -> None:
    """What migrations 14 and 15 added goes (PostgreSQL: the header fields' trigram index;
    the texts' indexes and the extension are schema 3's)."""
    _undo_version_15(tx)
    tx.execute(f"DROP INDEX IF EXISTS {fulltext.FIELD_INDEX}")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 13")


def _undo_version_13(tx: Tx) -> None:
    """What migrations 13 and 14 added goes (the SORT/THREAD keys of every message)."""
    _undo_version_14(tx)
    tx.execute("DROP TABLE message_keys")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 12")


def _undo_version_12(tx: Tx) -> None:
    """What migrations 12 and 13 added goes (the change log, mail.marks, the kept unseen
    UIDs), what 12 took away comes back (the flag indexes on mail.flags; PostgreSQL: the
    index on mail.modseq, the default fill factor)."""
    _undo_version_13(tx)
    for name in MARK_INDEXES.values():
        tx.execute(f"DROP INDEX {name}")
    tx.execute("ALTER TABLE mail DROP COLUMN marks")
    restore = FLAG_INDEXES_4 if tx.dialect.is_postgres else MARK_INDEXES
    for flag, name in FLAG_INDEXES_4.items():
        if name in restore.values():
            test = flag_test(tx.dialect.find, flag, present=flag != "\\Seen")
            tx.execute(f"CREATE INDEX {name} ON mail (mailbox_id, uid) WHERE {test}")
    if tx.dialect.is_postgres:
        tx.execute("CREATE INDEX mail_modseq ON mail (mailbox_id, modseq)")
        tx.execute("ALTER TABLE mail RESET (fillfactor)")
        tx.execute("CLUSTER mail USING mail_pkey")
    tx.execute("DROP TABLE modseq_log")
    tx.execute("ALTER TABLE mailboxes DROP COLUMN log_from")
    tx.execute("ALTER TABLE mailboxes DROP COLUMN unseen_uids")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 11")


def _undo_version_11(tx: Tx) -> None:
    """What migrations 11 and 12 added goes (the ACL table too)."""
    _undo_version_12(tx)
    tx.execute("DROP TABLE acl")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 10")


def _undo_version_10(tx: Tx) -> None:
    """What migrations 10 and 11 added goes (the users' quota columns too)."""
    _undo_version_11(tx)
    tx.execute("ALTER TABLE users DROP COLUMN quota_storage_kib")
    tx.execute("ALTER TABLE users DROP COLUMN quota_messages")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 9")


def _undo_version_9(tx: Tx) -> None:
    """What migrations 9 to 11 added goes (app passwords, users.imap_login too)."""
    _undo_version_10(tx)
    tx.execute("DROP TABLE app_passwords")
    tx.execute("ALTER TABLE users DROP COLUMN imap_login")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 8")


def _undo_version_8(tx: Tx) -> None:
    """What migrations 8 and 9 added goes (the SAVEDATE column too)."""
    _undo_version_9(tx)
    tx.execute("ALTER TABLE mail DROP COLUMN savedate")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 7")


def _undo_version_7(tx: Tx) -> None:
    """What migrations 7 and 8 added goes (the MAILBOXID column too)."""
    _undo_version_8(tx)
    tx.execute("ALTER TABLE mailboxes DROP COLUMN mailboxid")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 6")


def _undo_version_6(tx: Tx) -> None:
    """What migrations 6 to 8 added goes (the index by day too)."""
    _undo_version_7(tx)
    tx.execute("DROP INDEX mail_day")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 5")


def _undo_version_5(tx: Tx) -> None:
    """What migrations 5 and later added goes (SQLite's word index; nothing on PostgreSQL)."""
    _undo_version_6(tx)
    if not tx.dialect.is_postgres:
        tx.execute("DROP TRIGGER message_text_gone")
        tx.execute(
            "CREATE TRIGGER message_text_gone AFTER DELETE ON messages"
            " BEGIN DELETE FROM message_text WHERE rowid = old.id; END"
        )
        for table in (
            "fresh_terms",
            "fresh",
            "term_grams",
            "terms",
            "words",
            "long_texts",
            "word_backfill",
        ):
            tx.execute(f"DROP TABLE {table}")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 4")


def _undo_version_4(tx: Tx) -> None:
    _undo_version_5(tx)
    for name in ("mail_unseen", "mail_flagged", "mail_deleted"):
        tx.execute(f"DROP INDEX {name}")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 3")


def _undo_version_3(tx: Tx) -> None:
    """What migrations 3 and 4 added goes (the texts with it)."""
    _undo_version_4(tx)
    if not tx.dialect.is_postgres:
        tx.execute("DROP TRIGGER message_text_gone")
    tx.execute("DROP TABLE message_text")
    tx.execute("DROP TABLE text_backfill")
    tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 2")


def test_upgrade_to_2_rederives_the_address_columns(url: str, tmp_path: Path) -> None:
    """A version 1 store (address columns without the normalised forms, MI1 records) is
    refused until ``db upgrade``, which parses every message again."""
    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    raw = message(1, sender="<user-from (comment)@ (comment) domain.org>")
    uid = resolve(box.append(raw, frozenset(), None, None)).uid
    old_record = b"MI1\n" + store.dumps(parse_message(raw))[len(store.MARKER) :]
    old_from = search_text(b"<user-from (comment)@ (comment) domain.org>").casefold()

    def make_version_1(tx: Tx) -> None:
        _undo_version_3(tx)
        tx.execute("UPDATE messages SET from_addr = ?", (old_from,))
        tx.execute("UPDATE message_info SET info = ?", (old_record,))
        tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 1")

    resolve(backend.db.run(make_version_1, write=True))
    assert resolve(box.search(_program("FROM user-from@domain.org"), [uid])) == []
    resolve(backend.stop())
    with pytest.raises(BackendError, match="mailserv db upgrade"):
        resolve(FACTORY.build({"url": url}, str(tmp_path), reactor).start())
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    assert db.call(schema.upgrade, write=True) == list(range(2, schema.LATEST + 1))
    db.close()

    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    assert resolve(box.search(_program("FROM user-from@domain.org"), [uid])) == [uid]
    assert resolve(box.search(_program("FROM alice"), [uid])) == []
    (record,) = query(backend, "SELECT info FROM message_info")[0]
    assert bytes(record).startswith(store.MARKER)
    assert resolve(box.fetch([uid]))[0].info == parse_message(raw)
    resolve(backend.stop())


# -- content addressing and reference counts ------------------------------------------


def test_a_message_is_stored_once(backend: SqlBackend) -> None:
    account = resolve(backend.account("alice"))
    resolve(account.create("Archive"))
    inbox = resolve(account.open("INBOX"))
    other = resolve(resolve(backend.account("bob")).open("INBOX"))
    for box in (inbox, inbox, other):
        resolve(box.append(message(1), frozenset(), None, None))
    resolve(inbox.copy(resolve(inbox.uids()), "Archive", None))
    assert query(backend, "SELECT refs FROM messages") == [(5,)]
    assert query(backend, "SELECT count(*) FROM message_data") == [(1,)]
    assert query(backend, "SELECT count(*) FROM message_info") == [(1,)]

    resolve(inbox.store(resolve(inbox.uids()), StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(inbox.expunge(None, None))
    resolve(account.delete("Archive"))
    assert query(backend, "SELECT refs FROM messages") == [(1,)]
    resolve(other.store(resolve(other.uids()), StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(other.expunge(None, None))
    for table in ("messages", "message_info", "message_data"):
        assert query(backend, f"SELECT count(*) FROM {table}") == [(0,)]


def test_internal_date_keeps_its_zone(backend: SqlBackend) -> None:
    inbox = resolve(resolve(backend.account("alice")).open("INBOX"))
    when = datetime(2021, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    uid = resolve(inbox.append(message(1), frozenset(), when, None)).uid
    (meta,) = resolve(inbox.fetch([uid]))
    assert meta.internaldate == when
    assert meta.internaldate.utcoffset() == timedelta(hours=-5)


def test_a_deleted_mailbox_object_reports_not_found(backend: SqlBackend) -> None:
    account = resolve(backend.account("alice"))
    resolve(account.create("Gone"))
    box = resolve(account.open("Gone"))
    listener = Recorder()
    box.add_listener(listener)
    uid = resolve(box.append(message(1), frozenset(), None, None)).uid
    resolve(account.delete("Gone"))
    assert listener.events[-1] == ("expunged", [uid])
    with pytest.raises(MailboxNotFound):
        resolve(box.append(message(2), frozenset(), None, None))
    with pytest.raises(MailboxNotFound):
        resolve(box.status())


def test_dense_and_sparse_uid_lists(backend: SqlBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reads, "IN_CHUNK", 4)  # several IN (...) chunks
    inbox = resolve(resolve(backend.account("alice")).open("INBOX"))
    uids = [resolve(inbox.append(message(n), frozenset(), None, None)).uid for n in range(120)]
    sparse = uids[::13] + [10**9]
    assert [m.uid for m in resolve(inbox.fetch(sparse))] == uids[::13]
    result = resolve(inbox.store(sparse, StoreMode.ADD, frozenset({"\\Deleted"}), None))
    assert [c.uid for c in result.changed] == uids[::13]
    scattered = uids[::3]  # dense enough for one range query, filtered afterwards
    assert [m.uid for m in resolve(inbox.fetch(scattered))] == scattered
    assert resolve(inbox.expunge(scattered, None)) == sorted(set(scattered) & set(uids[::13]))
    assert resolve(inbox.expunge(None, None)) == sorted(set(uids[::13]) - set(scattered))
    assert resolve(inbox.status()).messages == 120 - len(uids[::13])


def test_store_over_a_whole_range_keeps_each_message_exact(backend: SqlBackend) -> None:
    inbox = resolve(resolve(backend.account("alice")).open("INBOX"))
    kinds = [frozenset(), frozenset({"\\Seen"}), frozenset({"$A"}), frozenset({"\\Seen", "$A"})]
    uids = [resolve(inbox.append(message(n), kinds[n % 4], None, None)).uid for n in range(12)]
    resolve(inbox.store(uids[3:4], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(inbox.expunge(None, None))  # a gap in the range
    before = {m.uid: m for m in resolve(inbox.fetch(uids))}
    result = resolve(inbox.store(list(before), StoreMode.ADD, frozenset({"\\Seen"}), None))
    after = {m.uid: m for m in resolve(inbox.fetch(uids))}
    assert sorted(c.uid for c in result.changed) == [
        u for u, m in before.items() if "\\Seen" not in m.flags
    ]
    for uid, meta in after.items():
        assert meta.flags == before[uid].flags | {"\\Seen"}
        changed = "\\Seen" not in before[uid].flags
        assert (meta.modseq > before[uid].modseq) is changed
    assert resolve(inbox.status()).unseen == 0


def test_content_read_ahead_serves_a_fetch_batch(backend: SqlBackend) -> None:
    inbox = resolve(resolve(backend.account("alice")).open("INBOX"))
    uids = [resolve(inbox.append(message(n), frozenset(), None, None)).uid for n in range(10)]
    resolve(inbox.fetch(uids))
    assert resolve(inbox.content(uids[0])) == message(0)
    assert uids[5] in inbox._raw  # loaded with the first: no query of its own
    assert resolve(inbox.content(uids[5])) == message(5)
    with pytest.raises(KeyError):
        resolve(inbox.content(999))


# -- read transactions --------------------------------------------------------------------


def test_a_read_transaction_refuses_to_write(backend: SqlBackend) -> None:
    """A read (``write=False``) that writes is a bug, refused on both dialects (on
    PostgreSQL each statement of a read would commit alone); the rows stay as they were."""
    resolve(resolve(backend.account("alice")).open("INBOX"))
    names = "SELECT id, name FROM mailboxes ORDER BY id"
    before = query(backend, names)
    attempts: list[Callable[[Tx], object]] = [
        lambda tx: tx.execute("UPDATE mailboxes SET name = 'x'"),
        lambda tx: tx.later("UPDATE mailboxes SET name = 'x'"),
        lambda tx: tx.many("UPDATE mailboxes SET name = ? WHERE id = ?", [("x", before[0][0])]),
        lambda tx: tx.notify("payload"),
    ]
    for attempt in attempts:
        with pytest.raises(ReadOnly):
            resolve(backend.db.run(attempt))
    assert query(backend, names) == before
    renamed = "UPDATE mailboxes SET name = name RETURNING id"
    assert len(query(backend, renamed, write=True)) == len(before)  # a write may


def test_a_read_keeps_no_transaction_open_unless_it_asks_for_one_snapshot(
    url: str, tmp_path: Path
) -> None:
    """On PostgreSQL a read runs in autocommit mode: between its statements no transaction
    is open (none holds back VACUUM, no BEGIN and COMMIT round trips), and each statement sees
    what was committed before it.  After ``Tx.snapshot`` its statements see one snapshot."""
    if not url.startswith("postgresql"):
        pytest.skip("SQLite: a read is one transaction, in one snapshot")
    backend = started(url, tmp_path)
    resolve(resolve(backend.account("alice")).open("INBOX"))
    other = psycopg.connect(url, autocommit=True)
    uidnext = "SELECT uidnext FROM mailboxes WHERE name = 'INBOX'"

    def read_twice(tx: Tx, snapshot: bool) -> tuple[int, str, int]:
        if snapshot:
            tx.snapshot()
        first = int(tx.scalar(uidnext))
        states = other.execute(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state LIKE 'idle in%'"
        ).fetchall()
        other.execute("UPDATE mailboxes SET uidnext = uidnext + 1 WHERE name = 'INBOX'")
        return first, ",".join(row[0] for row in states), int(tx.scalar(uidnext))

    try:
        first, open_between, second = resolve(backend.db.run(read_twice, False))
        assert (open_between, second) == ("", first + 1)
        first, open_between, second = resolve(backend.db.run(read_twice, True))
        assert (open_between, second) == ("idle in transaction", first)
        assert resolve(backend.db.run(read_twice, False))[0] == first + 1
    finally:
        other.close()
        resolve(backend.stop())


# -- concurrent writers -------------------------------------------------------------------


def test_concurrent_appends_never_share_a_uid(url: str, tmp_path: Path) -> None:
    """Separate connections (as separate frontends have) append to one mailbox at once."""
    resolve(started(url, tmp_path).stop())
    backends = [started(url, tmp_path) for _ in range(4)]
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(backend: SqlBackend, offset: int) -> None:
        try:
            box = resolve(resolve(backend.account("alice")).open("INBOX"))
            for n in range(25):
                uid = resolve(box.append(message(offset + n), frozenset(), None, None)).uid
                with lock:
                    results.append(uid)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(b, i * 1000)) for i, b in enumerate(backends)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(results) == len(set(results)) == 100
    box = resolve(resolve(backends[0].account("alice")).open("INBOX"))
    assert sorted(results) == list(resolve(box.uids()))
    assert resolve(box.status()).messages == 100
    for backend in backends:
        resolve(backend.stop())


# -- SEARCH in SQL against the engine's evaluator ----------------------------------------

SENDERS = [
    "Alice <alice@example.org>",
    "=?UTF-8?B?SsO8cmdlbg==?= <juergen@example.de>",
    "bob@example.net",
    "ALICE SMITH <asmith@example.com>",
    "<user-from (comment)@ (comment) domain.org>",
    '"Real Name" <real@b.org>',
    "real@b.org (Real Name)",
    "Friends: a@b.org,\r\n c@d.org;",
]
SUBJECTS = ["Lunch on Thursday", "Budget REVIEW", "grüße aus Köln", "", "Re: budget"]
KEYWORDS = ["$Work", "$work", "Later", "$Junk"]
SYSTEM = ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "\\Draft"]


def _fill(box: Any, rng: random.Random, count: int) -> None:
    for _ in range(count):
        flags = {f for f in SYSTEM + KEYWORDS if rng.random() < 0.3}
        zone = timezone(timedelta(hours=rng.choice([-11, -5, 0, 2, 13])))
        when = datetime(2021, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(0, 24 * 40))
        date = (
            ""
            if rng.random() < 0.2
            else "Date: "
            + rng.choice(
                ["Mon, 7 Feb 1994 21:52:25 -0800", "Sun, 03 Jan 2021 23:59:00 -1100", "garbage"]
            )
            + "\r\n"
        )
        body = "x" * rng.randrange(0, 400)
        raw = (
            f"From: {rng.choice(SENDERS)}\r\nTo: Team <team@example.org>\r\n"
            f"Cc: {rng.choice(['', 'carol@example.org'])}\r\n"
            f"Subject: {rng.choice(SUBJECTS)}\r\n{date}\r\n{body}\r\n"
        ).encode()
        resolve(box.append(raw, frozenset(flags), when.astimezone(zone), None))


ATOMS = [
    "ALL", "SEEN", "UNSEEN", "FLAGGED", "DELETED", "ANSWERED", "DRAFT", "UNDRAFT", "NEW", "OLD",
    "RECENT", "KEYWORD $Work", "KEYWORD $WORK", "UNKEYWORD later", "KEYWORD $Junk",
    "FROM alice", "FROM ALICE", "FROM Jürgen", "TO team", "CC carol", "BCC nobody",
    'SUBJECT budget', 'SUBJECT "GRÜSSE"', 'SUBJECT ""', "HEADER Subject lunch", "LARGER 250",
    "SMALLER 120", "BEFORE 10-Jan-2021", "ON 15-Jan-2021", "SINCE 1-Feb-2021",
    "BEFORE 2-Jan-2021", "ON 1-Jan-2021", "ON 9-Feb-2021", "SINCE 9-Feb-2021",
    "SENTBEFORE 1-Jan-2000", "SENTON 3-Jan-2021", "SENTSINCE 3-Jan-2021", "UID 3:9",
    "UID 20:*", "1:4", "*", "BODY x", "TEXT lunch", "HEADER X-Missing foo",
    "FROM user-from@domain.org", 'FROM "Real Name <REAL@b.org>"', "FROM friends",
    "FROM c@d.org", 'HEADER From "Real Name <real@b.org>"', 'HEADER From "(comment)"',
    "HEADER FROM user-from@domain.org", "FROM {18}\r\ncomment)\nuser-from",
    "HEADER From {13}\r\norg\nuser-from",
]  # fmt: skip


def _program(text: str) -> SearchProgram:
    return parse_search(parse_command(b"a SEARCH " + text.encode()).args, 1000)


def _random_query(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 3 and roll < 0.2:
        return f"OR {_random_query(rng, depth + 1)} {_random_query(rng, depth + 1)}"
    if depth < 3 and roll < 0.35:
        return f"NOT {_random_query(rng, depth + 1)}"
    if depth < 3 and roll < 0.45:
        return "(" + " ".join(_random_query(rng, depth + 1) for _ in range(2)) + ")"
    return rng.choice(ATOMS)


def test_search_in_sql_matches_the_engine(backend: SqlBackend) -> None:
    rng = random.Random(7)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    _fill(box, rng, 60)
    all_uids = resolve(box.uids())
    view = all_uids[5:]  # a session that has not seen the first five expunged yet, say
    recent = frozenset(view[-7:])
    metas = resolve(box.fetch(view))
    contents = {uid: resolve(box.content(uid)) for uid in view}

    async def content(uid: int) -> bytes:
        return contents[uid]

    context = SearchContext(view, recent, content)
    queries = ATOMS + [_random_query(rng) for _ in range(150)]
    answered = 0
    for text in queries:
        program = _program(text)
        expected = resolve(evaluate(program, metas, context))
        bound = SearchProgram(bind(program.key, view, recent), program.charset)
        got = resolve(box.search(bound, view))
        if got is None:
            assert "X-Missing" in text, text  # under a NOT: not narrowed down
            continue
        answered += 1
        if isinstance(got, Narrowed):  # the engine evaluates what is left, as here
            assert "X-Missing" in text, text
            assert set(expected) <= set(got.uids), text
            left = [meta for meta in metas if meta.uid in set(got.uids)]
            got = resolve(evaluate(program, left, context))
        assert got == expected, text
    assert answered > len(queries) * 0.6


@pytest.mark.parametrize("kept", [True, False])
def test_unseen_reads_back_from_the_newest_to_the_kept_count(
    backend: SqlBackend, monkeypatch: pytest.MonkeyPatch, kept: bool
) -> None:
    """UNSEEN alone reads the unseen UIDs the mailbox row keeps, or where it keeps none (too
    many runs) the rows from the newest back, stopping at the mailbox's count of unseen
    messages: the evaluator's answer for none unseen, the newest, scattered ones, and
    sessions that do not see the newest or the oldest messages."""
    if not kept:
        monkeypatch.setattr(unseen, "MAX_RUNS", 0)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    uids = [resolve(box.append(message(n), frozenset(), None, None)).uid for n in range(30)]
    seen = frozenset({"\\Seen"})
    for unread in ([], uids[-3:], uids[::7], uids[:2] + uids[-1:]):
        resolve(box.store(uids, StoreMode.ADD, seen, None))
        resolve(box.store(unread, StoreMode.REMOVE, seen, None))
        assert (_kept_unseen(backend, box) != "None") is (kept or not unread)
        for view in (uids, uids[:-2], uids[4:], uids[3:9] + uids[20:24]):
            metas = resolve(box.fetch(view))
            context = SearchContext(view, frozenset(), box.content)
            expected = resolve(evaluate(_program("UNSEEN"), metas, context))
            assert expected == [uid for uid in view if uid in unread]
            assert resolve(box.search(_program("UNSEEN"), view)) == expected, (unread, view)
        clause = search.translate(_program("UNSEEN"), backend.db.dialect.find, uids)
        assert clause is not None and clause.counted == "unseen"


def test_header_of_other_fields_is_narrowed_down(backend: SqlBackend) -> None:
    """To the messages with the needle in their texts and a line of the field; not under
    a NOT (then the engine evaluates it all)."""
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    uids = [resolve(box.append(message(n), frozenset(), None, None)).uid for n in range(5)]
    extra = b"X-Tag: blue\r\n" + message(5)
    uids.append(resolve(box.append(extra, frozenset(), None, None)).uid)
    got = resolve(box.search(_program("HEADER Message-ID <3@"), uids))
    assert isinstance(got, Narrowed) and list(got.uids) == [uids[3]]
    got = resolve(box.search(_program('HEADER x-tag ""'), uids))
    assert isinstance(got, Narrowed) and list(got.uids) == [uids[5]]
    got = resolve(box.search(_program("OR HEADER X-Tag blue SEEN"), uids))
    assert isinstance(got, Narrowed) and list(got.uids) == [uids[5]]
    assert resolve(box.search(_program("NOT HEADER Message-ID example"), uids)) is None
    assert resolve(box.search(_program("BODY note"), uids[:1])) == uids[:1]  # the text index
    assert resolve(box.search(_program("FROM alice"), [])) == []


# -- change notices -----------------------------------------------------------------------


def test_notice_round_trip_and_splitting() -> None:
    notice = Notice("abc", "a", 12, 7, "1:5,9")
    assert Notice.decode(notice.encode()) == notice
    assert notice.uids() == [1, 2, 3, 4, 5, 9]
    flagged = Notice.decode(Notice("abc", "f", 12, 7, "3:4 \\Seen $Work").encode())
    assert flagged is not None
    assert (flagged.uids(), flagged.flags()) == ([3, 4], frozenset({"\\Seen", "$Work"}))
    assert Notice("abc", "f", 12, 7, "3").flags() == frozenset()
    assert Notice.decode("junk") is None
    assert Notice.decode("s a x 1 2") is None
    uids = list(range(1, 20000, 2))
    payloads = list(uid_notices("abc", "x", 3, 9, uids))
    assert len(payloads) > 1
    assert all(len(p) <= MAX_NOTICE for p in payloads)
    decoded = [Notice.decode(p) for p in payloads]
    assert [uid for d in decoded if d for uid in d.uids()] == uids
    assert flags_text([]) == "  "
    assert flags_text(["b", "a"]) == " a b "


def test_notices_of_one_frontend_become_events_in_another(tmp_path: Path) -> None:
    """What the LISTEN connection would deliver, fed by hand to the second backend."""
    url = pgcluster.database_url()
    writer, reader = started(url, tmp_path), started(url, tmp_path)
    listen = psycopg.connect(url, autocommit=True)
    listen.execute(f"LISTEN {NOTIFY_CHANNEL}")
    try:
        mine = resolve(resolve(writer.account("alice")).open("INBOX"))
        theirs = resolve(resolve(reader.account("alice")).open("INBOX"))
        listener = Recorder()
        theirs.add_listener(listener)
        uid = resolve(mine.append(message(1), frozenset(), None, None)).uid
        resolve(mine.store([uid], StoreMode.ADD, frozenset({"\\Deleted"}), None))
        resolve(mine.expunge(None, None))
        payloads = [n.payload for n in listen.notifies(timeout=1, stop_after=3)]
        assert len(payloads) == 3
        reader._notice(payloads[0].replace(writer.sender, reader.sender))  # its own: ignored
        for payload in payloads:
            reader._notice(payload)
        assert [kind for kind, _ in listener.events] == ["added", "flags", "expunged"]
        assert listener.events[0][1] == [uid]
        (change,) = listener.events[1][1]
        assert (change.uid, change.flags) == (uid, frozenset({"\\Deleted"}))
        assert listener.events[2][1] == [uid]

        # Many distinct flag sets: the notice names the modseq, the reader reads the rows.
        uids = [
            resolve(mine.append(message(n), frozenset({f"$k{n}"}), None, None)).uid
            for n in range(20)
        ]
        resolve(mine.store(uids, StoreMode.ADD, frozenset({"\\Seen"}), None))
        payloads = [n.payload for n in listen.notifies(timeout=1, stop_after=21)]
        assert Notice.decode(payloads[-1]).data == ""  # type: ignore[union-attr]
        listener.events.clear()
        for payload in payloads:
            reader._notice(payload)
        assert [kind for kind, _ in listener.events] == ["added"] * 20 + ["flags"]
        flags = {c.uid: c.flags for c in listener.events[-1][1]}
        assert flags == {uid: frozenset({"\\Seen", f"$k{n}"}) for n, uid in enumerate(uids)}

        # A rename made through the writer renames the reader's live mailbox object too.
        writer_account = resolve(writer.account("alice"))
        resolve(writer_account.create("Old"))
        old = resolve(resolve(reader.account("alice")).open("Old"))
        resolve(writer_account.rename("Old", "New"))
        for notice in listen.notifies(timeout=1, stop_after=1):
            reader._notice(notice.payload)
        assert old.name == "New"
    finally:
        listen.close()
        resolve(writer.stop())
        resolve(reader.stop())


def test_appending_many_tells_every_modseq(backend: SqlBackend) -> None:
    """Each message of a MULTIAPPEND has a modseq of its own: all are told, so the mailbox
    knows itself up to date (no look at the end of the command finds it behind and reads
    the new messages' flags again, to report them twice)."""
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    batch = [NewMessage(message(n), frozenset({"\\Flagged"}), None) for n in range(3)]
    resolve(box.append_many(batch, None))
    assert box.synced == resolve(box.status()).highestmodseq


_OWN_READS: dict[str, Callable[[Any, int], object]] = {
    "STORE": lambda box, uid: box.store([uid], StoreMode.ADD, frozenset({"$Read"}), None),
    "FETCH": lambda box, uid: box.fetch([uid]),
    "SELECT": lambda box, uid: box.status(),
    # SEARCH's paths: the rows read by one statement, the kept answer's check of the
    # mailbox row, the UIDs the row keeps, and a date test answered from the first and
    # last days
    "SEARCH FLAGGED": lambda box, uid: box.search(_program("FLAGGED"), [uid]),
    "SEARCH FROM": lambda box, uid: box.search(_program("FROM someone"), [uid]),
    "SEARCH UNSEEN": lambda box, uid: box.search(_program("UNSEEN"), [uid]),
    "SEARCH SINCE": lambda box, uid: box.search(_program("SINCE 1-Jan-1990"), [uid]),
}


@pytest.mark.parametrize("command", sorted(_OWN_READS))
def test_a_commands_own_read_spares_its_look_only_when_it_missed_nothing(
    command: str, tmp_path: Path
) -> None:
    """``catch_up(since)``: the mailbox row's HIGHESTMODSEQ that a command's own read found
    (SELECT's status, FETCH's rows, the usual STORE's read under the lock), sent after
    ``since``, stands for the end-of-command look when every change up to it was told
    (no round trip then).  When it found another frontend's change not told yet (its
    NOTIFY unread here), the look runs and that change is told before catch_up returns."""
    read = _OWN_READS[command]
    url = pgcluster.database_url()
    writer, reader = started(url, tmp_path), started(url, tmp_path)
    listen = Listener(reader.dialect, reader._notice, reader._resynchronise, reactor)
    listen._attach(listen._open())  # the LISTEN connection a server's backend has
    reader._listener = listen
    turned = testing.resolve  # the look's answer comes through the reactor
    try:
        mine = resolve(resolve(writer.account("alice")).open("INBOX"))
        uids = [resolve(mine.append(message(n), frozenset(), None, None)).uid for n in (1, 2)]
        theirs = resolve(resolve(reader.account("alice")).open("INBOX"))
        turned(theirs.catch_up())
        listener = Recorder()
        theirs.add_listener(listener)
        notices = listen._socket
        reactor.removeReader(notices)  # the writer's NOTIFY waits, unread
        resolve(mine.store([uids[0]], StoreMode.ADD, frozenset({"\\Flagged"}), None))
        since = time.perf_counter()
        resolve(read(theirs, uids[1]))
        reactor.addReader(notices)
        turned(theirs.catch_up(since))
        told = {c.uid: c.flags for kind, changes in listener.events for c in changes}
        assert told[uids[0]] == {"\\Flagged"}

        since = time.perf_counter()
        resolve(read(theirs, uids[1]))
        spared = Deferred.fromCoroutine(theirs.catch_up(since))
        assert spared.called  # no look: the read showed nothing missing
        looked = Deferred.fromCoroutine(theirs.catch_up(time.perf_counter()))
        assert not looked.called  # a call after the read: the look at the mailbox row
        turned(looked)
    finally:
        resolve(writer.stop())
        resolve(reader.stop())


def test_resynchronising_reports_what_was_missed(url: str, tmp_path: Path) -> None:
    """After lost notices, a live mailbox catches up from the modseq it last knew."""
    writer, reader = started(url, tmp_path), started(url, tmp_path)
    mine = resolve(resolve(writer.account("alice")).open("INBOX"))
    kept = resolve(mine.append(message(1), frozenset(), None, None)).uid
    gone = resolve(mine.append(message(2), frozenset(), None, None)).uid
    theirs = resolve(resolve(reader.account("alice")).open("INBOX"))
    listener = Recorder()
    theirs.add_listener(listener)
    resolve(mine.store([kept], StoreMode.ADD, frozenset({"\\Seen"}), None))
    resolve(mine.store([gone], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(mine.expunge(None, None))
    new = resolve(mine.append(message(3), frozenset(), None, None)).uid
    reader._resynchronise()
    events = dict(listener.events)
    assert events["expunged"] == [gone]
    assert [c.uid for c in events["flags"]] == [kept]
    assert events["added"] == [new]
    listener.events.clear()
    reader._resynchronise()
    assert listener.events == []
    resolve(writer.stop())
    resolve(reader.stop())


# -- users ----------------------------------------------------------------------------------


def test_users_table(url: str, tmp_path: Path) -> None:
    resolve(started(url, tmp_path).stop())
    users = SqlUsers(InlineDatabase(parse_url(url, str(tmp_path))))
    users.add_user("bob", "{PLAIN}x")
    with pytest.raises(UserExists):
        users.add_user("bob", "{PLAIN}y")
    with pytest.raises(InvalidUsername):
        users.add_user("bad:name", "{PLAIN}y")
    users.set_password("bob", "{PLAIN}z")
    entry = users.lookup("bob")
    assert entry is not None and entry.password == "{PLAIN}z"
    assert users.users() == ["bob"]
    users.remove_user("bob")
    with pytest.raises(UserNotFound):
        users.remove_user("bob")
    assert users.lookup("bob") is None


def test_users_checker(url: str, tmp_path: Path) -> None:
    backend = started(url, tmp_path, auth="sql")
    users = SqlUsers(InlineDatabase(backend.dialect))
    users.add_user("carol", hash_password(b"right"))
    checker = backend.credentials_checker()
    assert isinstance(checker, UserStoreChecker) and isinstance(checker.store, SqlUserStore)
    assert verifyObject(IUserStore, checker.store) and verifyObject(IUserAdmin, users)

    def login(user: str, password: str) -> Any:
        return resolve(checker.requestAvatarId(UsernamePassword(user.encode(), password.encode())))

    assert login("carol", "right") == "carol"
    for user, password in [("carol", "wrong"), ("dave", "right"), ("", "")]:
        with pytest.raises(UnauthorizedLogin):
            login(user, password)
    resolve(backend.stop())


def test_passwd_file_auth_is_the_default(tmp_path: Path) -> None:
    assert FACTORY.build({}, str(tmp_path), reactor).credentials_checker() is None


@pytest.mark.parametrize("lazy", [False, True])
def test_store_over_uid_runs_in_sql(
    backend: SqlBackend, monkeypatch: pytest.MonkeyPatch, lazy: bool
) -> None:
    """Runs of UIDs with several old flag sets: one UPDATE per set, each message exact; the
    changes come back ascending (made as read when there are many), the counts follow."""
    if lazy:
        monkeypatch.setattr(changes, "LAZY_CHANGES", 2)
    inbox = resolve(resolve(backend.account("alice")).open("INBOX"))
    kinds = [frozenset(), frozenset({"\\Seen"}), frozenset({"$A"}), frozenset({"\\Seen", "$B"})]
    uids = [resolve(inbox.append(message(n), kinds[n % 4], None, None)).uid for n in range(40)]
    chosen = uids[2:9] + uids[12:13] + uids[20:35] + [10**6]  # three runs and a missing UID
    before = {m.uid: m for m in resolve(inbox.fetch(uids))}
    for mode, flags in [
        (StoreMode.ADD, frozenset({"\\Seen", "$C"})),
        (StoreMode.REMOVE, frozenset({"\\Seen"})),
        (StoreMode.REPLACE, frozenset({"$A"})),
    ]:
        result = resolve(inbox.store(chosen, mode, flags, None))
        after = {m.uid: m for m in resolve(inbox.fetch(uids))}
        expected = [u for u in chosen if u in before and mode.apply(before[u].flags, flags)
                    != before[u].flags]  # fmt: skip
        assert isinstance(result.changed, changes.FlagChanges) is lazy
        assert [c.uid for c in result.changed] == expected
        assert list(result.changed[1:3]) == list(result.changed)[1:3]
        modseq = resolve(inbox.status()).highestmodseq
        for change in result.changed:
            assert change.flags == after[change.uid].flags and change.modseq == modseq
        for uid, meta in after.items():
            want = mode.apply(before[uid].flags, flags) if uid in chosen else before[uid].flags
            assert meta.flags == want
            assert (meta.modseq == modseq) is (uid in expected)
        unseen = sum("\\Seen" not in m.flags for m in after.values())
        assert resolve(inbox.status()).unseen == unseen
        before = after


def test_store_of_many_flag_sets_falls_back_to_rows(
    backend: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(messages, "MAX_STORE_GROUPS", 2)
    inbox = resolve(resolve(backend.account("alice")).open("INBOX"))
    kinds = [frozenset(), frozenset({"$A"}), frozenset({"$B"})]
    uids = [resolve(inbox.append(message(n), kinds[n % 3], None, None)).uid for n in range(9)]
    result = resolve(inbox.store(uids, StoreMode.ADD, frozenset({"$C"}), None))
    assert [c.uid for c in result.changed] == uids
    assert [m.flags for m in resolve(inbox.fetch(uids))] == [k | {"$C"} for k in kinds] * 3


def _plan(tx: Tx, sql: str, params: tuple[Any, ...], tiny: bool = True) -> str:
    """Run with ``write=True``: a read runs in autocommit mode, where SET LOCAL does nothing."""
    if tx.dialect.is_postgres:
        if tiny:
            tx.execute("SET LOCAL enable_seqscan = off")  # make the choice visible
        return " ".join(str(row[0]) for row in tx.all("EXPLAIN " + sql, params))
    return " ".join(str(row[-1]) for row in tx.all("EXPLAIN QUERY PLAN " + sql, params))


def test_upgrade_to_6_indexes_days_and_answers_as_the_scan(url: str, tmp_path: Path) -> None:
    """A version 5 store gains ``mail_day``; SINCE, BEFORE and ON, whether few messages
    match (read by that index on SQLite) or many (a pass over the rows), give the scan's
    answer, internal dates on both sides of midnight in several offsets."""
    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    zones = [timezone(timedelta(hours=h)) for h in (-11, -5, 0, 9, 13)]
    for n in range(48):
        local = datetime(2021, 3, 1 + n % 24, (23, 0, 12)[n % 3], 59 * (n % 2))
        resolve(box.append(message(n), frozenset(), local.replace(tzinfo=zones[n % 5]), None))
    resolve(backend.db.run(_undo_version_6, write=True))
    resolve(backend.stop())
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    assert db.call(schema.upgrade, write=True) == list(range(6, schema.LATEST + 1))
    db.close()

    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    uids = list(resolve(box.uids()))
    context = SearchContext(uids, frozenset(), box.content)
    metas = resolve(box.fetch(uids))
    for day in range(1, 27):
        for key in ("SINCE", "BEFORE", "ON", "UID 3:40 NOT SINCE", "UNSEEN SINCE"):
            program = _program(f"{key} {day}-Mar-2021")
            assert resolve(box.search(program, uids)) == resolve(
                evaluate(program, metas, context)
            ), program
    resolve(backend.stop())


def test_upgrade_to_7_gives_every_mailbox_a_mailboxid(url: str, tmp_path: Path) -> None:
    """Version 6 stores had no MAILBOXIDs: the upgrade gives each mailbox its own."""
    backend = started(url, tmp_path)
    resolve(resolve(backend.account("alice")).create("Sent"))
    resolve(backend.account("bob"))
    resolve(backend.db.run(_undo_version_7, write=True))
    resolve(backend.stop())
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    assert db.call(schema.upgrade, write=True) == list(range(7, schema.LATEST + 1))
    db.close()
    backend = started(url, tmp_path)
    ids = [row[0] for row in query(backend, "SELECT mailboxid FROM mailboxes")]
    assert len(ids) == len(set(ids)) == 3 and all(ids)
    sent = resolve(resolve(resolve(backend.account("alice")).open("Sent")).status())
    assert sent.mailboxid in ids
    resolve(backend.stop())


def test_upgrade_to_10_keeps_users_without_a_quota_of_their_own(url: str, tmp_path: Path) -> None:
    """Version 9 users come through with NULL quota columns (the configuration's limits),
    which ``SqlUsers.set_quota`` then sets."""
    backend = started(url, tmp_path)
    resolve(backend.db.run(insert_user, "ann", "{PLAIN}pw", write=True))
    resolve(backend.db.run(_undo_version_10, write=True))
    resolve(backend.stop())
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    try:
        assert db.call(schema.upgrade, write=True) == list(range(10, schema.LATEST + 1))
        users = SqlUsers(db)
        entry = users.lookup("ann")
        assert entry is not None and (entry.password, entry.quota) == ("{PLAIN}pw", StoredQuota())
        users.set_quota("ann", StoredQuota(storage=2048))
        assert users.lookup("ann").quota == StoredQuota(storage=2048)  # type: ignore[union-attr]
    finally:
        db.close()


def test_upgrade_to_4_indexes_unseen_flagged_and_deleted(url: str, tmp_path: Path) -> None:
    """Version 3 stores gain the partial flag indexes; SEARCH UNSEEN/FLAGGED and EXPUNGE
    read through them (SQLite: PostgreSQL drops them again at 12), and give what they gave
    before."""
    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    kinds = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Flagged", "\\Deleted"})]
    uids = [resolve(box.append(message(n), kinds[n % 3], None, None)).uid for n in range(9)]
    resolve(backend.db.run(_undo_version_4, write=True))
    resolve(backend.stop())
    with pytest.raises(BackendError, match="mailserv db upgrade"):
        resolve(FACTORY.build({"url": url}, str(tmp_path), reactor).start())
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    assert db.call(schema.upgrade, write=True) == list(range(4, schema.LATEST + 1))
    db.close()

    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    assert resolve(box.search(_program("UNSEEN"), uids)) == sorted(uids[0::3] + uids[2::3])
    assert resolve(box.search(_program("FLAGGED"), uids)) == uids[2::3]
    assert resolve(box.search(_program("NOT FLAGGED SEEN"), uids)) == uids[1::3]
    resolve(backend.db.run(schema.refresh_statistics, write=True))
    indexed = [("FLAGGED", "mail_flagged")]  # on mail.marks since 12 (see below)
    if not backend.db.dialect.is_postgres:  # PostgreSQL drops the unseen index at 12
        indexed.append(("UNSEEN", "mail_unseen"))
    for key, index in indexed:
        clause = search.translate(_program(key), backend.db.dialect.find, uids)
        assert clause is not None
        sql = f"SELECT m.uid FROM mail m WHERE m.mailbox_id = ? AND {clause.sql}"
        assert index in resolve(backend.db.run(_plan, sql, (box.id, *clause.params), write=True))
    assert resolve(box.expunge(None, None)) == uids[2::3]
    resolve(backend.stop())


_COUNTS = "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'mail'"


def _hot(tx: Tx, write: Callable[[Tx], object]) -> tuple[int, int]:
    """PostgreSQL: the updates of mail rows ``write`` makes in this transaction, and how many
    of them were page-local (HOT); SQLite: (0, 0)."""
    if not tx.dialect.is_postgres:
        write(tx)
        return 0, 0
    # The backend's counts not yet reported (earlier transactions' too): the difference.
    start = tx.one(_COUNTS)
    write(tx)
    end = tx.one(_COUNTS)
    return int(end[0] - start[0]), int(end[1] - start[1])


def _rewrite_flags(box_id: int) -> Callable[[Tx], object]:
    """What a STORE writes of each row (schema 11 had no change log: SQL, not the code)."""

    def write(tx: Tx) -> None:
        tx.execute(
            "UPDATE mail SET flags = flags || ?, modseq = modseq + ? WHERE mailbox_id = ?",
            ("$Hot ", 100, box_id),
        )

    return write


def _undo_rewrite(tx: Tx, box_id: int) -> None:
    tx.execute(
        "UPDATE mail SET flags = replace(flags, '$Hot ', ''), modseq = modseq - 100"
        " WHERE mailbox_id = ?",
        (box_id,),
    )


def _flag_answers(box: Any, uids: list[int], since: int) -> list[Any]:
    programs = [_program(key) for key in ("UNSEEN", "FLAGGED", "DELETED", "KEYWORD $Work")]
    programs.append(SearchProgram(ModSeqAtLeast(since + 1)))
    found = [resolve(box.search(program, uids)) for program in programs]
    changed = resolve(box.changes_since(since)).changed
    return [*found, [(m.uid, m.flags, m.modseq) for m in changed]]


def _many_rows(tx: Tx, box_id: int, count: int) -> None:
    """``count`` unflagged rows in the mailbox (one message's), and the planner told."""
    message_id = tx.scalar("SELECT message_id FROM mail WHERE mailbox_id = ?", (box_id,))
    tx.many(
        "INSERT INTO mail (mailbox_id, uid, message_id, modseq, flags, internaldate, tz,"
        " internal_day, size) VALUES (?, ?, ?, 1, ' \\Seen ', 1600000000, 0, 738000, 10)",
        [(box_id, 1000 + n, message_id) for n in range(count)],
    )
    tx.execute("UPDATE messages SET refs = refs + ? WHERE id = ?", (count, message_id))
    schema.refresh_statistics(tx)


def test_flagged_and_deleted_read_their_indexes_in_a_big_mailbox(backend: SqlBackend) -> None:
    """With the planner free to choose and statistics of a mailbox of thousands, FLAGGED and
    EXPUNGE's read of the \\Deleted rows go by their partial indexes on ``marks`` (a test
    the planner guesses most rows pass would have it read the mailbox)."""
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    flags = frozenset({"\\Flagged", "\\Deleted"})
    uids = [resolve(box.append(message(n), flags, None, None)).uid for n in range(3)]
    resolve(backend.db.run(_many_rows, box.id, 5000, write=True))
    clause = search.translate(_program("FLAGGED"), backend.db.dialect.find, uids)
    assert clause is not None
    sql = f"SELECT m.uid FROM mail m WHERE m.mailbox_id = ? AND {clause.sql}"
    deleted = "SELECT uid FROM mail WHERE mailbox_id = ? AND " + mark_test("\\Deleted", True)
    for query_sql, params, index in [
        (sql, (box.id, *clause.params), "mail_flagged"),
        (deleted, (box.id,), "mail_deleted"),
    ]:
        assert index in resolve(backend.db.run(_plan, query_sql, params, False, write=True))
    assert resolve(box.search(_program("FLAGGED"), uids)) == uids
    assert resolve(box.expunge(None, None)) == uids


def _flagged_rows(tx: Tx, box_id: int, count: int) -> None:
    """``count`` rows in the mailbox, every third flagged, and the planner told."""
    message_id = tx.scalar("SELECT message_id FROM mail WHERE mailbox_id = ?", (box_id,))
    tx.many(
        "INSERT INTO mail (mailbox_id, uid, message_id, modseq, flags, internaldate, tz,"
        " internal_day, size, marks) VALUES (?, ?, ?, 1, ?, 1600000000, 0, 738000, 10, ?)",
        [
            (box_id, 1000 + n, message_id, " \\Flagged " if n % 3 else " ", int(n % 3 > 0))
            for n in range(count)
        ],
    )
    tx.execute("UPDATE messages SET refs = refs + ? WHERE id = ?", (count, message_id))
    schema.refresh_statistics(tx)


def test_flagged_search_of_many_flagged_reads_the_index_alone(backend: SqlBackend) -> None:
    """The query SEARCH FLAGGED sends (the session's UID range, one string of UIDs) reads
    the index of the flagged messages and nothing else on SQLite (schema 16), when a third
    of a big mailbox is flagged; before, SQLite read every row by its key (2 ms at 20k)."""
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    resolve(box.append(message(0), frozenset({"\\Flagged"}), None, None))
    resolve(backend.db.run(_flagged_rows, box.id, 6000, write=True))
    uids = list(resolve(box.uids()))
    clause = search.translate(_program("FLAGGED"), backend.db.dialect.find, uids)
    assert clause is not None
    listed = (
        "string_agg(m.uid::text, ',')" if backend.db.dialect.is_postgres else "group_concat(m.uid)"
    )
    sql = (
        f"SELECT {listed} FROM mail m WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ?"
        f" AND {clause.sql}"
    )
    plan = resolve(
        backend.db.run(_plan, sql, (box.id, uids[0], uids[-1], *clause.params), False, write=True)
    )
    assert "mail_flagged" in plan
    if not backend.db.dialect.is_postgres:
        assert "COVERING INDEX mail_flagged" in plan
    found = resolve(box.search(_program("FLAGGED"), uids))
    assert found == [uids[0]] + [1000 + n for n in range(6000) if n % 3]


def test_upgrade_to_12_makes_stores_page_local(url: str, tmp_path: Path) -> None:
    """Migration 12 (PostgreSQL) drops the indexes on mail.flags and mail.modseq and leaves
    room on each page: a STORE's row updates, none page-local before, all are after.  UNSEEN,
    FLAGGED, DELETED, keywords, MODSEQ, CHANGEDSINCE (from the rows: the new change log
    starts at the upgrade) and EXPUNGE answer as before, on both databases."""
    backend = started(url, tmp_path)
    account = resolve(backend.account("alice"))
    resolve(account.create("Other"))
    other = resolve(account.open("Other"))
    box = resolve(account.open("INBOX"))
    kinds = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Flagged", "\\Deleted"})]
    kinds.append(frozenset({"$Work"}))
    uids = [resolve(box.append(message(n), kinds[n % 4], None, None)).uid for n in range(12)]
    resolve(other.append(message(99), frozenset({"\\Flagged", "\\Deleted"}), None, None))
    since = resolve(box.status()).highestmodseq
    resolve(box.store(uids[:6], StoreMode.ADD, frozenset({"\\Seen"}), None))
    resolve(box.store(uids[5:7], StoreMode.ADD, frozenset({"\\Flagged"}), None))
    answers = _flag_answers(box, uids, since)
    resolve(backend.db.run(_undo_version_12, write=True))
    before = resolve(backend.db.run(_hot, _rewrite_flags(box.id), write=True))
    resolve(backend.db.run(_undo_rewrite, box.id, write=True))
    resolve(backend.stop())
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    assert db.call(schema.upgrade, write=True) == list(range(12, schema.LATEST + 1))
    db.close()

    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    assert _flag_answers(box, uids, since) == answers  # the rows read, not the log
    store = functools.partial(
        messages.store_flags,
        box_id=box.id,
        uids=uids,
        mode=StoreMode.ADD,
        flags=frozenset({"$Hot"}),
        unchangedsince=None,
        sender="t",
    )
    after = resolve(backend.db.run(_hot, store, write=True))
    seen = resolve(
        backend.db.run(_hot, functools.partial(store, flags=frozenset({"\\Seen"})), write=True)
    )
    for key, index in [("FLAGGED", "mail_flagged"), ("DELETED", "mail_deleted")]:
        clause = search.translate(_program(key), backend.db.dialect.find, uids)
        assert clause is not None
        sql = f"SELECT m.uid FROM mail m WHERE m.mailbox_id = ? AND {clause.sql}"
        assert index in resolve(backend.db.run(_plan, sql, (box.id, *clause.params), write=True))
    if backend.db.dialect.is_postgres:
        assert before == (12, 0) and after == (12, 12) and seen[0] == seen[1] > 0
        indexes = query(backend, "SELECT indexdef FROM pg_indexes WHERE tablename = 'mail'")
        assert not [d for (d,) in indexes if "flags" in d or "modseq" in d]
        options = query(backend, "SELECT reloptions FROM pg_class WHERE relname = 'mail'")
        assert options == [([f"fillfactor={schema.HOT_FILLFACTOR}"],)]
    assert resolve(box.expunge(None, None)) == uids[2::4]
    resolve(backend.stop())


def _kept_unseen(backend: SqlBackend, box: Any) -> str | None:
    return str(query(backend, "SELECT unseen_uids FROM mailboxes WHERE id = ?", (box.id,))[0][0])


@pytest.mark.parametrize("runs", [unseen.MAX_RUNS, 3])
def test_marks_and_unseen_follow_every_write_of_flags(
    backend: SqlBackend, monkeypatch: pytest.MonkeyPatch, runs: int
) -> None:
    """``mail.marks`` (\\Flagged and \\Deleted, indexed) and the mailbox's kept unseen UIDs
    follow every way flags are written: APPEND, STORE by runs (one and several old flag
    sets, over gaps and missing UIDs) and row by row (scattered UIDs, UNCHANGEDSINCE, many
    flag sets), COPY, MOVE and EXPUNGE; FLAGGED, DELETED, UNSEEN and their negations answer
    as the engine's evaluation of the fetched flags.  The kept UIDs are exactly the unseen
    messages' runs, or none (NULL: the rows are read) beyond ``unseen.MAX_RUNS`` runs, until
    no message is unseen."""
    monkeypatch.setattr(messages, "MAX_STORE_RUNS", 3)
    monkeypatch.setattr(messages, "MAX_STORE_GROUPS", 3)
    monkeypatch.setattr(unseen, "MAX_RUNS", runs)
    account = resolve(backend.account("alice"))
    resolve(account.create("Other"))
    box, other = resolve(account.open("INBOX")), resolve(account.open("Other"))
    rng = random.Random(10 + runs)
    names = ["\\Flagged", "\\Deleted", "\\Seen", "$A", "$B"]

    def some() -> frozenset[str]:
        return frozenset(name for name in names if rng.random() < 0.4)

    def check(mailbox: Any) -> None:
        uids = list(resolve(mailbox.uids()))
        metas = resolve(mailbox.fetch(uids))
        context = SearchContext(uids, frozenset(), mailbox.content)
        for key in ("FLAGGED", "UNFLAGGED", "DELETED", "UNDELETED", "UNSEEN", "SEEN"):
            program = _program(key)
            want = resolve(evaluate(program, metas, context))
            assert resolve(mailbox.search(program, uids)) == want, key
        runs_now = unseen.runs_of(m.uid for m in metas if "\\Seen" not in m.flags)
        kept = _kept_unseen(backend, mailbox)
        assert kept == unseen.dump(runs_now) or (kept == "None" and len(runs_now) > runs)

    for n in range(60):
        resolve(box.append(message(n), some(), None, None))
    for step in range(30):
        uids = list(resolve(box.uids()))
        if step % 6 == 5:
            chosen = rng.sample(uids, 4)
            transfer = box.copy if step % 12 == 5 else box.move
            resolve(transfer(chosen, "Other", None))
            check(other)
            continue
        if step % 10 == 9:
            chosen = rng.sample(uids, 3)
            resolve(box.store(chosen, StoreMode.ADD, frozenset({"\\Deleted"}), None))
            resolve(box.expunge(chosen, None))
        elif step % 3 == 0:
            low = rng.randrange(len(uids))
            chosen = uids[low : low + rng.randrange(1, 12)] + [10**6]  # one run and a missing UID
            resolve(box.store(chosen, rng.choice(list(StoreMode)), some(), None))
        else:
            chosen = rng.sample(uids, rng.randrange(1, len(uids)))  # runs or rows
            since = resolve(box.status()).highestmodseq if step % 4 == 1 else None
            resolve(box.store(chosen, rng.choice(list(StoreMode)), some(), None, since))
        check(box)
    for mailbox in (box, other):
        uids = list(resolve(mailbox.uids()))
        deleted = [m.uid for m in resolve(mailbox.fetch(uids)) if "\\Deleted" in m.flags]
        assert resolve(mailbox.expunge(None, None)) == deleted
        assert resolve(mailbox.search(_program("DELETED"), uids)) == []
    resolve(box.store(list(resolve(box.uids())), StoreMode.ADD, frozenset({"\\Seen"}), None))
    assert _kept_unseen(backend, box) == ""  # kept again, whatever it was


def test_changes_since_from_the_log_are_the_rows_changes(
    backend: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CHANGEDSINCE and the flag changes of one modseq read the UID ranges of the change log
    (APPEND, STORE by runs and row by row, COPY), or their UIDs when there are many ranges,
    or every row of the mailbox where the pruned log no longer reaches or gives too many
    UIDs: the same answer as a pass over the rows, for every modseq of the mailbox's history."""
    monkeypatch.setattr(messages, "LOG_KEEP", 12)
    monkeypatch.setattr(messages, "LOG_PRUNE_EVERY", 5)
    account = resolve(backend.account("alice"))
    resolve(account.create("Other"))
    box, other = resolve(account.open("INBOX")), resolve(account.open("Other"))
    rng = random.Random(12)
    uids = [resolve(box.append(message(n), frozenset(), None, None)).uid for n in range(20)]
    for step in range(40):
        roll = rng.random()
        if roll < 0.15:
            uids.append(resolve(box.append(message(100 + step), frozenset(), None, None)).uid)
        elif roll < 0.25:
            resolve(other.append(message(200 + step), frozenset(), None, None))
            resolve(other.copy(resolve(other.uids())[-1:], "INBOX", None))
            uids = list(resolve(box.uids()))
        else:
            chosen = sorted(rng.sample(uids, rng.randint(1, 8)))
            flag = frozenset({rng.choice(["\\Seen", "$A", "$B"])})
            unchanged = resolve(box.status()).highestmodseq if roll < 0.5 else None
            resolve(box.store(chosen, rng.choice(list(StoreMode)), flag, None, unchanged))
    highest = resolve(box.status()).highestmodseq
    pruned = query(backend, "SELECT log_from FROM mailboxes WHERE id = ?", (box.id,))[0][0]
    assert 0 < pruned < highest - 10  # some of the history is read from the rows

    def scan(tx: Tx, op: str, modseq: int) -> list[Any]:
        return tx.all(
            f"SELECT uid, flags, modseq FROM mail WHERE mailbox_id = ? AND modseq {op} ?"
            " ORDER BY uid",
            (box.id, modseq),
        )

    for ranges, uids_read in [(200, 5000), (2, 5000), (2, 3)]:  # ranges, UIDs, every row
        monkeypatch.setattr(reads, "MAX_LOG_RANGES", ranges)
        monkeypatch.setattr(reads, "MAX_LOG_UIDS", uids_read)
        for modseq in range(highest + 1):
            got = resolve(box.changes_since(modseq)).changed
            expected = resolve(backend.db.run(scan, ">", modseq))
            assert [(m.uid, " ".join(sorted(m.flags)), m.modseq) for m in got] == [
                (uid, flags.strip(), seq) for uid, flags, seq in expected
            ], modseq
            told = resolve(backend.db.run(reads.flag_changes, box.id, modseq))
            same = resolve(backend.db.run(scan, "=", modseq))
            assert sorted(c.uid for c in told) == [row[0] for row in same], modseq


def test_uids_are_kept_and_brought_up_to_date(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SELECT's UID list is read whole once, then from what changed: appends and expunges
    through another frontend (no notices inline) included."""
    here, there = started(url, tmp_path), started(url, tmp_path)
    box = resolve(resolve(here.account("alice")).open("INBOX"))
    other = resolve(resolve(there.account("alice")).open("INBOX"))
    uids = [resolve(box.append(message(n), frozenset(), None, None)).uid for n in range(6)]
    assert list(resolve(box.uids())) == uids == list(resolve(other.uids()))
    whole = reads.uids
    monkeypatch.setattr(reads, "uids", lambda *a: pytest.fail("read whole again"))
    resolve(other.store(uids[1:3], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    assert list(resolve(box.uids())) == uids  # flags only
    assert resolve(other.expunge(None, None)) == uids[1:3]
    more = [resolve(other.append(message(n), frozenset(), None, None)).uid for n in range(2)]
    expected = [uids[0], *uids[3:], *more]
    assert list(resolve(box.uids())) == expected == list(resolve(other.uids()))
    kept = resolve(box.uids())
    assert isinstance(kept, tuple) and resolve(box.uids()) is kept  # shared, never changed

    def behind_its_back(tx: Tx) -> None:  # a tool that logs no expunge: the counts disagree
        tx.execute("DELETE FROM mail WHERE uid = ?", (expected[0],))
        tx.execute(
            "UPDATE mailboxes SET messages = messages - 1, highestmodseq = highestmodseq + 1"
        )

    resolve(here.db.run(behind_its_back, write=True))
    monkeypatch.setattr(reads, "uids", whole)
    assert list(resolve(box.uids())) == expected[1:]
    for backend in (here, there):
        resolve(backend.stop())


def test_uids_are_kept_past_the_mailbox_object(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SELECT drops the view it replaces first: when that view held the only reference,
    the mailbox object goes, and the next SELECT's object finds the UID list the backend
    kept, brought up to date (an append through another frontend meanwhile), not read
    whole again."""
    here, there = started(url, tmp_path), started(url, tmp_path)
    box = resolve(resolve(here.account("alice")).open("INBOX"))
    uids = [resolve(box.append(message(n), frozenset(), None, None)).uid for n in range(5)]
    assert list(resolve(box.uids())) == uids
    old = weakref.ref(box)
    del box
    gc.collect()
    assert old() is None
    other = resolve(resolve(there.account("alice")).open("INBOX"))
    more = resolve(other.append(message(9), frozenset(), None, None)).uid
    monkeypatch.setattr(reads, "uids", lambda *a: pytest.fail("read whole again"))
    again = resolve(resolve(here.account("alice")).open("INBOX"))
    assert list(resolve(again.uids())) == [*uids, more]
    for backend in (here, there):
        resolve(backend.stop())


def test_the_status_read_confirms_the_uid_list(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SELECT reads the status, then the UIDs: when the status read finds the kept list
    current, the UIDs need no read of their own (once); a change told in between, or a
    second call, reads them."""
    here = started(url, tmp_path)
    box = resolve(resolve(here.account("alice")).open("INBOX"))
    uids = [resolve(box.append(message(n), frozenset(), None, None)).uid for n in range(3)]
    assert list(resolve(box.uids())) == uids
    reads_made: list[int] = []
    real = reads.uids_since
    monkeypatch.setattr(reads, "uids_since", lambda *a: reads_made.append(1) or real(*a))
    resolve(box.status())
    assert list(resolve(box.uids())) == uids and reads_made == []
    assert list(resolve(box.uids())) == uids and reads_made == [1]
    resolve(box.status())
    new = resolve(box.append(message(7), frozenset(), None, None)).uid
    assert list(resolve(box.uids())) == [*uids, new] and reads_made == [1, 1]
    resolve(here.stop())


def test_the_status_read_answers_the_rest_of_select(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SELECT's status read (one transaction) also brings the UID list up to date and finds
    whether anything is left to claim and the first unseen: the calls after it read
    nothing, until a change is told; a new message is then claimed, and the first unseen
    read again."""
    here = started(url, tmp_path)
    box = resolve(resolve(here.account("alice")).open("INBOX"))
    uids = [resolve(box.append(message(n), frozenset(), None, None)).uid for n in range(3)]
    assert list(resolve(box.uids())) == uids
    assert resolve(box.claim_recent()) == uids
    resolve(box.store(uids[:1], StoreMode.ADD, frozenset({"\\Seen"}), None))
    made: list[str] = []
    for module, name in ((reads, "uids_since"), (messages, "unclaimed"), (reads, "first_unseen")):
        real = getattr(module, name)
        monkeypatch.setattr(
            module, name, functools.partial(lambda n, f, *a: made.append(n) or f(*a), name, real)
        )
    assert resolve(box.status()).messages == 3
    assert list(resolve(box.uids())) == uids
    assert resolve(box.claim_recent()) == []
    assert resolve(box.first_unseen()) == uids[1]
    assert made == []
    resolve(box.status())
    resolve(box.store(uids[1:2], StoreMode.ADD, frozenset({"\\Seen"}), None))
    assert list(resolve(box.uids())) == uids and made == []  # flags alone: the list holds
    assert resolve(box.first_unseen()) == uids[2] and made == ["first_unseen"]
    new = resolve(box.append(message(9), frozenset(), None, None)).uid
    assert resolve(box.claim_recent()) == [new] and made[1:] == ["unclaimed"]
    resolve(box.status())
    assert resolve(box.claim_recent()) == [] and made[2:] == []
    resolve(here.stop())


def test_kept_uid_lists_are_bounded() -> None:
    kept = reads.KeptUidLists(limit=10)
    kept.put((1, 1, 1), reads.UidList(3, tuple(range(1, 7))))
    kept.put((2, 1, 1), reads.UidList(3, (1, 2, 3)))
    assert kept.get((1, 1, 1)) is not None  # now the most recently used
    kept.put((3, 1, 1), reads.UidList(3, (1, 2, 3)))  # 12 UIDs: the oldest goes
    assert kept.get((2, 1, 1)) is None
    assert kept.get((1, 1, 1)) is not None and kept.get((3, 1, 1)) is not None
    kept.put((4, 1, 1), reads.UidList(3, tuple(range(20))))  # alone over the limit: kept
    assert kept.get((4, 1, 1)) is not None and kept.get((1, 1, 1)) is None


def _planner_rows(tx: Tx) -> float:
    """How many rows of ``mail`` the query planner believes there are."""
    if tx.dialect.is_postgres:
        return float(tx.all("SELECT reltuples FROM pg_class WHERE relname = 'mail'")[0][0])
    rows = tx.all("SELECT stat FROM sqlite_stat1 WHERE tbl = 'mail' LIMIT 1")
    return float(rows[0][0].split()[0]) if rows else 0.0


def test_planner_statistics_follow_a_growing_store(
    backend: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the store has grown by a good part since the statistics were taken (at start,
    of an empty store here), they are taken again: PostgreSQL would otherwise test
    SEARCH TEXT's LIKE on every text of a mailbox it believes nearly empty."""
    monkeypatch.setattr(sql_backend, "REFRESH_AFTER", 20)
    box = resolve(resolve(backend.account("grower")).open("INBOX"))
    assert resolve(backend.db.run(_planner_rows)) < 1
    for n in range(19):
        resolve(box.append(message(n), frozenset(), None, None))
    assert resolve(backend.db.run(_planner_rows)) < 1  # not yet: below the threshold
    resolve(box.append(message(19), frozenset(), None, None))
    assert resolve(backend.db.run(_planner_rows)) == 20
