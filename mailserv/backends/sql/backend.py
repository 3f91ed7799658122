"""The SQL backend's plugin and store objects: options, start/stop, the mailbox registry and
the change notices that keep several frontends of one PostgreSQL database in step.

Queries run in ``twisted.enterprise.adbapi`` threads (see ``db.py`` for why), the small ones
on the reactor's thread (``quick.py``, ``pgquick.py``); notices from the
other frontends arrive on a LISTEN connection the reactor reads (``notify.py``) and become
the same listener events a local change causes, in the order they were sent.
"""

from __future__ import annotations

import os
import secrets
import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger
from zope.interface import alsoProvides, implementer

from mailserv.backends.kit.flagchanges import changes_of
from mailserv.backends.kit.keptanswers import KeptAnswers
from mailserv.backends.kit.options import Choice, Int, OptionSchema, Text
from mailserv.backends.sql import fulltext, hierarchy, messages, reads, schema
from mailserv.backends.sql.account import SqlAccount
from mailserv.backends.sql.db import Database, InlineDatabase, ThreadedDatabase
from mailserv.backends.sql.dialect import (
    DEFAULT_FLAG_DURABILITY,
    DEFAULT_SQLITE_SYNC,
    FLAG_DURABILITY,
    SQLITE_SYNC,
    Dialect,
    parse_url,
)
from mailserv.backends.sql.mailbox import SqlMailbox
from mailserv.backends.sql.notify import Listener
from mailserv.backends.sql.rows import ADDED, EXPUNGED, FLAGS, RENAMED, Notice, Zones
from mailserv.backends.sql.tx import Tx
from mailserv.errors import BackendError, BackendUnavailable
from mailserv.interfaces import IBackend, IBackendFactory, IMultiProcessBackend

if TYPE_CHECKING:
    from mailserv.auth.scramoffer import SqlScramCensus

T = TypeVar("T")

AUTH_CHOICES = ("passwd-file", "sql")
DEFAULT_POOL = max(2, min(8, os.cpu_count() or 1))
"""A database thread per core, two to eight: more threads than cores mostly contend with
the reactor thread for the GIL (their rows are made in Python), and two leave one free
while a long query runs.  ``bench.scale --mixed-only``, SQLite, 20k messages, 2 cores: 8
threads 1,350-1,382 ops/s (FETCH-20 p50 6.1-6.7 ms), 2 threads 1,681-1,757 (4.0-4.2 ms)."""
REFRESH_AFTER = 2000
"""Messages added before the planner's statistics are refreshed (and a quarter more than
were there at the last refresh)."""
MAX_POOL = 200

_log = Logger()


URL = Text[str | None](
    "sqlite:///abs/path.db, sqlite:relative/to/data-dir.db or "
    "postgresql://user:password@host:port/dbname [default: sqlite:mail.db in the data dir]",
    None,
)
AUTH = Choice(
    "where logins are checked: passwd-file (the --passwd-file) or sql (the users table of "
    "this database; `mailserv user ... --config`) [default: passwd-file]",
    "passwd-file",
    AUTH_CHOICES,
)
POOL = Int(
    "database connections (threads) per process [default: the number of cores, 2 to 8]",
    DEFAULT_POOL,
    1,
    MAX_POOL,
)
SQLITE_SYNC_OPTION = Choice(
    "full (an fsync per commit: an acknowledged APPEND survives power loss) or normal (it "
    "survives a crash of the server, not of the machine; faster on slow disks) "
    "[default: full]",
    DEFAULT_SQLITE_SYNC,
    SQLITE_SYNC,
)
FLAG_DURABILITY_OPTION = Choice(
    "fast (a STORE's commit does not wait for the disk: PostgreSQL's WAL flush, SQLite's "
    "fsync; a crash of the database or the machine may lose the last flag changes, never a "
    "message) or full (every commit waits) [default: fast]",
    DEFAULT_FLAG_DURABILITY,
    FLAG_DURABILITY,
)
QUICK_OPTION = Choice(
    "on (small transactions run on the reactor's thread: SQLite's for 2 ms at most, "
    "PostgreSQL's over non-blocking connections of their own) or off (every transaction in "
    "the pool: for an SQLite file on a disk slow to read, a network filesystem) [default: on]",
    "on",
    ("on", "off"),
)
OPTIONS = OptionSchema(
    "sql",
    {
        "url": URL,
        "auth": AUTH,
        "pool": POOL,
        "sqlite-sync": SQLITE_SYNC_OPTION,
        "flag-durability": FLAG_DURABILITY_OPTION,
        "quick": QUICK_OPTION,
    },
)


@implementer(IBackendFactory)
class SqlBackendFactory:
    """Found by twisted.plugin; turns ``--backend sql`` into an :class:`SqlBackend`."""

    name = "sql"
    description = (
        "Mail in SQLite (one machine) or PostgreSQL (any number of frontends, kept in step "
        "with LISTEN/NOTIFY)."
    )
    options = OPTIONS.help

    def __init__(self, database: Callable[[Dialect], Database] | None = None) -> None:
        """``database`` replaces the thread pool (tools and tests run transactions inline)."""
        self._database = database

    def build(self, options: dict[str, str], data_dir: str, reactor: IReactorTime) -> SqlBackend:
        """Checks the options and the URL; nothing is opened before ``start()``."""
        values = OPTIONS.parse(options, data_dir)
        dialect = parse_url(
            values[URL], data_dir, values[SQLITE_SYNC_OPTION], values[FLAG_DURABILITY_OPTION]
        )
        return SqlBackend(
            dialect,
            reactor,
            pool=values[POOL],
            auth=values[AUTH],
            database=self._database,
            quick=values[QUICK_OPTION] == "on",
        )


def inline_database(dialect: Dialect) -> Database:
    """For ``SqlBackendFactory(database=inline_database)``: transactions run in the caller."""
    return InlineDatabase(dialect)


@implementer(IBackend)
class SqlBackend:
    """Every account of one database, as one process serves them."""

    def __init__(
        self,
        dialect: Dialect,
        reactor: IReactorTime,
        pool: int = DEFAULT_POOL,
        auth: str = "passwd-file",
        database: Callable[[Dialect], Database] | None = None,
        quick: bool = True,
    ) -> None:
        self.dialect = dialect
        self.auth = auth
        self.reactor = reactor
        self.sender = secrets.token_hex(6)
        """Marks this process's notices, which it has already acted on."""
        self.zones = Zones()
        self.boxes: weakref.WeakValueDictionary[int, SqlMailbox] = weakref.WeakValueDictionary()
        self.uid_lists = reads.KeptUidLists()
        """SELECT's UID lists, kept past the mailbox objects (see ``SqlMailbox.uids``)."""
        self.kept_answers = KeptAnswers()
        """SEARCH answers that hold while a mailbox's messages are the same."""
        self.told = 0
        """Events told to any mailbox's listeners so far: an ``open`` whose read saw none
        told meanwhile may offer its status to the ``status()`` after it."""
        self._pool = pool
        self._quick = quick
        """Small transactions on the reactor's thread (``ThreadedDatabase``)."""
        self._make_database = database
        self._db: Database | None = None
        self._listener: Listener | None = None
        self._notices: Deferred[None] = defer.succeed(None)
        self.text_search: fulltext.TextSearch | None = None
        """How SEARCH BODY/TEXT run in SQL; None (the engine scans) before ``start()``."""
        self._backfill: Deferred[None] | None = None
        self._counted = 0
        """Messages in mailboxes when the planner's statistics were last refreshed."""
        self._grown = 0
        """Messages this process has added since then."""
        self._refreshing = False
        self._census: SqlScramCensus | None = None
        """Whether every user can do SCRAM (``auth=sql``; set by credentials_checker)."""
        self._stopping = False
        self._asking: list[tuple[SqlMailbox, Deferred[None]]] = []
        """``catch_up`` calls waiting for the next look at the mailbox rows."""
        self._looking = False
        if dialect.is_postgres:  # LISTEN/NOTIFY carries changes between processes
            alsoProvides(self, IMultiProcessBackend)

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = self._open_database()
        return self._db

    def _open_database(self) -> Database:
        if self._make_database is not None:
            return self._make_database(self.dialect)
        return ThreadedDatabase(self.dialect, self._pool, self.reactor, quick=self._quick)

    # -- IBackend -----------------------------------------------------------------------

    async def start(self) -> None:
        """Create the schema in an empty database (or check its version); LISTEN."""
        try:
            version = await self.db.run(schema.prepare, write=True)
        except schema.SchemaError as exc:
            raise BackendError(f"{self.dialect.display}: {exc}") from exc
        self._counted = await self.db.run(schema.refresh_statistics, write=True)
        kind = await self.db.run(fulltext.detect)
        self.text_search = fulltext.TextSearch(self.dialect.is_postgres, kind)
        _log.info(
            "SQL store {url}, schema version {version}, full-text search: {kind}",
            url=self.dialect.display,
            version=version,
            kind=kind,
        )
        if self._census is not None:  # offer_scram=auto knows its answer from the start
            await self._census.refresh()
        self._stopping = False
        self._backfill = Deferred.fromCoroutine(self.backfill_texts())
        if self.dialect.is_postgres and self._make_database is None:
            self._listener = Listener(self.dialect, self._notice, self._resynchronise, self.reactor)
            await self._listener.start()

    async def stop(self) -> None:
        self._stopping = True
        if self._backfill is not None:
            await self._backfill  # after the step in progress
            self._backfill = None
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self._db is not None:
            self._db.close()
            self._db = None

    async def account(self, username: str) -> SqlAccount:
        db = self.db
        account_id = await db.run(hierarchy.find_account, username)
        if account_id is None:
            account_id = await db.run(hierarchy.create_account, username, write=True)
        return SqlAccount(self, int(account_id), username)

    async def backfill_texts(self) -> None:
        """Give the messages stored before schema version 3 their texts (and the texts
        stored before version 5 their words, ``fulltext.backfill_words``), a batch at a time:
        reading and writing in the database's threads, decoding in another, so the reactor
        stays free.  Every frontend of a shared database may run it: the ranges they write
        overlap harmlessly.  Errors are logged; the mailboxes not reached keep their BODY and
        TEXT keys evaluated by the engine."""
        db = self.db
        started = False
        try:
            while not self._stopping:
                batch = await db.run(fulltext.read_batch, fulltext.BACKFILL_BATCH)
                if batch is None:
                    break
                if not started:
                    _log.info("Indexing the texts of existing messages for SEARCH BODY/TEXT")
                    started = True
                decoded = await self.in_thread(fulltext.decode_batch, batch)
                await db.run(fulltext.write_batch, decoded, batch.upto, write=True)
            more = True
            while more and not self._stopping:  # then the words of texts stored before v5
                more = await db.run(fulltext.backfill_words, fulltext.WORD_BATCH, write=True)
            if self._stopping:
                return
        except Exception:  # noqa: BLE001 - logged; the engine keeps scanning meanwhile
            _log.failure("Indexing message texts failed")
            return
        if started:
            _log.info("Texts of existing messages indexed")

    def credentials_checker(self) -> ICredentialsChecker | None:
        """The users table when ``auth=sql``; else None (the passwd-file stays in charge)."""
        if self.auth != "sql":
            return None
        from mailserv.auth.apppasswords import AppPasswordChecker, SqlAppPasswordStore
        from mailserv.auth.scramoffer import SqlScramCensus
        from mailserv.auth.sqlusers import SqlUserStore

        apps = SqlAppPasswordStore(self.db.run)
        store = SqlUserStore(self.db.run)
        census = self._census = SqlScramCensus(self.db.run, self.reactor)
        return AppPasswordChecker(store, apps, self.reactor, self.in_thread, census=census)

    # -- helpers for accounts and mailboxes ---------------------------------------------

    def in_thread(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """CPU-bound work (hashing, parsing a large message) off the reactor thread."""
        if self._make_database is not None:
            return defer.maybeDeferred(fn, *args)
        reactor = IReactorThreads(self.reactor)
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

    def mailbox(self, account_id: int, row: hierarchy.BoxRow) -> SqlMailbox:
        """The one live object for mailbox ``row.id`` in this process."""
        box = self.boxes.get(row.id)
        if box is None:
            box = SqlMailbox(self, account_id, row)
            self.boxes[row.id] = box
        else:
            box.name = row.name
        return box

    def renamed(self, box_id: int, name: str) -> None:
        box = self.boxes.get(box_id)
        if box is not None:
            box.name = name

    def grew(self, count: int) -> None:
        """``count`` messages were added here: once a quarter more than the statistics knew
        (and at least ``REFRESH_AFTER``), refresh them in the background."""
        self._grown += count
        if self._refreshing or self._grown < max(REFRESH_AFTER, self._counted // 4):
            return
        self._refreshing = True
        self._grown = 0

        async def refresh() -> None:
            try:
                self._counted = await self.db.run(schema.refresh_statistics, write=True)
            except Exception:  # noqa: BLE001 - the planner keeps the old figures meanwhile
                _log.failure("Refreshing the query planner's statistics failed")
            finally:
                self._refreshing = False

        Deferred.fromCoroutine(refresh())

    def transferred(self, done: messages.Transfer, origin: object) -> None:
        """Listener events of a COPY/MOVE (or RENAME INBOX) this process made."""
        self.grew(len(done.pairs))
        target = self.boxes.get(done.target_id)
        if target is not None and done.pairs:
            target.added([new for _, new in done.pairs], done.modseq, origin)
        source = self.boxes.get(done.source_id)
        if source is not None and done.removed:
            source.expunged(done.removed, done.removed_modseq, origin)

    # -- notices from other frontends ---------------------------------------------------

    def _notice(self, payload: str) -> None:
        """Queue a notice behind the ones before it, so events keep their order."""
        notice = Notice.decode(payload)
        if notice is None:
            _log.warn("Ignoring malformed change notice {payload!r}", payload=payload)
            return
        if notice.sender == self.sender or notice.mailbox_id not in self.boxes:
            return
        self._chain(lambda: self._apply(notice))

    def _chain(self, step: Callable[[], Any]) -> Deferred[None]:
        """Run ``step`` after the steps queued before it; the result fires once it has run."""
        done: Deferred[None] = Deferred()

        def run(_: object) -> Any:
            return defer.maybeDeferred(step)

        def failed(failure: Any) -> None:
            _log.failure("Applying a change notice failed", failure)

        def finished(_: object) -> None:
            done.callback(None)

        self._notices.addCallback(run).addErrback(failed).addCallback(finished)
        return done

    async def _apply(self, notice: Notice) -> None:
        box = self.boxes.get(notice.mailbox_id)
        if box is None:
            return
        if notice.kind == ADDED:
            box.added(notice.uids(), notice.modseq, None, remote=True)
        elif notice.kind == EXPUNGED:
            box.expunged(notice.uids(), notice.modseq, None)
        elif notice.kind == FLAGS:
            if notice.data:
                changes = changes_of({notice.flags(): notice.uids()}, notice.modseq)
            else:
                changes = await self.db.run(reads.flag_changes, box.id, notice.modseq)
            box.flags_changed(changes, None, notice.modseq)
        elif notice.kind == RENAMED:
            box.name = notice.data

    def _resynchronise(self) -> None:
        """After notices were lost: each live mailbox reports what changed since it last knew."""
        for box in list(self.boxes.values()):
            self._chain(lambda box=box: self._catch_up(box))  # type: ignore[misc]

    async def _catch_up(self, box: SqlMailbox) -> None:
        box.caught_up(await self.db.run(reads.changes_since, box.id, box.synced, self.zones))

    async def catch_up(self, box: SqlMailbox, since: float | None = None) -> None:
        """``ISharedMailbox.catch_up``: a NOTIFY may still be on its way when the command
        that caused it was answered, so look at the mailbox row (an indexed read); when its
        modseq is beyond what the notices told, read the changes from the tables.

        One look at a time: the calls made meanwhile share the next one (one query for
        all their mailboxes), which starts after every one of them was made."""
        if self._listener is None:
            return  # one process (SQLite), or no notices to trust anyway
        if since is not None and box.told_since(since):
            return  # a read the command made showed nothing missing
        self._listener.poll()  # notices here already are applied first
        answered: Deferred[None] = Deferred()
        self._asking.append((box, answered))
        if not self._looking:
            self._looking = True
            Deferred.fromCoroutine(self._look()).addErrback(
                lambda f: _log.failure("Looking for changes failed", f)
            )
        await answered

    async def _look(self) -> None:
        try:
            while self._asking:
                asking, self._asking = self._asking, []
                boxes = {box.id: box for box, _ in asking}
                try:
                    rows = await self._highestmodseqs(sorted(boxes))
                except Exception:  # noqa: BLE001 - the commands that asked are answered anyway
                    _log.failure(
                        "Looking for changes of {count} mailboxes failed", count=len(boxes)
                    )
                    rows = []
                behind = [(boxes[i], h) for i, h in rows if h > boxes[i].synced]
                if behind:
                    await self._chain(partial(self._fill_in, behind))
                for _, answered in asking:
                    answered.callback(None)
        finally:
            self._looking = False

    async def _highestmodseqs(self, box_ids: list[int]) -> list[tuple[int, int]]:
        """(id, HIGHESTMODSEQ) of the mailboxes: on the LISTEN connection, from the reactor
        (a short read every command of a shared mailbox ends with: no thread hop, no pool
        connection), else through the pool."""
        listener = self._listener
        asked = None
        if listener is not None:
            listed = ("{" + ",".join(map(str, box_ids)) + "}").encode()
            asked = listener.query(_HIGHEST_SQL, [listed])
        if asked is not None:
            try:
                rows = await asked
            except BackendUnavailable:
                pass  # the connection went meanwhile: the pool answers
            else:
                return [(int(i or 0), int(h or 0)) for i, h in rows]
        found: list[Any] = await self.db.run(_highestmodseqs, box_ids)
        return [(int(i), int(h)) for i, h in found]

    async def _fill_in(self, behind: list[tuple[SqlMailbox, int]]) -> None:
        """After the notices that arrived meanwhile: read what is still missing."""
        for box, highest in behind:
            if highest > box.synced:
                await self._catch_up(box)


_HIGHEST_SQL = b"SELECT id, highestmodseq FROM mailboxes WHERE id = ANY($1::bigint[])"


def _highestmodseqs(tx: Tx, box_ids: list[int]) -> list[Any]:
    marks = ", ".join("?" * len(box_ids))
    return tx.all(f"SELECT id, highestmodseq FROM mailboxes WHERE id IN ({marks})", box_ids)
